"""Blob fetch: datasets and checkpoints travel by hash, in chunks, verified on arrival."""
from __future__ import annotations

import os

import pytest

from p2p import messages as m
from p2p.errors import BlobUnavailable
from pouw.prng import keccak256
from tests.p2p.helpers import FakePeer, wait_for

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
