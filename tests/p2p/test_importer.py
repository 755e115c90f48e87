"""The block importer alone: how each kind of import failure is treated (ban, no ban,
fetch the missing blob and retry), and how new heads are published (a scripted chain,
a stub peer)."""
from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace
from typing import Optional

import pytest
from eth_typing import Hash32

from chain.chain import ImportResult
from chain.errors import InvalidBlock, InvalidTimestamp, UnknownParent, WorkBlobMissing, WorkVerificationUnavailable
from p2p.errors import BlobUnavailable, SyncAborted
from p2p.importer import MISSING_BLOB_RETRIES, BlockImporter
from p2p.interfaces import SyncStats
from tests.p2p.helpers import wait_for
from tests.p2p.stubs import StubPeer

pytestmark = pytest.mark.asyncio

H1, H2 = b"\x01" * 32, b"\x02" * 32


def imported(block_hash: bytes, *, moves_head: bool = True) -> ImportResult:
    """The chain's report of an import (only the block's hash is read by the importer)."""
    return ImportResult(
        imported=SimpleNamespace(hash=block_hash),  # type: ignore[arg-type]
        new_canonical=(Hash32(block_hash),) if moves_head else (), old_canonical=(), reorg=False,
    )


class ScriptedChain:
    """``import_block`` raises or returns the scripted outcomes in order (on the import thread)."""

    def __init__(self, *outcomes: ImportResult | BaseException) -> None:
        self.outcomes = list(outcomes)
        self.calls = 0

    def import_block(self, block_rlp: bytes, payload: Optional[bytes]) -> ImportResult:
        self.calls += 1
        outcome = self.outcomes.pop(0)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome


class Harness:
    def __init__(
        self, *outcomes: ImportResult | BaseException, blobs: Optional[dict[bytes, bytes]] = None, coalesce_s: float = 0.02,
    ) -> None:
        self.chain = ScriptedChain(*outcomes)
        self.stats = SyncStats()
        self.banned: list[tuple[str, str]] = []
        self.fetched: list[bytes] = []
        self.published: list[bytes] = []
        self.blobs = blobs
        self.importer = BlockImporter(
            self.chain, self.stats, ban=self.ban,  # type: ignore[arg-type]
            fetch_blob=self.fetch if blobs is not None else None,
            publish_head=self.published.append, coalesce_s=coalesce_s,
        )

    async def ban(self, peer: StubPeer, reason: str) -> None:
        self.banned.append((peer.name, reason))

    async def fetch(self, blob_hash: bytes) -> bytes:
        self.fetched.append(blob_hash)
        assert self.blobs is not None
        if blob_hash not in self.blobs:
            raise BlobUnavailable(f"no peer served blob {blob_hash.hex()}")
        return self.blobs[blob_hash]

    async def import_(self, peer: StubPeer) -> ImportResult:
        try:
            return await self.importer.import_from(peer, b"block", b"payload")
        finally:
            await self.importer.shutdown()


async def test_missing_blobs_are_fetched_by_hash_and_the_import_retried() -> None:
    """A block that needs its checkpoint state, then its dataset: each named by the
    error's ``blob_hash`` field, fetched, and the import tried again."""
    h = Harness(WorkBlobMissing("no checkpoint", blob_hash=H1), WorkBlobMissing("no dataset", blob_hash=H2),
                imported(b"\xbb" * 32), blobs={H1: b"state", H2: b"dataset"})
    peer = StubPeer("p")
    result = await h.import_(peer)
    assert result.imported.hash == b"\xbb" * 32 and h.fetched == [H1, H2] and h.chain.calls == 3
    assert b"\xbb" * 32 in peer.known_blocks and not h.banned


async def test_a_blob_nobody_serves_aborts_without_a_ban() -> None:
    h = Harness(WorkBlobMissing("no dataset", blob_hash=H1), blobs={})
    with pytest.raises(SyncAborted):
        await h.import_(StubPeer("p"))
    assert h.fetched == [H1] and not h.banned and h.chain.calls == 1


