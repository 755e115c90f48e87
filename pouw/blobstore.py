"""Content-addressed blob storage for datasets and model states.

A blob's key is its content hash, so a store can never hand back bytes other than the
ones asked for: every implementation checks the hash on write and the directory store
checks it again on read (a disk can rot). Two hashes name blobs: a dataset by
``keccak256(blob)`` (its id in job specs, :meth:`BlobStore.put`), a model state by its
state hash ``BLAKE3-256(blob)`` (the checkpoints the chain records, :meth:`BlobStore.put_state`).
A blob matches a key when either hash of it equals the key (:func:`blob_matches`); both
are collision resistant, so no blob can answer for another's key. The node backs the same
protocol with LevelDB; tests run one suite against every implementation.
"""
from __future__ import annotations

import os
import tempfile
import threading
from pathlib import Path
from typing import Callable, Final, Protocol, runtime_checkable

import blake3

from pouw.errors import BlobNotFound, PouwError
from pouw.prng import keccak256

__all__ = [
    "BlobStore",
    "BlobTooLarge",
    "CorruptBlob",
    "DEFAULT_MAX_BLOB_BYTES",
    "MemoryBlobStore",
    "DirectoryBlobStore",
    "state_blob_hash",
    "blob_matches",
    "put_named",
]

DEFAULT_MAX_BLOB_BYTES: Final = 256 * 1024 * 1024


class BlobTooLarge(PouwError):
    """A blob is over the store's size limit."""


class CorruptBlob(PouwError):
    """Stored bytes no longer match their hash (disk corruption or tampering)."""


def state_blob_hash(data: bytes) -> bytes:
    """The state hash of serialised state bytes: ``BLAKE3-256(data)`` (= pouw.state.state_hash)."""
    return blake3.blake3(bytes(data)).digest()


def blob_matches(blob_hash: bytes, data: bytes) -> bool:
    """Whether ``data`` is the blob named ``blob_hash``: its state hash or its keccak256."""
    return state_blob_hash(data) == bytes(blob_hash) or keccak256(bytes(data)) == bytes(blob_hash)


def put_named(store: "BlobStore", blob_hash: bytes, data: bytes) -> bytes:
    """Store ``data`` fetched under the name ``blob_hash`` with the matching kind (a state
    or a dataset); ValueError if it matches neither."""
    if state_blob_hash(data) == bytes(blob_hash):
        return store.put_state(data)
    if keccak256(bytes(data)) == bytes(blob_hash):
        return store.put(data)
    raise ValueError("blob does not match the hash it was fetched under")


@runtime_checkable
class BlobStore(Protocol):
    """Bytes keyed by their content hash (keccak256 for datasets, the state hash for states)."""

    max_bytes: int

    def put(self, data: bytes) -> bytes:
        """Store a dataset; return its 32-byte keccak256. Idempotent. :class:`BlobTooLarge` over the limit."""
        ...

    def put_state(self, data: bytes) -> bytes:
        """Store serialised model state bytes; return their state hash. Idempotent."""
        ...

    def get(self, blob_hash: bytes) -> bytes:
        """The blob whose hash is ``blob_hash``; :class:`BlobNotFound` if absent."""
        ...

    def has(self, blob_hash: bytes) -> bool:
        """Whether the blob is stored."""
        ...


def _check_hash(blob_hash: bytes) -> bytes:
    if not isinstance(blob_hash, (bytes, bytearray)) or len(blob_hash) != 32:
        raise ValueError(f"blob hash must be 32 bytes, got {blob_hash!r}")
    return bytes(blob_hash)


def _check_size(data: bytes, max_bytes: int) -> None:
    if len(data) > max_bytes:
        raise BlobTooLarge("blob too large", expected=f"<= {max_bytes} bytes", got=len(data))


class MemoryBlobStore:
    """A dict-backed store, for tests and light nodes."""

    def __init__(self, max_bytes: int = DEFAULT_MAX_BLOB_BYTES) -> None:
        self.max_bytes = max_bytes
        self._blobs: dict[bytes, bytes] = {}
        self._lock = threading.Lock()

    def put(self, data: bytes) -> bytes:
        return self._put(bytes(data), keccak256)

    def put_state(self, data: bytes) -> bytes:
        return self._put(bytes(data), state_blob_hash)

    def _put(self, data: bytes, hash_fn: "Callable[[bytes], bytes]") -> bytes:
        _check_size(data, self.max_bytes)
        h = hash_fn(data)
        with self._lock:
            self._blobs.setdefault(h, data)
        return h

    def get(self, blob_hash: bytes) -> bytes:
        h = _check_hash(blob_hash)
        with self._lock:
            data = self._blobs.get(h)
        if data is None:
            raise BlobNotFound("no such blob", expected=h)
        return data

    def has(self, blob_hash: bytes) -> bool:
        return _check_hash(blob_hash) in self._blobs

    def __len__(self) -> int:
        return len(self._blobs)


class DirectoryBlobStore:
    """One file per blob, named by the hash's hex, under ``root``.

    Writes go to a temporary file in the same directory, are flushed and fsynced, then
    renamed into place (atomic on POSIX), so a crash never leaves a partial blob under
    a valid name. Reads re-hash the file and raise :class:`CorruptBlob` on mismatch.
    """

    def __init__(self, root: str | os.PathLike[str], max_bytes: int = DEFAULT_MAX_BLOB_BYTES) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes

    def _path(self, h: bytes) -> Path:
        return self.root / h.hex()

    def put(self, data: bytes) -> bytes:
        return self._put(bytes(data), keccak256)

    def put_state(self, data: bytes) -> bytes:
        return self._put(bytes(data), state_blob_hash)

    def _put(self, data: bytes, hash_fn: "Callable[[bytes], bytes]") -> bytes:
        _check_size(data, self.max_bytes)
        h = hash_fn(data)
        path = self._path(h)
        if path.exists():
            return h
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".tmp-", suffix=".part")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            raise
        return h

    def get(self, blob_hash: bytes) -> bytes:
        h = _check_hash(blob_hash)
        path = self._path(h)
        try:
            size = path.stat().st_size
            if size > self.max_bytes:
                raise CorruptBlob("stored blob over the size limit", expected=f"<= {self.max_bytes}", got=size)
            data = path.read_bytes()
        except FileNotFoundError:
            raise BlobNotFound("no such blob", expected=h) from None
        if not blob_matches(h, data):
            raise CorruptBlob("stored blob does not match its hash", expected=h, got=keccak256(data))
        return data

    def has(self, blob_hash: bytes) -> bool:
        return self._path(_check_hash(blob_hash)).is_file()
