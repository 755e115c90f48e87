"""Dataset uploads: streamed to disk, checked and stored one at a time, kept under a quota.

Why: six concurrent 60 MiB ``POST /pouw/datasets`` took a node from 91 MB to 1.74 GB
resident (each body joined in memory, then decoded, then copied into LevelDB, all at
once), and every upload was kept forever. Here:

1. **Receiving** (``receive``): the body is written to a spool file in 1 MiB chunks,
   hashed (keccak256) as it goes, and refused as soon as it passes the chain's
   ``maxDatasetBytes``. At most ``max_concurrent_uploads`` bodies are received at once;
   a further upload waits up to ``upload_wait_s`` for a turn (its body unread, so TCP
   holds the client back), then gets ``503`` with ``Retry-After``.
2. **Storing** (``store_bytes``): one upload at a time (a lock), the file is read, checked
   (``PouwView.check_dataset``: the decoded tensors are released before storing), then
   written to the blob store. Memory holds one dataset, about three copies at the peak.
3. **Quota**: a node keeps at most ``dataset_quota_bytes`` of *unreferenced* uploads. A
   dataset is **referenced** when a job posted on the canonical chain (any status: open,
   completed, cancelled) or a genesis standing job names it: validators syncing from
   genesis need it to recompute that job's blocks, and ``pouw_getJobResult`` evaluates
   the job's model on it, so it is chain data and is never collected. An upload no job
   names yet counts against the quota; when a new upload would pass it, the oldest
   unreferenced uploads older than ``UNREFERENCED_GRACE_S`` (one hour, time to post the
   job) are deleted; if that is not enough, the upload is refused (``507``, or the
   JSON-RPC error), saying how much is held.

Upload records (size, time) live in the database under ``chain.schema.dataset_upload``;
datasets that arrive from peers (prefetch, validation) are never recorded, so never
collected.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import ctypes
import logging
import os
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, AsyncIterator, Callable, Literal, Optional

import rlp

from chain import schema
from rpc.config import RpcConfig
from rpc.errors import RpcLayerError

if TYPE_CHECKING:
    from rpc.pouw_view import DatasetInfo, PouwView

log = logging.getLogger("rpc.uploads")

UNREFERENCED_GRACE_S = 3600.0
"""An upload no job names is kept at least this long (time for its poster to post the job)."""
CHUNK = 1 << 20


class UploadError(RpcLayerError):
    """An upload refused; ``status`` is the HTTP status the upload endpoint answers with."""

    status = 400


class UploadTooLarge(UploadError):
    status = 413


class UploadsBusy(UploadError):
    status = 503


class QuotaExceeded(UploadError):
    status = 507


@dataclass(frozen=True)
class UploadRecord:
    content_hash: bytes
    size: int
    time: float


@dataclass(frozen=True)
class Spooled:
    """A received body on disk, with its size and keccak256."""

    path: Path
    size: int
    content_hash: bytes

    def remove(self) -> None:
        with contextlib.suppress(OSError):
            self.path.unlink()


class DatasetUploads:
    """The node's dataset uploads (HTTP endpoint and ``pouw_putDataset``); thread-safe."""

    def __init__(self, backend: Any, config: RpcConfig, clock: Callable[[], float] = time.time) -> None:
        # a ChainBackend (its pouw view and chain db); create_app hands every app's backend,
        # and only a node that serves the pouw_ namespace reaches the methods that use it
        self.backend = backend
        self.quota = int(config.dataset_quota_bytes)
        self.wait_s = float(config.upload_wait_s)
        self.spool_dir = Path(config.upload_dir) if config.upload_dir else None
        self.clock = clock
        self._slots: Optional[asyncio.Semaphore] = None
        self._max_receiving = max(1, int(config.max_concurrent_uploads))
        self._store_lock = threading.Lock()
        self._records: Optional[dict[bytes, UploadRecord]] = None  # loaded on first use
        # Spool writes (and hashing) on one thread of their own: no other work queues
        # behind them, and their 1 MiB buffers come and go in one heap arena.
        self._writer = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="upload-spool")

    def close(self) -> None:
        """Stop the spool thread (the app stops; an upload in progress was cancelled)."""
        self._writer.shutdown(wait=False, cancel_futures=True)

    # --- receiving (event loop) -------------------------------------------------------

    @contextlib.asynccontextmanager
    async def turn(self) -> AsyncIterator[None]:
        """One of ``max_concurrent_uploads`` receiving slots, or UploadsBusy after waiting."""
        if self._slots is None:
            self._slots = asyncio.Semaphore(self._max_receiving)
        try:
            await asyncio.wait_for(self._slots.acquire(), self.wait_s)
        except asyncio.TimeoutError:
            raise UploadsBusy(
                f"dataset upload refused: {self._max_receiving} uploads are in progress and none finished "
                f"within {self.wait_s:.0f} s; retry later"
            ) from None
        try:
            yield
        finally:
            self._slots.release()

    async def receive(self, chunks: AsyncIterator[bytes], limit: int) -> Spooled:
        """Write a body to a spool file, hashing it; UploadTooLarge past ``limit`` bytes.
        File writes and hashing run off the event loop."""
        from Crypto.Hash import keccak

        loop = asyncio.get_running_loop()
        if self.spool_dir is not None:
            self.spool_dir.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix="upload-", suffix=".part", dir=self.spool_dir)
        path = Path(name)
        digest = keccak.new(digest_bits=256)
        size = 0

        def write(chunk: bytes) -> None:
            _write_all(fd, chunk)
            digest.update(chunk)

        try:
            async for chunk in chunks:
                size += len(chunk)
                if size > limit:
                    raise UploadTooLarge(f"dataset refused: larger than this chain's limit of {limit} bytes")
                await loop.run_in_executor(self._writer, write, chunk)
        except BaseException:
            os.close(fd)
            path.unlink(missing_ok=True)
            raise
        os.close(fd)
        return Spooled(path, size, digest.digest())

    # --- storing (worker threads) -------------------------------------------------------

    def store_file(self, spooled: Spooled) -> DatasetInfo:
        """Check and store a spooled upload (blocking); returns its DatasetInfo. Under the
        store lock from reading the file to handing memory back, so uploads never overlap."""
        with self._store_lock:
            blob = spooled.path.read_bytes()
            if len(blob) != spooled.size:
                raise UploadError("dataset refused: the spooled upload changed on disk")
            try:
                return self._store(blob, spooled.content_hash)
            finally:
                del blob
                self._release_memory()

    def store_bytes(self, blob: bytes, content_hash: Optional[bytes] = None) -> DatasetInfo:
        """Check and store one dataset file under the quota (blocking; one at a time).
        Raises PouwViewError (a bad dataset), QuotaExceeded."""
        with self._store_lock:
            return self._store(blob, content_hash)

    def _store(self, blob: bytes, content_hash: Optional[bytes]) -> DatasetInfo:
        view = self.backend.pouw
        if content_hash is None:
            from pouw.prng import keccak256

            content_hash = keccak256(blob)
        if view.blobs.has(content_hash):
            info = view.dataset_info(content_hash)
            if info is not None:
                return info
        info = view.check_dataset(blob, content_hash)  # decoded tensors are freed on return
        self._make_room(len(blob))
        view.blobs.put(blob)
        self._record(UploadRecord(content_hash, len(blob), self.clock()))
        log.info("dataset 0x%s stored (%d bytes; unreferenced uploads: %d bytes of %d)",
                 content_hash.hex(), len(blob), self.unreferenced_bytes(), self.quota)
        return info

    def _release_memory(self) -> None:
        """After a large upload the C heap gives freed pages back to the system (glibc
        keeps them otherwise, and resident memory would only grow)."""
        _malloc_trim()

    # --- the quota --------------------------------------------------------------------

    def records(self) -> dict[bytes, UploadRecord]:
        if self._records is None:
            self._records = {}
            iterate = getattr(self.backend.chain.db, "iterate", None)
            if iterate is not None:
                for key, value in iterate(schema.UPLOAD_PREFIX):
                    size, stamp = rlp.decode(value)
                    content_hash = bytes(key[len(schema.UPLOAD_PREFIX):])
                    self._records[content_hash] = UploadRecord(
                        content_hash, int.from_bytes(size, "big"), int.from_bytes(stamp, "big") / 1000
                    )
        return self._records

    def unreferenced_bytes(self) -> int:
        """Bytes of recorded uploads (records are dropped once a job names them)."""
        return sum(r.size for r in self.records().values())

    def _record(self, record: UploadRecord) -> None:
        self.records()[record.content_hash] = record
        self.backend.chain.db[schema.dataset_upload(record.content_hash)] = rlp.encode(
            [record.size, int(record.time * 1000)]
        )

    def _forget(self, content_hash: bytes) -> None:
        self.records().pop(content_hash, None)
        with contextlib.suppress(KeyError):
            del self.backend.chain.db[schema.dataset_upload(content_hash)]

    def _make_room(self, size: int) -> None:
        """Collect unreferenced uploads, oldest first, until ``size`` more bytes fit the
        quota; QuotaExceeded if they cannot (too young, or the quota is too small)."""
        if size > self.quota:
            raise QuotaExceeded(
                f"dataset refused: {size} bytes is over this node's dataset quota of {self.quota} bytes"
            )
        if self.unreferenced_bytes() + size <= self.quota:
            return
        for content_hash in referenced_datasets(self.backend.pouw) & set(self.records()):
            self._forget(content_hash)  # chain data now: kept, and no longer counted
        now = self.clock()
        for record in sorted(self.records().values(), key=lambda r: r.time):
            if self.unreferenced_bytes() + size <= self.quota or now - record.time < UNREFERENCED_GRACE_S:
                break
            self._delete(record)
        held = self.unreferenced_bytes()
        if held + size > self.quota:
            raise QuotaExceeded(
                f"dataset refused: this node's quota for uploaded datasets no posted job names is "
                f"{self.quota} bytes and {held} bytes are held (an upload is collected when no job has "
                f"named it for {UNREFERENCED_GRACE_S:.0f} s); post jobs for them, or retry later"
            )

    def _delete(self, record: UploadRecord) -> None:
        view = self.backend.pouw
        with contextlib.suppress(KeyError):
            del self.backend.chain.db[schema.blob(record.content_hash)]
        view.forget_dataset(record.content_hash)
        self._forget(record.content_hash)
        log.info("dataset 0x%s collected: uploaded %.0f s ago, no posted job names it (%d bytes freed)",
                 record.content_hash.hex(), self.clock() - record.time, record.size)


def referenced_datasets(view: PouwView) -> set[bytes]:
    """Datasets named by a job posted on the canonical chain (any status) or by a
    genesis standing job: chain data, never collected."""
    from consensus.registry import posted_job_ids, read_job

    state = view.chain.state_at()
    names = {job.get("dataset") for job in view.chain.genesis.pouw.standing_jobs}
    for job_id in posted_job_ids(state):
        job = read_job(state, job_id, view.config)
        if job is not None and job.spec is not None:
            names.add(job.spec.dataset)
    return {bytes.fromhex(name[2:]) for name in names if isinstance(name, str) and len(name) == 66}


def _malloc_trim() -> None:
    """glibc's malloc_trim(0); nothing elsewhere."""
    global _libc
    if _libc is None:
        try:
            _libc = ctypes.CDLL("libc.so.6")
            _libc.malloc_trim.argtypes = [ctypes.c_size_t]
        except (OSError, AttributeError):
            _libc = False
    if _libc:
        _libc.malloc_trim(0)


_libc: "ctypes.CDLL | Literal[False] | None" = None
"""libc once loaded; False where there is none to load."""


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]
