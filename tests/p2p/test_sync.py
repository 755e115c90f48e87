"""Sync: a late joiner catches up, an interrupted sync resumes, a restarted node catches
up from its datadir, a partition heals onto the heaviest branch, an invalid block bans
its sender while the honest chain goes on."""
from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.chain.helpers import ALICE, CAROL, DEV_ADDRESSES, OTHER_MINER, address_of, transfer, with_header
from tests.p2p.helpers import FakePeer, block_rlp, converged, wait_for
from p2p import messages as m

pytestmark = pytest.mark.asyncio


def transfers(count: int, key: Any = ALICE) -> Any:
    """txs_per_block: ``count`` transfers per block from ``key``, nonces in sequence."""
    state = {"nonce": 0}

    def make(i: int) -> list[Any]:
        txs = [transfer(key, state["nonce"] + j, DEV_ADDRESSES[4], 1) for j in range(count)]
        state["nonce"] += count
        return txs

    return make


async def test_late_joiner_syncs_300_blocks_with_transactions(make_node) -> None:
    a = await make_node("a").start()
    await a.mine(300, txs_per_block=transfers(1))
    b = await make_node("b").start([a])
    await converged([a, b], timeout=90)
    assert b.number == 300
    assert b.chain.get_balance(DEV_ADDRESSES[4]) == a.chain.get_balance(DEV_ADDRESSES[4])
    # The head is in the database before the sync round counts its last block: let it end.
    await wait_for(lambda: not b.p2p.stats.syncing, what="the sync round to end")
    assert b.p2p.stats.blocks_imported == 300
    assert b.p2p.stats.batches >= 300 // 64


async def test_interrupted_sync_resumes_from_the_datadir(make_node, tmp_path) -> None:
    a = await make_node("a").start()
    await a.mine(250)
    b = await make_node("b", path=tmp_path / "b").start([a], sync_batch=16)
    await wait_for(lambda: b.number >= 40, what="partial sync")
    await b.stop()  # cut off mid-sync
    cut = b.number
    b.close()
    assert 40 <= cut < 250
    b2 = await make_node("b2", path=tmp_path / "b").start([a])
    assert b2.number >= cut  # the datadir kept what was imported
    await converged([a, b2], timeout=60)
    await wait_for(lambda: not b2.p2p.stats.syncing, what="the sync round to end")
    assert b2.p2p.stats.blocks_imported == 250 - cut  # nothing downloaded twice


async def test_restarted_node_catches_up(make_node, tmp_path) -> None:
    a = await make_node("a").start()
    b = await make_node("b", path=tmp_path / "b").start([a])
    await a.mine(5)
    await converged([a, b])
    await b.stop()
    b.close()
    await a.mine(20)  # the network moves on while b is down
    b2 = await make_node("b2", path=tmp_path / "b").start([a])
    await converged([a, b2])
    assert b2.number == 25


async def test_partition_heals_onto_the_heaviest_branch(make_node) -> None:
    a = await make_node("a").start()
    b = await make_node("b").start([a])
    c = await make_node("c").start([a, b])
    d = await make_node("d").start([a, b, c])
    nodes = [a, b, c, d]
    await wait_for(lambda: all(len(n.p2p.peers) == 3 for n in nodes), what="full mesh")
    await a.mine(3)
    await converged(nodes)

    # Split {a, b} | {c, d}: each side stops peering with the other.
    for left in (a, b):
        for right in (c, d):
            await left.p2p.disconnect_address(right.address)
            await right.p2p.disconnect_address(left.address)
    await wait_for(lambda: all(len(n.p2p.peers) == 1 for n in nodes), what="partition")
    await a.mine(2, coinbase=OTHER_MINER)
    await c.mine(4)
    await converged([a, b])
    await converged([c, d])
    assert a.head().hash != c.head().hash
    assert c.work() > a.work()

    # Heal: every node dials the other half again.
    for left in (a, b):
        for right in (c, d):
            left.p2p.add_peer(right.address)
            right.p2p.add_peer(left.address)
    head = await converged(nodes, timeout=30)
    assert head == bytes(c.head().hash) and a.number == 7
    assert len({n.chain.head().state_root for n in nodes}) == 1  # same state everywhere


