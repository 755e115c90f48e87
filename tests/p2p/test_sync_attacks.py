"""Attacks on the syncer and gossip by peers that claim the most work.

The claims under attack: a node never stays behind a heavier head it heard of; peers
whose rounds failed (several at once, or one under identity after identity) each cost
one round before every other heavier peer connected by then is tried; a peer claiming
more work that answers a sync request with nothing, or only with blocks we hold, fails
the round and is penalised. Each test plays a hostile peer (raw WebSocket, in-process)
against an honest node ``a`` that has an honest heavier peer, and asserts that ``a``
converges to the honest chain within a few sync rounds, with bounded resources.
"""
from __future__ import annotations

import asyncio
import os
import time
from typing import Any, Callable, Optional

import pytest
import rlp
from aiohttp import WSMsgType

from p2p import messages as m
from tests.p2p.helpers import FakePeer, converged, wait_for

pytestmark = pytest.mark.asyncio

TIMEOUT = 0.5
"""request_timeout_s of the attacked node: a round against a silent peer costs 0.5 s
plus the syncer's 1 s pause."""

LIE = dict(total_work=10**30, number=10**6)

Policy = Callable[["Liar", m.Message], Any]
"""``policy(liar, request)``: awaited for each request the node sends the liar; it may
sleep, answer (``liar.answer``), disconnect, or do nothing."""


class Liar(FakePeer):
    """A hostile peer: handshakes with a lying hello, then runs ``policy`` on each
    request the node sends it, counting what it receives."""

    def __init__(self, node: Any, policy: Optional[Policy] = None) -> None:
        super().__init__(node)
        self.policy = policy
        self.requests: list[m.Message] = []
        self.notices = 0
        self._task: Optional[asyncio.Task[None]] = None

    async def connect(self, **hello: Any) -> "Liar":  # type: ignore[override]
        hello.setdefault("head", os.urandom(32))
        for key, value in LIE.items():
            hello.setdefault(key, value)
        await super().connect(**hello)
        self._task = asyncio.create_task(self._serve())
        return self

    async def _serve(self) -> None:
        while True:
            try:
                msg = await self.ws.receive()
            except Exception:  # noqa: BLE001
                return
            if msg.type != WSMsgType.TEXT:
                return
            decoded = m.decode(msg.data, 64 * 1024 * 1024)
            if decoded.kind == "request":
                self.requests.append(decoded)
                if self.policy is not None:
                    asyncio.ensure_future(self.policy(self, decoded))
            else:
                self.notices += 1

    async def answer(self, request: m.Message, blocks: list[list[Optional[str]]], **extra: Any) -> None:
        try:
            await self.send(m.encode("blocks", id=request.body["id"], blocks=blocks, **extra))
        except Exception:  # noqa: BLE001 - the node may have closed us meanwhile
            pass

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        await super().close()


def genesis_entry(node: Any) -> list[Optional[str]]:
    """The node's own genesis block, as a ``blocks`` entry: valid, and already held."""
    block = node.chain.get_block_by_hash(node.chain.genesis_hash)
    return [m.hx(rlp.encode(block)), None]


async def silent(liar: Liar, request: m.Message) -> None:
    """Never answers."""


async def honest_behind(make_node, blocks: int = 5, **config: Any) -> tuple[Any, Any]:
    """``a`` (request timeout 0.5 s) and ``honest`` holding ``blocks`` blocks ``a`` lacks,
    not yet connected."""
    a = await make_node("a").start(request_timeout_s=TIMEOUT, **config)
    honest = make_node("honest")
    await asyncio.to_thread(honest.build_blocks, blocks)
    return a, honest


async def liar(a: Any, fake_peers: list, policy: Optional[Policy] = silent, **hello: Any) -> Liar:
    peer = Liar(a, policy)
    fake_peers.append(peer)
    await peer.connect(**hello)
    key = f"node:{peer.node_id.hex()}"  # admitted, or already judged and closed
    await wait_for(lambda: peer.node_id in a.p2p.peerset.peers or a.p2p.book.score(key) < 0 or peer.ws.closed,
                   timeout=5, what="liar admitted")
    return peer


# --- 1. two silent liars claiming the most work -----------------------------------------


async def test_two_silent_liars_cannot_starve_sync(make_node, fake_peers) -> None:
    """Two peers claiming the most work never answer: each costs one round, then the
    honest peer is synced from (before: they took turns until both were banned, ten
    timeouts each)."""
    a, honest = await honest_behind(make_node)
    l1 = await liar(a, fake_peers)
    l2 = await liar(a, fake_peers)
    await honest.start([a])
    started = time.monotonic()
    try:
        await converged([a, honest], timeout=8)  # 5 rounds' worth; the claim needs 2-3
    finally:
        print(f"\n[two silent liars] a #{a.number}/{honest.number} after {time.monotonic() - started:.1f} s; "
              f"get_chain to liars: {len(l1.requests)} + {len(l2.requests)}")
    assert len(l1.requests) + len(l2.requests) <= 4  # one round each, and perhaps a retry once synced


