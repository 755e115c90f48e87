"""The peer set alone: penalties, bans by identity and by address, and the choice of
peers for sync and blob fetch (stub peers, no sockets)."""
from __future__ import annotations

import pytest

from p2p.config import P2PConfig, PeerAddress
from p2p.peerset import PeerSet
from p2p.scoring import PENALTY_INVALID_BLOCK, PENALTY_LYING_HEAD, PENALTY_RATE
from tests.p2p.stubs import StubPeer

pytestmark = pytest.mark.asyncio


def peer_set(**config: object) -> PeerSet:
    return PeerSet(P2PConfig(**config))  # type: ignore[arg-type]


async def test_score_threshold_bans_and_closes_the_peer() -> None:
    peers = peer_set(ban_score=-10)
    peer = StubPeer("p")
    peers.add(peer)
    await peers.penalise(peer, PENALTY_RATE, "rate")
    assert not peer.closed.is_set() and peers.score(peer) == -PENALTY_RATE
    await peers.penalise(peer, PENALTY_RATE, "rate again")
    assert peer.closed.is_set() and "banned: rate again" == peer.close_reason
    assert peers.banned(StubPeer("other")) is None
    again = StubPeer("p, reconnecting")
    again.node_id = peer.node_id
    assert peers.banned(again) == "rate again"  # same identity: refused


async def test_banned_peer_back_under_a_new_node_id_at_its_listen_address_is_refused() -> None:
    """Shedding the node id alone does not help: the dialable address (host and announced
    listen port) is banned with it. Another port on that host is another node, and one
    invalid block is not enough to ban the host (``address_strikes``)."""
    peers = peer_set(address_strikes=2)
    peer = StubPeer("p", host="10.0.0.7", listen_port=30303)
    peers.add(peer)
    await peers.ban(peer, "invalid block")
    assert peers.banned(StubPeer("new id, same address", host="10.0.0.7", listen_port=30303)) == "invalid block"
    assert peers.banned(StubPeer("other port", host="10.0.0.7", listen_port=30304)) is None
    assert peers.banned(StubPeer("no listen port", host="10.0.0.7")) is None


async def test_a_peer_back_after_its_ban_is_banned_again_by_one_more_offence() -> None:
    peers = peer_set(ban_score=-100, ban_seconds=60)
    now = [1000.0]
    peers.book.clock = lambda: now[0]
    peer = StubPeer("p")
    await peers.ban(peer, "invalid block")
    now[0] += 59
    assert peers.banned(peer) == "invalid block"
    now[0] += 2
    assert peers.banned(peer) is None  # served its time: back at half the threshold
    back = StubPeer("p, back")
    back.node_id = peer.node_id
    peers.add(back)
    await peers.penalise(back, PENALTY_LYING_HEAD - 1, "lying head")
    assert not back.closed.is_set()
    await peers.penalise(back, 1, "one more")
    assert back.closed.is_set() and peers.banned(back) == "one more"


async def test_invalid_data_from_one_address_bans_it_under_every_node_id() -> None:
    """The strongest strategy against identity bans: a fresh node id for each invalid
    block, from one address. The address strikes add up; once it is banned every
    connection from it closes and a new identity is refused too."""
    peers = peer_set(address_strikes=3)
    bystander = StubPeer("honest neighbour", host="10.0.0.1")
    elsewhere = StubPeer("elsewhere", host="10.0.0.2")
    peers.add(bystander)
    peers.add(elsewhere)
    for i in range(3):
        liar = StubPeer(f"liar-{i}", host="10.0.0.1")
        assert peers.banned(liar) is None
        peers.add(liar)
        await peers.ban(liar, "invalid block")
        assert liar.closed.is_set()
    assert bystander.closed.is_set() and "invalid blocks or blobs from 10.0.0.1" in str(bystander.close_reason)
    assert not elsewhere.closed.is_set()
    assert peers.banned(StubPeer("fresh id", host="10.0.0.1")) is not None


async def test_cheap_offences_never_strike_the_address() -> None:
    peers = peer_set(address_strikes=1, ban_score=-5)
    for i in range(3):
        noisy = StubPeer(f"noisy-{i}", host="10.0.0.1")
        await peers.penalise(noisy, PENALTY_RATE, "rate")  # banned by identity
        assert noisy.closed.is_set()
    assert peers.banned(StubPeer("fresh id", host="10.0.0.1")) is None
    await peers.penalise(StubPeer("liar", host="10.0.0.1"), PENALTY_INVALID_BLOCK, "bad blob")
    assert peers.banned(StubPeer("fresh id", host="10.0.0.1")) is not None


async def test_static_peer_addresses_are_never_banned_as_a_whole() -> None:
    peers = peer_set(address_strikes=1, static_peers=(PeerAddress("127.0.0.1", 30303),))
    await peers.ban(StubPeer("devnet node", host="127.0.0.1"), "invalid block")
    assert peers.banned(StubPeer("another devnet node", host="127.0.0.1")) is None


async def test_remove_forgets_only_the_registered_connection() -> None:
    peers = peer_set()
    old = StubPeer("old")
    new = StubPeer("new")
    new.node_id = old.node_id
    peers.add(old)
    peers.add(new)  # replaced the duplicate
    assert not peers.remove(old) and peers.get(new.node_id) is new
    assert peers.remove(new) and len(peers) == 0


async def test_choice_of_peers_by_work_and_by_score() -> None:
    peers = peer_set()
    light, heavy, heaviest = StubPeer("light", total_work=5), StubPeer("heavy", total_work=50), StubPeer("heaviest", total_work=90)
    for p in (light, heavy, heaviest):
        peers.add(p)
    await heaviest.close("gone")
    assert peers.heaviest(more_than=10) is heavy  # a closed connection is no sync source
    assert peers.heaviest(more_than=50) is None
    await peers.penalise(light, PENALTY_RATE, "rate")
    assert peers.by_score()[-1] is light
