"""Blobs between peers: datasets and checkpoint states, fetched by hash, served in
chunks, and prefetched for the open jobs this node may want to mine.

A blob is named by its hash (a dataset's keccak256, a state's state hash), so a peer's
bytes are checked before they are stored; bytes that do not match cost the peer as an
invalid block does (its address is struck too). A fetch asks the peers best score first,
chunk by chunk (``BLOB_CHUNK``), and moves on to the next peer when one does not have
the blob, goes away, or lies.

Prefetch: after new heads (debounced by ``prefetch_delay_s``, one round at a time) and
when a peer connects, the datasets and checkpoint states of open, funded posted jobs
(``consensus.market``) that this node lacks are fetched, so that a job posted with its
dataset on another node can be mined here. Chain state and the blob store are read on
the read pool, never on the event loop.
"""
from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Callable, Optional

from eth_hash.auto import keccak

from chain.chain import Chain
from consensus.market import funded_jobs, job_blobs
from consensus.params import config_of
from p2p import messages as m
from p2p.config import P2PConfig
from p2p.errors import BlobUnavailable, PeerUnavailable, ProtocolViolation
from p2p.interfaces import ReadPool, SyncStats, call_listeners
from p2p.peer import Peer
from p2p.peerset import PeerSet
from p2p.scoring import PENALTY_BAD_RESPONSE, PENALTY_INVALID_BLOCK
from pouw.blobstore import DEFAULT_MAX_BLOB_BYTES, BlobStore, blob_matches, put_named

log = logging.getLogger("p2p")


class BlobFetcher:
    """Blobs by hash: from our store, else from peers (verified, then stored)."""

    def __init__(self, store: Optional[BlobStore], peers: PeerSet, reads: ReadPool) -> None:
        """``store`` None: fetched blobs are returned, not kept."""
        self.store = store
        self.peers = peers
        self.reads = reads

    async def fetch(self, blob_hash: bytes, *, max_bytes: Optional[int] = None) -> bytes:
        """The blob named ``blob_hash``: from our store, else from peers (chunked, best
        score first), verified against the hash and stored. BlobUnavailable when no peer
        serves it; ``max_bytes`` (default: the store's limit) bounds what a peer may
        announce as its size."""
        store = self.store
        if store is not None:
            local = await self.reads.run(_stored_blob, store, blob_hash)
            if local is not None:
                return local
        limit = max_bytes if max_bytes is not None else store.max_bytes if store is not None else DEFAULT_MAX_BLOB_BYTES
        for peer in self.peers.by_score():
            try:
                data = await self._fetch_from(peer, blob_hash, limit)
            except PeerUnavailable:
                continue
            except ProtocolViolation as exc:
                await peer.violation(exc)
                continue
            if data is None:
                continue
            if store is not None:
                await self.reads.run(put_named, store, blob_hash, data)
            return data
        raise BlobUnavailable(f"no peer served blob {m.hx(blob_hash)}")

    async def _fetch_from(self, peer: Peer, blob_hash: bytes, limit: int) -> Optional[bytes]:
        """The blob from ``peer``, chunk by chunk; None if it does not have it."""
        parts: list[bytes] = []
        offset, size = 0, None
        while size is None or offset < size:
            reply = await peer.request("get_blob", ("blob",), hash=m.hx(blob_hash), offset=offset, length=m.BLOB_CHUNK)
            if reply.body.get("data") is None:
                return None
            got_size = m.field_int(reply.body, "size", high=limit)
            chunk = m.field_bytes(reply.body, "data", max_size=m.BLOB_CHUNK)
            if size is None:
                size = got_size
            if got_size != size or not chunk and offset < size:
                raise ProtocolViolation("inconsistent blob chunks", penalty=PENALTY_BAD_RESPONSE)
            parts.append(chunk)
            offset += len(chunk)
        data = b"".join(parts)
        if not blob_matches(blob_hash, data):
            raise ProtocolViolation("blob does not match its hash", penalty=PENALTY_INVALID_BLOCK,
                                    expected=m.hx(blob_hash), got=m.hx(keccak(data)))
        return data


def _stored_blob(store: BlobStore, blob_hash: bytes) -> Optional[bytes]:
    if not store.has(blob_hash):
        return None
    try:
        return bytes(store.get(blob_hash))
    except Exception:  # noqa: BLE001 - CorruptBlob: fetch a good copy
        return None