async def test_one_silent_liar_under_fresh_ids_cannot_starve_sync(make_node, fake_peers) -> None:
    """The liar disconnects once asked, and comes back under a new node id at once,
    five identities in a row: each failed round hands the next to the honest peer."""
    a, honest = await honest_behind(make_node)
    await honest.start([a])
    started = time.monotonic()
    rounds = 0
    while a.number < honest.number and time.monotonic() - started < 8:
        fresh = await liar(a, fake_peers)
        rounds += 1
        await asyncio.sleep(0.3)
        await fresh.close()
    await converged([a, honest], timeout=5)
    print(f"\n[flapping liar] converged after {time.monotonic() - started:.1f} s, {rounds} identities")
    assert time.monotonic() - started < 5


# --- 2. a liar whose segments are valid but already held --------------------------------


async def test_liar_serving_blocks_we_hold_cannot_hold_the_round(make_node, fake_peers) -> None:
    """Every get_chain answered at once with a block ``a`` holds (its genesis): the round
    fails as an empty answer does, the liar is penalised, the honest peer synced from
    (before: the round never ended, hundreds of requests a second)."""
    a, honest = await honest_behind(make_node)
    entry = genesis_entry(a)

    async def known_blocks(peer: Liar, request: m.Message) -> None:
        await asyncio.sleep(0.01)  # well under the message rate limit
        await peer.answer(request, [entry])

    bad = await liar(a, fake_peers, known_blocks)
    await honest.start([a])
    started = time.monotonic()
    try:
        await converged([a, honest], timeout=8)
    finally:
        elapsed = time.monotonic() - started
        print(f"\n[known-block liar] a #{a.number}/{honest.number} after {elapsed:.1f} s; "
              f"{len(bad.requests)} get_chain answered ({len(bad.requests) / elapsed:.0f}/s), "
              f"liar score {a.p2p.book.score(f'node:{bad.node_id.hex()}')}, still connected: "
              f"{bad.node_id in a.p2p.peerset.peers}")
    assert a.p2p.book.score(f"node:{bad.node_id.hex()}") <= -50
    assert len(bad.requests) <= 10


async def test_slow_liar_serving_blocks_we_hold_cannot_hold_the_round(make_node, fake_peers) -> None:
    """The same, each answer just under the request timeout."""
    a, honest = await honest_behind(make_node)
    entry = genesis_entry(a)

    async def slow_known(peer: Liar, request: m.Message) -> None:
        await asyncio.sleep(TIMEOUT * 0.8)
        await peer.answer(request, [entry])

    bad = await liar(a, fake_peers, slow_known)
    await honest.start([a])
    try:
        await converged([a, honest], timeout=8)
    finally:
        print(f"\n[slow known-block liar] a #{a.number}; {len(bad.requests)} get_chain, "
              f"liar score {a.p2p.book.score(f'node:{bad.node_id.hex()}')}")
    assert a.p2p.book.score(f"node:{bad.node_id.hex()}") <= -50


async def test_slow_feeder_of_valid_blocks_yields_to_another_peer(make_node, fake_peers) -> None:
    """The liar serves the honest chain's own blocks, one per request, each just under the
    request timeout: valid, so nothing to penalise, but alone it would take 30 x 0.4 s.
    The first slow segment ends its round (no blame) and the honest peer serves the rest."""
    a, honest = await honest_behind(make_node, blocks=30)
    chain = [honest.chain.get_block_by_number(n) for n in range(1, 31)]
    served = 0

    async def slow_feed(peer: Liar, request: m.Message) -> None:
        nonlocal served
        await asyncio.sleep(TIMEOUT * 0.8)
        block, served = chain[min(served, len(chain) - 1)], served + 1
        await peer.answer(request, [[m.hx(rlp.encode(block)), None]])

    bad = await liar(a, fake_peers, slow_feed)
    await honest.start([a])
    started = time.monotonic()
    await converged([a, honest], timeout=6)
    elapsed = time.monotonic() - started
    print(f"\n[slow valid feeder] converged after {elapsed:.1f} s; the feeder served {served}")
    assert served <= 4


# --- 3. empty answers, slowly -------------------------------------------------------------


async def test_slow_empty_answers_fail_the_round(make_node, fake_peers) -> None:
    """Empty answers just under the timeout: the liar pays for the lie, the next round
    goes to the honest peer."""
    a, honest = await honest_behind(make_node)

    async def slow_empty(peer: Liar, request: m.Message) -> None:
        await asyncio.sleep(TIMEOUT * 0.9)
        await peer.answer(request, [])

    bad = await liar(a, fake_peers, slow_empty)
    await honest.start([a])
    started = time.monotonic()
    await converged([a, honest], timeout=6)
    print(f"\n[slow empty liar] converged after {time.monotonic() - started:.1f} s")
    assert a.p2p.book.score(f"node:{bad.node_id.hex()}") <= -50


