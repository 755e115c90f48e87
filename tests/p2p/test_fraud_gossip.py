"""A fraud proof travels like any transaction, and its start state with it: the auditor's
node holds the state, a peer's pool refuses the gossiped proof for lacking it, fetches it
by hash from its peers, admits the proof and mines it; a validator that lacks the state
when the proof's block arrives fetches it the same way (p2p/gossip.py, p2p/importer.py)."""
from __future__ import annotations

import asyncio
from typing import Callable

import pytest

from consensus.auditor import audit_block
from consensus.engine import backend_for
from consensus.rewards import read_ring_entry
from devnet.kit.p2pnode import TestNode
from tests.chain.helpers import ALICE, BOB, MINER
from tests.consensus.fraud_helpers import prove_tx
from tests.consensus.helpers import pouw_genesis
from tests.p2p.helpers import converged, mine_and_announce, network_with_a_substituted_block, wait_for

pytestmark = pytest.mark.asyncio

MATURITY = 8
GENESIS = pouw_genesis(expected_steps=30, k=2, maturity=MATURITY)


async def test_a_gossiped_proof_brings_its_start_state_along(make_node: Callable[..., TestNode]) -> None:
    nodes, sub = await network_with_a_substituted_block(make_node, GENESIS, ("miner", "auditor", "validator"))
    miner, auditor, validator = nodes

    audit = await asyncio.to_thread(audit_block, auditor.chain, sub.block.hash, backend_for("cpu"))
    state_hash = auditor.blobs.put_state(audit.start_state)
    assert not miner.blobs.has(state_hash) and not validator.blobs.has(state_hash)
    tx = prove_tx(BOB, 0, sub.block.hash, 3)
    auditor.backend.submit_raw_transaction(tx.encode())  # as the auditor (or eth_sendRawTransaction) does
    await wait_for(lambda: miner.chain.txpool.get(tx.hash) is not None, timeout=30, what="the proof in the miner's pool")
    assert miner.blobs.has(state_hash), "fetched by hash from the auditor"

    proof = await mine_and_announce(miner, MINER, [miner.chain.txpool.get(tx.hash)])
    await converged(nodes, timeout=60)
    for node in nodes:
        assert node.chain.get_receipts(proof.block)[0].state_root == b"\x01"
        entry = read_ring_entry(node.chain.state_at(), sub.block.number, MATURITY)
        assert entry is not None and entry.slashed
    assert validator.blobs.has(state_hash)


async def test_a_transaction_sent_while_alone_reaches_a_peer_that_connects_later(
    make_node: Callable[..., TestNode],
) -> None:
    """An auditor may find and submit its proof before any peer is connected: the pool's
    pending transactions go to each peer as it connects."""
    from tests.chain.helpers import sign_tx

    alone = await make_node("alone").start()
    tx = sign_tx(ALICE, 0, b"\x11" * 20, value=1)
    alone.backend.submit_raw_transaction(tx.encode())
    later = await make_node("later").start([alone])
    await wait_for(lambda: later.chain.txpool.get(tx.hash) is not None, timeout=20, what="the tx at the new peer")