class BlobServer:
    """Serves ``get_blob``: a chunk of a blob of ours."""

    def __init__(self, store: Optional[BlobStore], reads: ReadPool) -> None:
        self.store = store
        self.reads = reads
        self._cache: Optional[tuple[bytes, bytes]] = None
        """The last blob served: a chunked fetch reads the same blob again and again."""

    async def serve(self, request_id: int, body: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        blob_hash = m.field_hash(body, "hash")
        offset = m.field_int(body, "offset")
        length = m.field_int(body, "length", low=1, high=m.BLOB_CHUNK)
        data = await self.reads.run(self._chunk, blob_hash, offset, length)
        if data is None:
            return "blob", {"id": request_id, "hash": m.hx(blob_hash), "size": 0, "data": None}
        size, chunk = data
        return "blob", {"id": request_id, "hash": m.hx(blob_hash), "size": size, "data": m.hx(chunk)}

    def _chunk(self, blob_hash: bytes, offset: int, length: int) -> Optional[tuple[int, bytes]]:
        """``(blob size, bytes at offset)``, or None if we do not have the blob."""
        if self.store is None:
            return None
        cached = self._cache
        if cached is not None and cached[0] == blob_hash:
            blob = cached[1]
        else:
            try:
                blob = bytes(self.store.get(blob_hash))
            except Exception:  # noqa: BLE001 - BlobNotFound, CorruptBlob: we do not have it
                return None
            self._cache = (blob_hash, blob)
        return len(blob), blob[offset : offset + length]


class Prefetcher:
    """Rounds of fetching the blobs of open jobs (see the module docstring)."""

    def __init__(
        self, chain: Chain, config: P2PConfig, fetcher: BlobFetcher, reads: ReadPool, stats: SyncStats,
    ) -> None:
        self.chain = chain
        self.config = config
        self.fetcher = fetcher
        self.store = fetcher.store
        self.peers = fetcher.peers
        self.reads = reads
        self.stats = stats
        self._running = False
        self._handle: Optional[asyncio.TimerHandle] = None
        self._task: Optional[asyncio.Task[int]] = None
        self._again = False
        self.failures: dict[bytes, float] = {}
        """Blobs no peer served: hash -> monotonic time before which we do not ask again."""
        self.on_blobs_prefetched: list[Callable[[list[bytes]], None]] = []
        """Called (on the event loop) with the hashes a prefetch round stored, e.g.
        ``Miner.notify_new_head``: a job the miner could not take up may be minable now
        (its lottery is per step, so restarting a round loses nothing)."""

    def start(self) -> None:
        self._running = True

    def cancel(self) -> list["asyncio.Task[int]"]:
        """Start no more rounds; cancel the one running (returned, for the caller to await)."""
        self._running = False
        if self._handle is not None:
            self._handle.cancel()
        tasks = [] if self._task is None else [self._task]
        for task in tasks:
            task.cancel()
        return tasks

    def schedule(self) -> None:
        """Start a round ``prefetch_delay_s`` from now (one round for a burst of heads; a
        head during a round asks for one more round after it)."""
        if not self.config.prefetch or self.store is None or not self._running:
            return
        if self._task is not None and not self._task.done():
            self._again = True
            return
        if self._handle is None:
            loop = asyncio.get_running_loop()
            self._handle = loop.call_later(self.config.prefetch_delay_s, self._start_round)

    def _start_round(self) -> None:
        self._handle = None
        if not self._running:
            return
        self._again = False
        self._task = asyncio.create_task(self.run_round(), name="p2p-prefetch")
        self._task.add_done_callback(self._round_done)

    def _round_done(self, task: "asyncio.Task[int]") -> None:
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            log.warning("blob prefetch failed: %s: %s", type(exc).__name__, exc)
        if self._again and self._running:
            self._again = False
            self.schedule()

    async def run_round(self) -> int:
        """One round: fetch from peers the datasets and checkpoint states of open, funded
        posted jobs (the newest ``prefetch_max_jobs``) that our store lacks, at most
        ``prefetch_max_blobs`` of them. A blob no peer serves is not asked for again for
        ``prefetch_retry_s``. Returns the number fetched."""
        if self.store is None or not self.peers:
            return 0
        self.stats.prefetch_rounds += 1
        now = time.monotonic()
        self.failures = {h: t for h, t in self.failures.items() if t > now}
        try:
            wanted = await self.reads.run(self._wanted_blobs, self.store)
        except RuntimeError:  # read pool shut down: the service is stopping
            return 0
        asked = 0
        stored: list[bytes] = []
        for blob_hash, limit, what in wanted:
            if asked >= self.config.prefetch_max_blobs:
                self._again = True  # more to do: the next round goes on
                break
            if blob_hash in self.failures or not self.peers:
                continue
            asked += 1
            try:
                await self.fetcher.fetch(blob_hash, max_bytes=min(limit, self.store.max_bytes))
            except Exception as exc:  # noqa: BLE001 - BlobUnavailable, BlobTooLarge, ...
                if not self._running:
                    return len(stored)
                self.failures[blob_hash] = time.monotonic() + self.config.prefetch_retry_s
                log.info("prefetch: %s %s: %s (not asked again for %.0f s)",
                         what, m.hx(blob_hash), exc, self.config.prefetch_retry_s)
                continue
            stored.append(blob_hash)
            self.stats.blobs_prefetched += 1
            log.info("prefetched %s %s from peers", what, m.hx(blob_hash))
        if stored:
            call_listeners(self.on_blobs_prefetched, stored, "on_blobs_prefetched")
        return len(stored)

    def _wanted_blobs(self, store: BlobStore) -> list[tuple[bytes, int, str]]:
        """(hash, size limit, description) of the blobs open jobs need and ``store``
        lacks, at the head state, newest jobs first."""
        config = config_of(self.chain.engine_class, int(self.chain.genesis.chain_id))
        limits = config.limits
        wanted: list[tuple[bytes, int, str]] = []
        seen: set[bytes] = set()
        for job in funded_jobs(self.chain.state_at(), config, newest=self.config.prefetch_max_jobs):
            for blob_hash, kind in job_blobs(job):  # the blobs a miner of the job needs
                if blob_hash in seen or blob_hash in self.failures:
                    continue
                seen.add(blob_hash)
                if not store.has(blob_hash):
                    limit = limits.max_dataset_bytes if kind == "dataset" else limits.max_state_bytes
                    wanted.append((blob_hash, limit, f"{kind} of job {job.job_id}"))
        return wanted
