"""Red-team attacks on how a fraud proof travels (p2p/gossip.py's ``_fetch_and_retry``).

The cheater knows its own lying segment j and the hash ``c_{j-1}`` of that segment's
start state before anyone else does (it listed it). Before an honest auditor has found
the fraud, it gossips a proof of its own block naming segment j, signed by any funded
key, and never serves the start state. Every node that receives it refuses it
(BlobNotHere) and fails to fetch ``c_{j-1}`` (nobody has it yet). Nodes that then gave
up on the hash for good would drop the honest auditor's proof when it came, and the
cheater would keep its reward; they must keep it waiting and fetch the state again.
"""
from __future__ import annotations

import asyncio
from typing import Callable

import pytest

from consensus.auditor import audit_block
from consensus.engine import backend_for
from consensus.payload import WorkPayload
from devnet.kit.p2pnode import TestNode
from p2p import messages as m
from tests.chain.helpers import BOB, CAROL
from tests.consensus.fraud_helpers import prove_tx
from tests.consensus.helpers import pouw_genesis
from tests.p2p.helpers import network_with_a_substituted_block, wait_for

pytestmark = pytest.mark.asyncio

MATURITY = 8
GENESIS = pouw_genesis(expected_steps=30, k=2, maturity=MATURITY)


async def test_a_cheater_poisoning_the_start_state_hash_cannot_block_the_real_proof(
    make_node: Callable[..., TestNode],
) -> None:
    nodes, sub = await network_with_a_substituted_block(make_node, GENESIS, ("miner", "auditor", "cheater"))
    miner, auditor, cheater = nodes

    # The cheater's pre-emptive "proof" of its own block: gossiped raw, its blob withheld.
    want = WorkPayload.decode(sub.payload).commitments[3 - 2]  # c_2: segment 3's start state
    poison = prove_tx(CAROL, 0, sub.block.hash, 3)
    to_miner = next(p for p in cheater.p2p.peers.values())
    await to_miner.send("txs", txs=[m.hx(poison.encode())])
    gossip = miner.p2p.gossip
    await wait_for(lambda: want in gossip._blob_tries and gossip._blob_tries[want].attempts >= 1, timeout=20,
                   what="the miner tried the blob and failed")

    # The honest auditor now finds the fraud, holds the start state and submits its proof.
    audit = await asyncio.to_thread(audit_block, auditor.chain, sub.block.hash, backend_for("cpu"))
    assert auditor.blobs.put_state(audit.start_state) == want
    tx = prove_tx(BOB, 0, sub.block.hash, 3)
    auditor.backend.submit_raw_transaction(tx.encode())
    await wait_for(lambda: miner.chain.txpool.get(tx.hash) is not None, timeout=15,
                   what="the honest proof in the miner's pool")
