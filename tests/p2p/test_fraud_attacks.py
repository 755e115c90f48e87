"""Red-team attacks on how a fraud proof travels (p2p/gossip.py's ``_fetch_and_retry``).

The cheater knows its own lying segment j and the hash ``c_{j-1}`` of that segment's
start state before anyone else does (it listed it). Before an honest auditor has found
the fraud, it gossips a proof of its own block naming segment j, signed by any funded
key, and never serves the start state. Every node that receives it refuses it
(BlobNotHere), fails to fetch ``c_{j-1}`` (nobody has it yet) and remembers the hash as
tried. When the honest auditor later submits the real proof and holds the state, those
nodes skip the fetch (the hash is in ``_blobs_tried``) and drop the proof: it never
reaches a miner's pool, and the cheater keeps its reward once the window closes.
"""
from __future__ import annotations

import asyncio
from typing import Any, Callable

import pytest

from consensus.auditor import audit_block
from consensus.engine import backend_for
from consensus.payload import WorkPayload
from devnet.kit.p2pnode import TestNode
from p2p import messages as m
from tests.chain.helpers import ALICE, BOB, CAROL, ETHER, GWEI, MINER
from tests.consensus.fraud_helpers import prove_tx, substitute_block
from tests.consensus.helpers import pouw_genesis, post_job_tx, tiny_spec
from tests.p2p.helpers import converged, mine_and_announce, pouw_test_node, wait_for

pytestmark = pytest.mark.asyncio

MATURITY = 8
GENESIS = pouw_genesis(expected_steps=30, k=2, maturity=MATURITY)


def _node(make_node: Callable[..., TestNode], name: str) -> TestNode:
    return pouw_test_node(make_node, name, GENESIS)


async def _mine(node: TestNode, transactions: Any = ()) -> Any:
    return await mine_and_announce(node, MINER, transactions)


async def test_a_cheater_poisoning_the_start_state_hash_cannot_block_the_real_proof(
    make_node: Callable[..., TestNode],
) -> None:
    miner = await _node(make_node, "miner").start()
    auditor = await _node(make_node, "auditor").start([miner])
    cheater = await _node(make_node, "cheater").start([miner])
    nodes = [miner, auditor, cheater]
    await wait_for(lambda: len(miner.p2p.peers) == 2, what="peers")
    await _mine(miner, [post_job_tx(ALICE, 0, tiny_spec(steps=400), price=GWEI, escrow=ETHER)])
    await _mine(miner)

    def cheat() -> Any:
        with miner.chain.write_lock:
            sub = substitute_block(miner.chain, b"\xcc" * 20, segment=3, job_id=1, seed=31)
            miner.chain.import_block(sub.block, sub.payload)
            return sub

    sub = await asyncio.to_thread(cheat)
    miner.backend.notify_new_head(sub.block.hash)
    await converged(nodes, timeout=60)

    # The cheater's pre-emptive "proof" of its own block: gossiped raw, its blob withheld.
    want = WorkPayload.decode(sub.payload).commitments[3 - 2]  # c_2: segment 3's start state
    poison = prove_tx(CAROL, 0, sub.block.hash, 3)
    to_miner = next(p for p in cheater.p2p.peers.values())
    await to_miner.send("txs", txs=[m.hx(poison.encode())])
    gossip = miner.p2p.gossip
    await wait_for(lambda: want in gossip._blob_waits and gossip._blob_waits[want].attempts >= 1, timeout=20,
                   what="the miner tried the blob and failed")

    # The honest auditor now finds the fraud, holds the start state and submits its proof.
    audit = await asyncio.to_thread(audit_block, auditor.chain, sub.block.hash, backend_for("cpu"))
    assert auditor.blobs.put_state(audit.start_state) == want
    tx = prove_tx(BOB, 0, sub.block.hash, 3)
    auditor.backend.submit_raw_transaction(tx.encode())
    await wait_for(lambda: miner.chain.txpool.get(tx.hash) is not None, timeout=15,
                   what="the honest proof in the miner's pool")
