"""Blob fetch: datasets and checkpoints travel by hash, in chunks, verified on arrival;
a peer that lies, lacks the blob or goes away is passed over for the next one."""
from __future__ import annotations

import os
from typing import Any

import pytest

from p2p import messages as m
from p2p.blobs import BlobFetcher, BlobServer
from p2p.config import P2PConfig
from p2p.errors import BlobUnavailable, MalformedMessage, PeerUnavailable
from p2p.interfaces import ReadPool
from p2p.peerset import PeerSet
from p2p.scoring import PENALTY_RATE
from pouw.blobstore import MemoryBlobStore
from pouw.prng import keccak256
from tests.p2p.helpers import FakePeer, wait_for
from tests.p2p.stubs import Script, StubPeer

pytestmark = pytest.mark.asyncio


async def test_fetch_blob_in_chunks_from_a_peer(make_node) -> None:
    a = await make_node("a").start()
    b = await make_node("b").start([a])
    await wait_for(lambda: b.p2p.peers, what="peer")
    data = os.urandom(2 * m.BLOB_CHUNK + 12345)  # three chunks
    blob_hash = a.blobs.put(data)
    assert await b.p2p.fetch_blob(blob_hash) == data
    assert b.blobs.get(blob_hash) == data  # stored locally
    # and then served by b to others
    c = await make_node("c").start([b])
    await wait_for(lambda: c.p2p.peers, what="peer")
    assert await c.p2p.fetch_blob(blob_hash) == data


async def test_missing_blob_is_unavailable(make_node) -> None:
    a = await make_node("a").start()
    b = await make_node("b").start([a])
    await wait_for(lambda: b.p2p.peers, what="peer")
    with pytest.raises(BlobUnavailable):
        await b.p2p.fetch_blob(b"\x01" * 32)


async def test_invalid_blob_bytes_penalise_the_peer(make_node, fake_peers) -> None:
    a = await make_node("a").start()
    fake = FakePeer(a)
    fake_peers.append(fake)
    await fake.connect()
    await wait_for(lambda: a.p2p.peers, what="peer")
    wanted = keccak256(b"the real dataset")
    import asyncio

    fetch = asyncio.ensure_future(a.p2p.fetch_blob(wanted))
    request = await fake.receive()
    assert request is not None and request.type == "get_blob"
    await fake.send(m.encode("blob", id=request.body["id"], hash=m.hx(wanted), size=4, data="0xdeadbeef"))
    with pytest.raises(BlobUnavailable):
        await fetch
    assert "does not match its hash" in await fake.closed_reason()
    assert not a.blobs.has(wanted)


# --- the parts alone: BlobFetcher, BlobServer (stub peers, no sockets) -----------------


def serving(data: bytes, *, size: int | None = None, shrink_after: int | None = None) -> Script:
    """A peer's answers to ``get_blob``: chunks of ``data``; it announces ``size`` (default
    the true one), or changes its story once ``shrink_after`` bytes were asked for."""

    def answer(type_: str, body: dict[str, Any]) -> m.Message:
        offset, length = body["offset"], body["length"]
        told = len(data) if size is None else size
        if shrink_after is not None and offset >= shrink_after:
            told -= 1
        return m.Message("blob", {"id": 1, "hash": body["hash"], "size": told, "data": m.hx(data[offset:offset + length])})

    return answer


def lacking(type_: str, body: dict[str, Any]) -> m.Message:
    return m.Message("blob", {"id": 1, "hash": body["hash"], "size": 0, "data": None})


async def fetch_with(peers: list[StubPeer], blob_hash: bytes, store: MemoryBlobStore | None = None) -> bytes:
    peer_set = PeerSet(P2PConfig())
    for rank, peer in enumerate(peers):  # the first listed has the best score
        peer_set.add(peer)
        peer_set.book.penalise(peer.keys, rank * PENALTY_RATE, "rank")
    reads = ReadPool()
    try:
        return await BlobFetcher(store, peer_set, reads).fetch(blob_hash)
    finally:
        reads.shutdown()


async def test_fetch_moves_on_from_a_lying_peer_to_an_honest_one() -> None:
    data = os.urandom(m.BLOB_CHUNK + 100)
    blob_hash = keccak256(data)
    liar = StubPeer("liar", answer=serving(os.urandom(len(data))))
    honest = StubPeer("honest", answer=serving(data))
    store = MemoryBlobStore()
    assert await fetch_with([liar, honest], blob_hash, store) == data
    assert [v.penalty for v in liar.violations] == [100] and "does not match its hash" in str(liar.violations[0])
    assert liar.requests and len(honest.requests) == 2 and not honest.violations  # two chunks
    assert store.get(blob_hash) == data


async def test_fetch_skips_peers_that_lack_the_blob_or_went_away() -> None:
    data = b"a small dataset"
    gone = StubPeer("gone", answer=lambda t, b: PeerUnavailable("disconnected"))
    empty = StubPeer("empty", answer=lacking)
    holder = StubPeer("holder", answer=serving(data))
    assert await fetch_with([gone, empty, holder], keccak256(data)) == data
    assert not gone.violations and not empty.violations and len(holder.requests) == 1


async def test_fetch_asks_the_best_scored_peer_first() -> None:
    data = b"a small dataset"
    first, second = StubPeer("first", answer=serving(data)), StubPeer("second", answer=serving(data))
    assert await fetch_with([first, second], keccak256(data)) == data
    assert first.requests and not second.requests


async def test_a_blob_in_our_store_is_not_asked_for() -> None:
    store = MemoryBlobStore()
    blob_hash = store.put(b"ours")
    peer = StubPeer("peer", answer=lacking)
    assert await fetch_with([peer], blob_hash, store) == b"ours" and not peer.requests


async def test_invalid_blob_chunks_whose_size_changes_are_a_violation() -> None:
    data = os.urandom(m.BLOB_CHUNK + 100)
    shifty = StubPeer("shifty", answer=serving(data, shrink_after=m.BLOB_CHUNK))
    with pytest.raises(BlobUnavailable):
        await fetch_with([shifty], keccak256(data))
    assert "inconsistent blob chunks" in str(shifty.violations[0])


async def test_invalid_blob_size_over_the_limit_is_refused_before_any_chunk_is_kept() -> None:
    data = b"tiny"
    store = MemoryBlobStore()
    boaster = StubPeer("boaster", answer=serving(data, size=store.max_bytes + 1))
    with pytest.raises(BlobUnavailable):
        await fetch_with([boaster], keccak256(data), store)
    assert len(boaster.violations) == 1 and len(boaster.requests) == 1 and not store.has(keccak256(data))


async def test_blob_server_serves_chunks_of_what_it_has() -> None:
    store = MemoryBlobStore()
    data = os.urandom(3000)
    blob_hash = store.put(data)
    reads = ReadPool()
    server = BlobServer(store, reads)
    try:
        kind, body = await server.serve(7, {"hash": m.hx(blob_hash), "offset": 1000, "length": 1500})
        assert kind == "blob" and body["id"] == 7 and body["size"] == 3000 and body["data"] == m.hx(data[1000:2500])
        _, body = await server.serve(8, {"hash": m.hx(b"\x05" * 32), "offset": 0, "length": 10})
        assert body["data"] is None and body["size"] == 0
        with pytest.raises(MalformedMessage):  # a chunk over BLOB_CHUNK is not asked for
            await server.serve(9, {"hash": m.hx(blob_hash), "offset": 0, "length": m.BLOB_CHUNK + 1})
    finally:
        reads.shutdown()
