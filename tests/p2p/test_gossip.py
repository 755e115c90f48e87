"""Gossip: blocks and transactions reach every node of a small network."""
from __future__ import annotations

import pytest

from tests.chain.helpers import ALICE, BOB, address_of, transfer
from tests.p2p.helpers import converged, wait_for

pytestmark = pytest.mark.asyncio


async def test_block_gossip_converges_on_a_line(make_node) -> None:
    # a - b - c - d: blocks from a must travel through b and c.
    a = await make_node("a").start()
    b = await make_node("b").start([a])
    c = await make_node("c").start([b])
    d = await make_node("d").start([c])
    await wait_for(lambda: all(len(n.p2p.peers) >= 1 for n in (a, b, c, d)) and len(b.p2p.peers) == 2
                   and len(c.p2p.peers) == 2, what="line topology")
    for _ in range(5):
        await a.mine(1)
    head = await converged([a, b, c, d])
    assert head == bytes(a.head().hash) and d.number == 5
    await d.mine(2)  # and back the other way
    await converged([a, b, c, d])
    assert a.number == 7


async def test_tx_gossip_reaches_every_pool_and_gets_mined(make_node) -> None:
    a = await make_node("a").start()
    b = await make_node("b").start([a])
    c = await make_node("c").start([b])
    await wait_for(lambda: len(b.p2p.peers) == 2, what="peers")
    tx = transfer(ALICE, 0, address_of(BOB), 12345)
    a.backend.submit_raw_transaction(tx.encode())  # as eth_sendRawTransaction does
    await wait_for(lambda: c.chain.txpool.get(tx.hash) is not None, what="tx at c")
    assert b.chain.txpool.get(tx.hash) is not None
    # c mines it (transactions from its pool); the block reaches a, whose pool drops it.
    await c.mine(1, txs_per_block=lambda i: c.chain.txpool.pending())
    await converged([a, b, c])
    assert a.chain.get_transaction_by_hash(tx.hash) is not None
    # The pool hears of the new head just after the head moves (same import, other thread).
    await wait_for(lambda: a.chain.txpool.get(tx.hash) is None, timeout=5, what="a's pool to drop the mined tx")