async def test_blob_retries_are_bounded() -> None:
    outcomes = [WorkBlobMissing("again", blob_hash=H1) for _ in range(MISSING_BLOB_RETRIES + 1)]
    h = Harness(*outcomes, blobs={H1: b"x"})
    with pytest.raises(SyncAborted):
        await h.import_(StubPeer("p"))
    assert len(h.fetched) == MISSING_BLOB_RETRIES and h.chain.calls == MISSING_BLOB_RETRIES + 1 and not h.banned


async def test_without_a_blob_store_a_missing_blob_is_transient() -> None:
    h = Harness(WorkBlobMissing("no dataset", blob_hash=H1))
    with pytest.raises(SyncAborted):
        await h.import_(StubPeer("p"))
    assert not h.banned and h.chain.calls == 1


async def test_invalid_block_bans_the_sender() -> None:
    h = Harness(InvalidBlock("bad state root"))
    with pytest.raises(SyncAborted):
        await h.import_(StubPeer("liar"))
    assert h.banned == [("liar", "invalid block: InvalidBlock: bad state root")] and h.stats.invalid_blocks == 1


async def test_invalid_block_after_a_fetched_blob_bans_the_sender() -> None:
    h = Harness(WorkBlobMissing("no dataset", blob_hash=H1), InvalidBlock("work does not verify"), blobs={H1: b"x"})
    with pytest.raises(SyncAborted):
        await h.import_(StubPeer("liar"))
    assert h.fetched == [H1] and len(h.banned) == 1 and h.stats.invalid_blocks == 1


async def test_transient_verification_failure_is_not_the_peers_fault() -> None:
    h = Harness(WorkVerificationUnavailable("verifier out of memory"), blobs={})
    with pytest.raises(SyncAborted):
        await h.import_(StubPeer("p"))
    assert not h.banned and not h.fetched and h.stats.invalid_blocks == 0


async def test_timestamp_ahead_of_our_clock_is_not_a_lie_but_one_in_the_past_is() -> None:
    ahead = Harness(InvalidTimestamp("too far in the future", expected="<= now + 15", got=int(time.time()) + 3600))
    with pytest.raises(SyncAborted):
        await ahead.import_(StubPeer("p"))
    assert not ahead.banned
    behind = Harness(InvalidTimestamp("not after the parent's", expected="> 1000", got=999))
    with pytest.raises(SyncAborted):
        await behind.import_(StubPeer("p"))
    assert len(behind.banned) == 1


async def test_unknown_parent_propagates_for_the_caller_to_sync() -> None:
    h = Harness(UnknownParent("orphan", parent_hash=H1))
    with pytest.raises(UnknownParent):
        await h.import_(StubPeer("p"))
    assert not h.banned


async def test_new_heads_are_published_once_per_burst_and_listeners_told_each() -> None:
    blocks = [bytes([i]) * 32 for i in range(1, 6)]
    # A coalescing window wide enough that six imports on the import thread fit in it
    # even on a loaded machine.
    h = Harness(*[imported(b) for b in blocks], imported(b"\xee" * 32, moves_head=False), coalesce_s=1.0)
    heads: list[bytes] = []

    def buggy_listener(head: bytes) -> None:
        raise RuntimeError("a listener's bug stops neither the import nor the next listener")

    h.importer.on_new_head.append(buggy_listener)
    h.importer.on_new_head.append(heads.append)
    peer = StubPeer("p")
    for _ in range(6):
        await h.importer.import_from(peer, b"block", None)
    assert heads == blocks and h.published == []
    await wait_for(lambda: bool(h.published), timeout=5, what="the publication")
    await asyncio.sleep(0.05)
    assert h.published == [blocks[-1]]  # one publication for the burst: the latest head
    await h.importer.shutdown()