async def test_invalid_block_bans_sender_and_honest_chain_goes_on(make_node, fake_peers) -> None:
    a = await make_node("a").start()
    v = await make_node("validator").start([a])
    await a.mine(2)
    await converged([a, v])

    # The cheat builds a real block on the head, then lies about its state root
    # (with noproof this stands for "faked work": a block whose commitments are false).
    good, _ = a.chain.build_block(OTHER_MINER, timestamp=a.head().timestamp + 5)
    bad = with_header(good, state_root=b"\x66" * 32)
    fake = FakePeer(v)
    fake_peers.append(fake)
    await fake.connect()
    await fake.send(m.encode("new_block", hash=m.hx(bad.hash), number=3, total_work=m.qty(a.work() + bad.header.difficulty)))
    request = await fake.receive()
    assert request is not None and request.type == "get_blocks"
    await fake.send(m.encode("blocks", id=request.body["id"], blocks=[[m.hx(block_rlp(bad)), None]]))
    reason = await fake.closed_reason()
    assert "banned" in reason and "InvalidStateRoot" in reason
    assert v.number == 2 and v.p2p.stats.invalid_blocks == 1

    # It cannot come back with the same identity...
    again = FakePeer(v)
    again.node_id = fake.node_id
    fake_peers.append(again)
    await again.connect(handshake=False)
    await again.send(again.hello().encode())
    assert "banned" in await again.closed_reason()
    # ...and the honest chain goes on.
    await a.mine(3)
    await converged([a, v])
    assert v.number == 5 and len(v.p2p.peers) == 1


async def test_orphan_announcement_fetches_ancestors(make_node) -> None:
    a = await make_node("a").start()
    b = await make_node("b").start([a])
    await wait_for(lambda: len(b.p2p.peers) == 1, what="peer")
    # Blocks made without announcing, then one announcement of the tip: b gets the tip,
    # finds its parent unknown, and syncs the gap.
    await asyncio.to_thread(a.build_blocks, 10)
    await a.mine(1)
    await converged([a, b])
    assert b.number == 11


async def test_a_heavier_peer_is_synced_from_without_being_asked(make_node) -> None:
    """A peer is known to claim more work (its announcement arrived) but the fetch that
    followed failed and nothing asked for a sync round: the syncer checks by itself
    every sync_recheck_s and catches up."""
    a = await make_node("a").start()
    b = await make_node("b").start([a])
    await wait_for(lambda: len(b.p2p.peers) == 1 and len(a.p2p.peers) == 1, what="peers")
    await asyncio.to_thread(a.build_blocks, 3)  # not announced
    (peer,) = list(b.p2p.peers.values())
    peer.head_number, peer.total_work = 3, a.work()  # as a new_block notice leaves it
    await converged([a, b], timeout=5)
    assert b.number == 3


async def test_a_failure_serving_one_request_does_not_stop_serving(make_node, monkeypatch) -> None:
    """A bug while serving one request is logged; the peer's later requests are still
    answered (the serving task used to end, and every later request timed out)."""
    a = await make_node("a").start()
    b = await make_node("b").start([a])
    await wait_for(lambda: len(b.p2p.peers) == 1 and len(a.p2p.peers) == 1, what="peers")
    block = (await a.mine(1))[0]
    await converged([a, b])
    real = a.p2p.syncer.serve_blocks
    calls: list[int] = []

    async def broken_once(request_id: int, body: dict[str, Any]) -> Any:
        calls.append(request_id)
        if len(calls) == 1:
            raise RuntimeError("a bug")
        return await real(request_id, body)

    monkeypatch.setattr(a.p2p.syncer, "serve_blocks", broken_once)
    (peer,) = list(b.p2p.peers.values())
    first = asyncio.ensure_future(peer.request("get_blocks", ("blocks",), hashes=[m.hx(block.hash)]))
    await wait_for(lambda: len(calls) == 1, timeout=5, what="the first request served")
    reply = await asyncio.wait_for(peer.request("get_blocks", ("blocks",), hashes=[m.hx(block.hash)]), 5)
    assert len(reply.body["blocks"]) == 1 and not first.done()
    first.cancel()
