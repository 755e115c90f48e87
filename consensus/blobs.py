"""Content-addressed blobs (checkpoint states, datasets) in the node's LevelDB.

Same protocol as :class:`pouw.blobstore.BlobStore`; keys are ``chain.schema.blob(hash)``.
Blobs are written outside block import's write batch, which is safe because they are
content-addressed: a blob written for a block that is then refused is only garbage.
"""
from __future__ import annotations

from typing import Callable

from eth.abc import DatabaseAPI

from chain import schema

from pouw.blobstore import DEFAULT_MAX_BLOB_BYTES, BlobTooLarge, CorruptBlob, blob_matches, state_blob_hash
from pouw.errors import BlobNotFound
from pouw.prng import keccak256


class LevelDBBlobStore:
    """Blobs in a bytes-to-bytes database (our LevelDB, or py-evm's AtomicDB in tests)."""

    def __init__(self, db: DatabaseAPI, max_bytes: int = DEFAULT_MAX_BLOB_BYTES) -> None:
        self.db = db
        self.max_bytes = max_bytes

    def put(self, data: bytes) -> bytes:
        """Store a dataset under its keccak256."""
        return self._put(bytes(data), keccak256)

    def put_state(self, data: bytes) -> bytes:
        """Store serialised state bytes under their state hash."""
        return self._put(bytes(data), state_blob_hash)

    def _put(self, data: bytes, hash_fn: Callable[[bytes], bytes]) -> bytes:
        if len(data) > self.max_bytes:
            raise BlobTooLarge("blob too large", expected=f"<= {self.max_bytes} bytes", got=len(data))
        h = hash_fn(data)
        key = schema.blob(h)
        if key not in self.db:
            self.db[key] = data
        return h

    def get(self, blob_hash: bytes) -> bytes:
        try:
            data = bytes(self.db[schema.blob(blob_hash)])
        except KeyError:
            raise BlobNotFound("no such blob", expected=bytes(blob_hash)) from None
        if not blob_matches(blob_hash, data):
            raise CorruptBlob("stored blob does not match its hash", expected=bytes(blob_hash), got=keccak256(data))
        return data

    def has(self, blob_hash: bytes) -> bool:
        return schema.blob(blob_hash) in self.db
