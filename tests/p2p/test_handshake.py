"""Handshake: peers of our chain connect; another chain, genesis or protocol is refused
with a clear reason; ourselves and duplicates are dropped."""
from __future__ import annotations

import asyncio

import pytest

from p2p.config import PeerAddress
from tests.chain.helpers import dev_genesis
from tests.p2p.helpers import FakePeer, converged, wait_for

pytestmark = pytest.mark.asyncio


async def test_handshake_connects_and_reports_head(make_node) -> None:
    a = await make_node("a").start()
    await a.mine(3)
    b = await make_node("b").start([a])
    await wait_for(lambda: len(a.p2p.peers) == 1 and len(b.p2p.peers) == 1, what="peers")
    (peer,) = b.p2p.peers.values()
    assert peer.head_number == 3
    assert peer.total_work == a.work()
    assert a.p2p.peer_count == 1  # what net_peerCount reports (node/cli.py: backend.peers = p2p)
    await converged([a, b])


async def test_mutual_static_peers_keep_one_connection(make_node) -> None:
    a = await make_node("a").start()
    b = await make_node("b").start([a])
    a.p2p.add_peer(b.address)  # both dial each other
    await wait_for(lambda: len(a.p2p.peers) == 1 and len(b.p2p.peers) == 1, what="peers")
    await asyncio.sleep(0.5)
    assert len(a.p2p.peers) == 1 and len(b.p2p.peers) == 1
    assert list(a.p2p.peers.values())[0].outbound != list(b.p2p.peers.values())[0].outbound


async def test_invalid_wrong_genesis_refused(make_node) -> None:
    a = await make_node("a").start()
    other = await make_node("other", genesis=dev_genesis(initialDifficulty=12_345_678_901)).start([a])
    await asyncio.sleep(0.5)
    assert not a.p2p.peers and not other.p2p.peers


async def test_invalid_wrong_genesis_reason(make_node, fake_peers) -> None:
    a = await make_node("a").start()
    fake = FakePeer(a)
    fake_peers.append(fake)
    await fake.connect(handshake=False)
    await fake.send(fake.hello(genesis=b"\x11" * 32).encode())
    first = await fake.receive()
    assert first is not None and first.type == "hello"
    reason = await fake.closed_reason()
    assert "genesis" in reason
    assert not a.p2p.peers


@pytest.mark.parametrize(
    "override, words",
    [({"chain_id": 1}, "chain id"), ({"protocol": 99}, "protocol version")],
)
async def test_invalid_chain_id_or_protocol_refused(make_node, fake_peers, override, words) -> None:
    a = await make_node("a").start()
    fake = FakePeer(a)
    fake_peers.append(fake)
    await fake.connect(handshake=False)
    await fake.send(fake.hello(**override).encode())
    assert words in await fake.closed_reason()


async def test_invalid_self_connection_refused(make_node) -> None:
    a = await make_node("a").start()
    a.p2p.add_peer(a.address)
    await asyncio.sleep(0.3)
    assert not a.p2p.peers


async def test_unreachable_peer_is_retried_with_backoff(make_node) -> None:
    b = make_node("b")
    a = await make_node("a").start([PeerAddress("127.0.0.1", 1)])  # nothing listens there
    await asyncio.sleep(0.3)
    assert not a.p2p.peers  # and no crash: the dial loop keeps trying
    await b.start()
    a.p2p.add_peer(b.address)
    await wait_for(lambda: len(a.p2p.peers) == 1, what="connection")
