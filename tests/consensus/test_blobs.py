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


def test_verified_dataset_cache_is_bounded_in_bytes_lru() -> None:
    """The validator's decoded datasets: least recently used evicted past the byte bound;
    one larger than the bound is not kept (a validator used to keep every dataset it ever
    verified, in a process-wide dict)."""
    import torch

    from consensus.jobs import DatasetCache, dataset_bytes
    from pouw.datasets import Dataset

    def ds(n: int) -> Dataset:
        return Dataset(torch.zeros(n, 8, dtype=torch.int8), torch.zeros(n, dtype=torch.int64),
                       torch.zeros(2, 8, dtype=torch.int8), torch.zeros(2, dtype=torch.int64), 2)

    one = dataset_bytes(ds(100))
    assert one == 100 * 8 + 100 * 8 + 2 * 8 + 2 * 8
    cache = DatasetCache(max_bytes=3 * one)
    for i in range(3):
        cache.put(bytes([i]) * 32, ds(100))
    assert cache.get(b"\x00" * 32) is not None  # 0 is now the most recently used
    cache.put(b"\x03" * 32, ds(100))
    assert b"\x01" * 32 not in cache and b"\x00" * 32 in cache and len(cache) == 3
    assert cache.bytes == 3 * one
    cache.put(b"\x09" * 32, ds(1000))  # alone over the bound: not kept, nothing evicted
    assert b"\x09" * 32 not in cache and len(cache) == 3
    cache.clear()
    assert len(cache) == 0 and cache.bytes == 0
