"""pouw.blobstore: one suite, every implementation."""
from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from pouw.blobstore import BlobStore, BlobTooLarge, CorruptBlob, DirectoryBlobStore, MemoryBlobStore
from pouw.errors import BlobNotFound
from pouw.prng import keccak256

Factory = Callable[[int], BlobStore]


@pytest.fixture(params=["memory", "directory"])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Factory:
    if request.param == "memory":
        return lambda limit: MemoryBlobStore(max_bytes=limit)
    return lambda limit: DirectoryBlobStore(tmp_path / "blobs", max_bytes=limit)


def test_put_get_has(make_store: Factory) -> None:
    store = make_store(1024)
    assert isinstance(store, BlobStore)
    h = store.put(b"hello")
    assert h == keccak256(b"hello")
    assert store.has(h)
    assert store.get(h) == b"hello"


def test_put_is_idempotent(make_store: Factory) -> None:
    store = make_store(1024)
    assert store.put(b"x") == store.put(b"x")
    assert store.get(keccak256(b"x")) == b"x"


def test_empty_blob(make_store: Factory) -> None:
    store = make_store(1024)
    assert store.get(store.put(b"")) == b""


def test_invalid_missing_blob(make_store: Factory) -> None:
    store = make_store(1024)
    assert not store.has(b"\x00" * 32)
    with pytest.raises(BlobNotFound):
        store.get(b"\x00" * 32)


def test_invalid_oversize(make_store: Factory) -> None:
    store = make_store(8)
    store.put(b"12345678")
    with pytest.raises(BlobTooLarge):
        store.put(b"123456789")
    assert not store.has(keccak256(b"123456789"))


def test_invalid_hash_argument(make_store: Factory) -> None:
    store = make_store(8)
    with pytest.raises(ValueError):
        store.get(b"\x00" * 31)


def test_directory_detects_corruption(tmp_path: Path) -> None:
    store = DirectoryBlobStore(tmp_path)
    h = store.put(b"payload")
    (tmp_path / h.hex()).write_bytes(b"tampered")
    with pytest.raises(CorruptBlob):
        store.get(h)


def test_directory_persists_and_leaves_no_temp_files(tmp_path: Path) -> None:
    h = DirectoryBlobStore(tmp_path).put(b"kept")
    assert DirectoryBlobStore(tmp_path).get(h) == b"kept"
    assert sorted(os.listdir(tmp_path)) == [h.hex()]
