"""The LevelDB-backed blob store behaves like pouw's stores (content-addressed, checked)."""
from __future__ import annotations

import pytest
from eth.db.atomic import AtomicDB

from consensus.blobs import LevelDBBlobStore
from pouw.blobstore import BlobTooLarge, CorruptBlob
from pouw.errors import BlobNotFound
from pouw.prng import keccak256


@pytest.fixture(params=["memory", "leveldb"])
def store(request, tmp_path):
    if request.param == "memory":
        yield LevelDBBlobStore(AtomicDB(), max_bytes=1024)
        return
    from chain.db import LevelDB

    db = LevelDB(tmp_path / "db")
    yield LevelDBBlobStore(db, max_bytes=1024)
    db.close()


def test_put_get_has(store) -> None:
    h = store.put(b"state bytes")
    assert h == keccak256(b"state bytes") and store.has(h) and store.get(h) == b"state bytes"
    assert store.put(b"state bytes") == h


def test_invalid_missing_large_and_corrupt(store) -> None:
    from chain import schema

    with pytest.raises(BlobNotFound):
        store.get(b"\x01" * 32)
    with pytest.raises(BlobTooLarge):
        store.put(b"x" * 1025)
    h = store.put(b"good")
    store.db[schema.blob(h)] = b"rotten"
    with pytest.raises(CorruptBlob):
        store.get(h)