async def test_many_empty_liars_at_once_cannot_starve_sync(make_node, fake_peers) -> None:
    """Six liars under six node ids, each answering nothing (empty blocks, at once):
    each costs at most one round, and each is banned after two."""
    a, honest = await honest_behind(make_node)

    async def empty(peer: Liar, request: m.Message) -> None:
        await peer.answer(request, [])

    liars = [await liar(a, fake_peers, empty, total_work=10**30 + i) for i in range(6)]
    await honest.start([a])
    started = time.monotonic()
    await converged([a, honest], timeout=8)
    print(f"\n[6 empty liars] converged after {time.monotonic() - started:.1f} s; "
          f"requests: {[len(x.requests) for x in liars]}")


# --- 4. a wrong but valid-looking segment ---------------------------------------------------


async def test_liar_serving_a_disconnected_segment_fails_the_round(make_node, fake_peers) -> None:
    """Valid blocks of another chain whose parent ``a`` lacks (blocks 3.. of a private
    fork): 'does not connect' fails the round; the honest peer is synced from next."""
    a, honest = await honest_behind(make_node)
    fork = make_node("fork")
    blocks = await asyncio.to_thread(fork.build_blocks, 6, extra=b"fork")
    entries = [[m.hx(rlp.encode(b)), None] for b in blocks[2:]]

    async def disconnected(peer: Liar, request: m.Message) -> None:
        await peer.answer(request, entries)

    bad = await liar(a, fake_peers, disconnected)
    await honest.start([a])
    started = time.monotonic()
    await converged([a, honest], timeout=6)
    print(f"\n[disconnected segment] converged after {time.monotonic() - started:.1f} s, "
          f"liar score {a.p2p.book.score(f'node:{bad.node_id.hex()}')}")
    assert a.p2p.book.score(f"node:{bad.node_id.hex()}") < 0


# --- 5. announcement floods -------------------------------------------------------------


async def test_announcement_flood_stays_bounded_and_sync_proceeds(make_node, fake_peers) -> None:
    """A liar announces 600 heads it does not have (fresh hashes, rising work, under the
    message rate limit) and never answers: the fetch queue, the peer's seen-set and the
    book stay bounded, the liar is banned, and ``a`` reaches the honest head."""
    a, honest = await honest_behind(make_node)
    bad = await liar(a, fake_peers, silent, total_work=1)  # claims nothing at first
    await honest.start([a])
    peer = a.p2p.peerset.get(bad.node_id)
    assert peer is not None
    started = time.monotonic()
    high_water = 0
    try:
        for i in range(600):
            await bad.send(m.encode("new_block", hash=m.hx(os.urandom(32)), number=10**6 + i,
                                    total_work=m.qty(10**30 + i)))
            if i % 50 == 0:
                high_water = max(high_water, a.p2p.gossip._announced.qsize())
                await asyncio.sleep(0.25)  # 200 a second at most
    except Exception:  # noqa: BLE001 - banned and closed mid-flood
        pass
    await converged([a, honest], timeout=12)
    elapsed = time.monotonic() - started
    print(f"\n[announce flood] converged after {elapsed:.1f} s; queue high water {high_water}; "
          f"known_blocks {len(peer.known_blocks._items)}; book {len(a.p2p.book.records)} keys; "
          f"liar requests {len(bad.requests)}")
    assert high_water <= 1024 and len(peer.known_blocks._items) <= 4096
    assert len(a.p2p.book.records) <= 10


async def test_repeated_announcements_do_not_spin_the_syncer(make_node, fake_peers) -> None:
    """A peer that announces more work and serves an empty chain cannot keep ``a`` in
    rounds: after its ban ``a`` is idle (no more get_chain), its head unchanged."""
    a = await make_node("a").start(request_timeout_s=TIMEOUT)
    await a.mine(2)

    async def empty(peer: Liar, request: m.Message) -> None:
        await peer.answer(request, [])

    bad = await liar(a, fake_peers, empty, total_work=1, number=0)
    for i in range(40):
        try:
            await bad.send(m.encode("new_block", hash=m.hx(os.urandom(32)), number=3 + i,
                                    total_work=m.qty(10**20 + i)))
        except Exception:  # noqa: BLE001 - closed
            break
        await asyncio.sleep(0.02)
    await wait_for(lambda: bad.node_id not in a.p2p.peerset.peers, timeout=8, what="the liar's ban")
    asked = len(bad.requests)
    await asyncio.sleep(1.5)  # three recheck periods
    print(f"\n[announce + empty] liar asked {asked} times before its ban")
    assert len(bad.requests) == asked and a.number == 2 and asked <= 10
