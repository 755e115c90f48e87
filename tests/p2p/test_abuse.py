"""Misbehaving peers cost the honest node nothing but their connection: oversized,
malformed, binary and unsolicited messages, floods, and a peer that lies about its head.
Each test checks the node keeps serving an honest peer afterwards."""
from __future__ import annotations

import asyncio

import pytest

from p2p import messages as m
from tests.p2p.helpers import FakePeer, converged, wait_for

pytestmark = pytest.mark.asyncio


async def honest_still_works(node, make_node) -> None:
    honest = await make_node("honest").start([node])
    await node.mine(2)
    await converged([node, honest])


async def connected_fake(node, fake_peers, **hello) -> FakePeer:
    fake = FakePeer(node)
    fake_peers.append(fake)
    await fake.connect(**hello)
    await wait_for(lambda: len(node.p2p.peers) >= 1, what="fake peer admitted")
    return fake


async def test_invalid_oversized_frame_disconnects(make_node, fake_peers) -> None:
    a = await make_node("a").start(max_message_bytes=64 * 1024)
    fake = await connected_fake(a, fake_peers)
    await fake.send("txs " + '{"txs":["0x' + "00" * 100_000 + '"]}')
    await fake.closed_reason()
    await wait_for(lambda: not a.p2p.peers, what="disconnect")
    await honest_still_works(a, make_node)


async def test_invalid_message_over_its_type_limit_disconnects(make_node, fake_peers) -> None:
    a = await make_node("a").start()
    fake = await connected_fake(a, fake_peers)
    await fake.send(m.encode("new_block", hash="0x" + "00" * 32, number=1, total_work="0x1", pad="x" * 4000))
    assert "too large" in await fake.closed_reason()
    await honest_still_works(a, make_node)


@pytest.mark.parametrize(
    "frame, words",
    [
        ("hello there", "not JSON"),
        ("new_block", "unknown message type"),
        ("nonsense {}", "unknown message type"),
        ("new_block {not json", "not JSON"),
        ("new_block [1, 2]", "must be an object"),
        ('new_block {"hash": "0xzz", "number": 1, "total_work": "0x1"}', "hash"),
        ('get_chain {"id": 1, "locator": "0x00", "max": 5}', "locator"),
        ('txs {"txs": [' + ",".join(['"0x00"'] * 65) + "]}", "txs"),
        ("new_block " + "[" * 500 + "]" * 500, "new_block"),
    ],
)
async def test_invalid_malformed_message_disconnects(make_node, fake_peers, frame, words) -> None:
    a = await make_node("a").start()
    fake = await connected_fake(a, fake_peers)
    await fake.send(frame)
    assert words in await fake.closed_reason()
    await wait_for(lambda: not a.p2p.peers, what="disconnect")
    assert a.p2p.book.score(f"node:{fake.node_id.hex()}") < 0


async def test_invalid_binary_frame_disconnects(make_node, fake_peers) -> None:
    a = await make_node("a").start()
    fake = await connected_fake(a, fake_peers)
    await fake.ws.send_bytes(b"\x80\x03\x00pickle")
    assert "binary" in await fake.closed_reason()


async def test_invalid_unsolicited_response_disconnects(make_node, fake_peers) -> None:
    a = await make_node("a").start()
    fake = await connected_fake(a, fake_peers)
    await fake.send(m.encode("blocks", id=424242, blocks=[]))
    assert "unsolicited" in await fake.closed_reason()
    await honest_still_works(a, make_node)


async def test_invalid_junk_before_handshake_is_refused(make_node, fake_peers) -> None:
    a = await make_node("a").start()
    fake = FakePeer(a)
    fake_peers.append(fake)
    await fake.connect(handshake=False)
    await fake.send("\x00" * 100)
    assert "hello" in await fake.closed_reason()
    assert not a.p2p.peers
    await honest_still_works(a, make_node)


async def test_invalid_flood_gets_banned(make_node, fake_peers) -> None:
    a = await make_node("a").start(messages_per_second=100, message_burst=200)
    fake = await connected_fake(a, fake_peers)
    frame = m.encode("new_block", hash="0x" + "00" * 32, number=0, total_work="0x0")
    try:
        for _ in range(2000):
            await fake.send(frame)
    except ConnectionError:
        pass
    assert "banned" in await fake.closed_reason()
    await honest_still_works(a, make_node)


async def test_invalid_request_flood_gets_banned(make_node, fake_peers) -> None:
    a = await make_node("a").start(requests_per_second=10, request_burst=20)
    fake = await connected_fake(a, fake_peers)
    try:
        for i in range(500):
            await fake.send(m.encode("get_blocks", id=i + 1, hashes=["0x" + "00" * 32]))
    except ConnectionError:
        pass
    assert "banned" in await fake.closed_reason() or not a.p2p.peers
    await honest_still_works(a, make_node)


async def test_invalid_lying_head_costs_only_the_connection(make_node, fake_peers) -> None:
    a = await make_node("a").start()
    await a.mine(3)
    fake = FakePeer(a)
    fake_peers.append(fake)
    await fake.connect(total_work=10**30, number=10**6, head=b"\x42" * 32)
    request = await fake.receive_next("get_chain")  # a believed it and asked
    await fake.send(m.encode("blocks", id=request.body["id"], blocks=[]))
    again = await fake.receive_next("get_chain")  # a re-asks once, fresh, before judging (a reply may be stale)
    await fake.send(m.encode("blocks", id=again.body["id"], blocks=[]))
    assert "more total work than it serves" in await fake.closed_reason()
    assert a.number == 3
    await honest_still_works(a, make_node)


async def test_silent_peer_times_out_and_sync_moves_on(make_node, fake_peers) -> None:
    a = await make_node("a").start(request_timeout_s=0.5)
    fake = FakePeer(a)
    fake_peers.append(fake)
    await fake.connect(total_work=10**30)
    request = await fake.receive()
    assert request is not None and request.type == "get_chain"
    await asyncio.sleep(0.8)  # never answers
    assert a.p2p.book.score(f"node:{fake.node_id.hex()}") < 0
    await honest_still_works(a, make_node)


async def test_attack_a_silent_peer_claiming_the_most_work_cannot_starve_sync(make_node, fake_peers) -> None:
    """A peer claims more work than anyone and never answers; a second identity of it
    connects while the first is being given up on. An honest heavier peer is synced
    from at the next round, not after the liars have timed out their way to a ban
    (ten 0.5 s timeouts with a 1 s pause each, over and over with each new identity)."""
    a = await make_node("a").start(request_timeout_s=0.5)
    honest = make_node("honest")
    await asyncio.to_thread(honest.build_blocks, 5)
    liar = FakePeer(a)
    fake_peers.append(liar)
    await liar.connect(total_work=10**30, number=10**6, head=b"\x42" * 32)
    await liar.receive_next("get_chain")  # a believed it and asked; no answer ever comes
    await honest.start([a])  # connects while a waits on the liar
    await asyncio.sleep(0.6)  # the request timed out: a pauses 1 s before the next round
    again = FakePeer(a)  # the liar again, under a new node id, claiming as much
    fake_peers.append(again)
    await again.connect(total_work=10**30, number=10**6, head=b"\x43" * 32)
    await converged([a, honest], timeout=4)
    assert a.number == 5
