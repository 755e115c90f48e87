"""Consensus configuration is passed in, never looked up globally: two chains with
different genesis files run side by side in one process, each with its own limits,
standing job and registry."""
from __future__ import annotations

import json

from consensus.params import REGISTRY_ADDRESS
from consensus.registry import decode_job_status, encode_job_status
from genesis.format import parse_genesis
from tests.chain.helpers import ALICE, ETHER, GWEI, MINER
from tests.consensus.helpers import (
    mine_block,
    open_pouw_chain,
    pouw_genesis_dict,
    post_job_tx,
    tiny_spec,
)


def test_two_chains_in_one_process_keep_their_own_consensus_configuration() -> None:
    raw_a = pouw_genesis_dict(expected_steps=6, k=2)
    raw_b = pouw_genesis_dict(expected_steps=6, k=3)
    raw_b["chainId"] = 7358
    raw_b["pouw"]["maxStateBytes"] = 4096  # the 64-wide job below does not fit
    raw_b["pouw"]["standingJobs"] = [tiny_spec(hidden=2)]
    a = open_pouw_chain(parse_genesis(json.loads(json.dumps(raw_a))))
    b = open_pouw_chain(parse_genesis(json.loads(json.dumps(raw_b))))
    assert a.engine_class.config.limits.max_state_bytes != b.engine_class.config.limits.max_state_bytes

    wide = tiny_spec(hidden=64)
    post_a = post_job_tx(ALICE, 0, wide, price=GWEI, escrow=ETHER)
    post_b = post_job_tx(ALICE, 0, wide, price=GWEI, escrow=ETHER, chain_id=7358)
    mined_a = mine_block(a, MINER, [post_a])
    mined_b = mine_block(b, MINER, [post_b])
    receipt_a = a.get_receipts(mined_a.block)[0]
    receipt_b = b.get_receipts(mined_b.block)[0]
    assert receipt_a.state_root == b"\x01"  # status 1: fits chain a's limits, posted
    assert receipt_b.state_root == b""  # status 0: over chain b's maxStateBytes, reverted

    def status(chain, job_id):  # type: ignore[no-untyped-def]
        return decode_job_status(chain.call(REGISTRY_ADDRESS, encode_job_status(job_id)).output)

    assert status(a, 1)[0] == 1 and status(b, 1)[0] == 0
    # each chain mines and validates with its own challenge count and standing job
    for _ in range(2):
        assert mine_block(a, MINER).job_id == 1  # the posted job pays
        mine_block(b, MINER)
    assert a.head().block_number == b.head().block_number == 3
    assert a.engine_class.config.challenge_count == 2 and b.engine_class.config.challenge_count == 3
