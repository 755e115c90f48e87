"""Storage: one behaviour suite over every backend, then LevelDB's own guarantees.

The key/value and atomic-batch tests run unchanged on py-evm's MemoryDB/AtomicDB, on our
LevelDB and on a BatchView over each, so the node's code cannot depend on a quirk of one.
The import tests drive a real py-evm chain import into a single batch and check that
every key lands only on commit and none on failure.
"""
from __future__ import annotations

import multiprocessing
import os
from pathlib import Path
from typing import Callable, Iterator

import pytest
from eth import constants
from eth.chains.base import MiningChain
from eth.consensus.noproof import NoProofConsensus
from eth.db.atomic import AtomicDB
from eth.db.backends.memory import MemoryDB
from eth.db.chain import ChainDB
from eth.vm.forks.london import LondonVM
from eth_keys import keys
from eth_utils import to_wei

from chain.db import (
    LOCK_FILENAME,
    BatchClosed,
    BatchView,
    DatabaseClosed,
    DatabaseCorrupt,
    DatabaseError,
    DatadirLocked,
    DatadirMissing,
    LevelDB,
    batch_view,
)
from chain.errors import ChainError

# ------------------------------------------------------------------------ backends

Factory = Callable[[Path], object]


def _leveldb(tmp: Path) -> LevelDB:
    return LevelDB(tmp / "db")


BACKENDS: dict[str, Factory] = {
    "memory": lambda tmp: MemoryDB(),
    "atomic": lambda tmp: AtomicDB(),
    "leveldb": _leveldb,
    "view-over-atomic": lambda tmp: BatchView(AtomicDB()),
    "view-over-leveldb": lambda tmp: _leveldb(tmp).batch_view(),
}
ATOMIC_BACKENDS = ["atomic", "leveldb", "view-over-atomic", "view-over-leveldb"]


@pytest.fixture(params=list(BACKENDS))
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[object]:
    instance = BACKENDS[request.param](tmp_path)
    yield instance
    if isinstance(instance, LevelDB):
        instance.close()


@pytest.fixture(params=ATOMIC_BACKENDS)
def atomic_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[object]:
    instance = BACKENDS[request.param](tmp_path)
    yield instance
    if isinstance(instance, LevelDB):
        instance.close()


# ------------------------------------------------------------ same on every backend


def test_set_get_exists_delete(db) -> None:
    db[b"k"] = b"v"
    assert db[b"k"] == b"v"
    assert b"k" in db and db.exists(b"k")
    db.set(b"k", b"v2")
    assert db[b"k"] == b"v2"
    del db[b"k"]
    assert b"k" not in db
    with pytest.raises(KeyError):
        db[b"k"]


def test_invalid_delete_of_missing_key_raises_keyerror(db) -> None:
    with pytest.raises(KeyError):
        del db[b"absent"]
    db.delete(b"absent")  # the forgiving variant never raises


def test_empty_value_and_binary_keys(db) -> None:
    db[b"\x00\xff"] = b""
    assert db[b"\x00\xff"] == b""
    assert b"\x00\xff" in db


def test_atomic_batch_reads_its_own_writes_and_deletes(atomic_db) -> None:
    atomic_db[b"old"] = b"1"
    with atomic_db.atomic_batch() as batch:
        batch[b"new"] = b"2"
        del batch[b"old"]
        assert batch[b"new"] == b"2"
        assert b"old" not in batch
        with pytest.raises(KeyError):
            batch[b"old"]
        assert b"new" not in atomic_db and atomic_db[b"old"] == b"1"  # not yet visible
    assert atomic_db[b"new"] == b"2"
    assert b"old" not in atomic_db


def test_atomic_batch_discarded_on_exception(atomic_db) -> None:
    atomic_db[b"keep"] = b"1"
    with pytest.raises(RuntimeError):
        with atomic_db.atomic_batch() as batch:
            batch[b"lost"] = b"x"
            del batch[b"keep"]
            raise RuntimeError("boom")
    assert b"lost" not in atomic_db
    assert atomic_db[b"keep"] == b"1"


def test_invalid_use_of_batch_after_context(atomic_db) -> None:
    with atomic_db.atomic_batch() as batch:
        batch[b"a"] = b"1"
    with pytest.raises(Exception):  # py-evm raises its ValidationError, we BatchClosed
        batch[b"a"]


def test_nested_atomic_batches_through_atomicdb_wrapper(atomic_db) -> None:
    """py-evm's ``AtomicDB(batch)`` pattern: inner batches commit into the outer one."""
    with atomic_db.atomic_batch() as outer:
        inner_db = AtomicDB(outer)
        with inner_db.atomic_batch() as inner:
            inner[b"x"] = b"1"
        with pytest.raises(ValueError):
            with inner_db.atomic_batch() as inner:
                inner[b"y"] = b"2"
                raise ValueError
        assert outer[b"x"] == b"1" and b"y" not in outer
        assert b"x" not in atomic_db
    assert atomic_db[b"x"] == b"1" and b"y" not in atomic_db


def test_chaindb_on_every_atomic_backend(atomic_db) -> None:
    chain = _chain_class().from_genesis(atomic_db, _GENESIS_PARAMS, _genesis_state())
    header = chain.get_canonical_head()
    assert ChainDB(atomic_db).get_canonical_head() == header
    assert chain.get_vm().state.get_balance(_SENDER) == to_wei(1000, "ether")


# -------------------------------------------------------------------- LevelDB only


def test_leveldb_persists_across_reopen(tmp_path: Path) -> None:
    with LevelDB(tmp_path / "db") as db:
        db[b"k"] = b"v"
        with db.atomic_batch(sync=True) as batch:
            batch[b"b"] = b"w"
        db.flush()
    with LevelDB(tmp_path / "db", create=False) as db:
        assert db[b"k"] == b"v" and db[b"b"] == b"w"


def test_leveldb_iterate_prefix(tmp_path: Path) -> None:
    with LevelDB(tmp_path / "db") as db:
        for key in (b"a:1", b"a:2", b"b:1", b"a"):
            db[key] = key.upper()
        assert list(db.iterate(b"a:")) == [(b"a:1", b"A:1"), (b"a:2", b"A:2")]
        assert [k for k, _ in db.iterate()] == [b"a", b"a:1", b"a:2", b"b:1"]


def test_leveldb_stores_large_blobs_in_pieces(tmp_path: Path) -> None:
    """A blob value over 4 MiB goes to LevelDB in 1 MiB pieces (a whole 60 MiB value
    costs 60 MiB buffers in the memtable and in every compaction); readers see it whole."""
    from chain import schema
    from chain.db import LARGE_VALUE_BYTES, PIECE_BYTES

    key = schema.blob(b"\x11" * 32)
    value = os.urandom(LARGE_VALUE_BYTES + 3 * PIECE_BYTES + 17)
    db = LevelDB(tmp_path / "db")
    db[key] = value
    assert db[key] == value and key in db
    assert db._handle().get(key) is None  # not one LevelDB value
    pieces = [k for k, _ in db.iterate(schema.PIECES_PREFIX)]
    assert len(pieces) == 1 + 8  # the head and ceil(size / 1 MiB) pieces
    assert [k for k, _ in db.iterate(schema.BLOB_PREFIX)] == []  # blob scans see no pieces
    db.close()
    db = LevelDB(tmp_path / "db")
    assert db[key] == value
    db[key] = b"small"  # overwritten by a small value: the pieces go
    assert db[key] == b"small" and list(db.iterate(schema.PIECES_PREFIX)) == []
    db[key] = value
    del db[key]
    assert key not in db and list(db.iterate(schema.PIECES_PREFIX)) == []
    with pytest.raises(KeyError):
        del db[key]
    other = b"state-node-key-" + b"\x00" * 20  # not a blob: stored whole whatever its size
    db[other] = value
    assert db._handle().get(other) == value
    db.close()


def test_invalid_second_open_in_same_process_is_datadir_locked(tmp_path: Path) -> None:
    with LevelDB(tmp_path / "db"):
        with pytest.raises(DatadirLocked) as info:
            LevelDB(tmp_path / "db")
        assert str(tmp_path / "db") in str(info.value)
    with LevelDB(tmp_path / "db"):  # released on close
        pass


def _try_open(path: str, queue: "multiprocessing.Queue[str]") -> None:
    try:
        LevelDB(path).close()
        queue.put("opened")
    except DatadirLocked as exc:
        queue.put(f"locked: {exc}")


def test_invalid_second_process_is_datadir_locked(tmp_path: Path) -> None:
    path = str(tmp_path / "db")
    with LevelDB(path):
        ctx = multiprocessing.get_context("fork")
        queue: "multiprocessing.Queue[str]" = ctx.Queue()
        proc = ctx.Process(target=_try_open, args=(path, queue))
        proc.start()
        proc.join(30)
        answer = queue.get(timeout=5)
    assert answer.startswith("locked: ") and path in answer


def test_invalid_plyvel_lock_error_becomes_datadir_locked(tmp_path: Path) -> None:
    """Someone bypassing our flock (plyvel directly) still yields the clear error."""
    import plyvel

    raw = plyvel.DB(str(tmp_path / "db"), create_if_missing=True)
    try:
        with pytest.raises(DatadirLocked):
            LevelDB(tmp_path / "db")
    finally:
        raw.close()
    assert (tmp_path / "db" / LOCK_FILENAME).exists()


def test_invalid_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(DatadirMissing) as info:
        LevelDB(tmp_path / "nope", create=False)
    assert "nope" in str(info.value)
    assert isinstance(info.value, ChainError)


def test_invalid_empty_directory_without_create(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatadirMissing):
        LevelDB(tmp_path / "empty", create=False)
    LevelDB(tmp_path / "empty").close()  # the failed open left the lock released


def test_invalid_path_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(DatabaseError):
        LevelDB(tmp_path / "file")


def test_invalid_corrupt_current_file(tmp_path: Path) -> None:
    LevelDB(tmp_path / "db").close()
    (tmp_path / "db" / "CURRENT").write_text("MANIFEST-999999\n")
    with pytest.raises(DatabaseCorrupt) as info:
        LevelDB(tmp_path / "db")
    assert str(tmp_path / "db") in str(info.value)


def test_invalid_corrupt_manifest(tmp_path: Path) -> None:
    with LevelDB(tmp_path / "db") as db:
        db[b"k"] = b"v"
    for name in os.listdir(tmp_path / "db"):
        if name.startswith("MANIFEST"):
            (tmp_path / "db" / name).write_bytes(b"\x01" * 100)
    with pytest.raises(DatabaseCorrupt):
        LevelDB(tmp_path / "db")


def test_invalid_use_after_close(tmp_path: Path) -> None:
    db = LevelDB(tmp_path / "db")
    db.close()
    db.close()  # idempotent
    with pytest.raises(DatabaseClosed):
        db[b"k"]
    with pytest.raises(DatabaseClosed):
        db[b"k"] = b"v"


class _PlyvelSpy:
    """Stands in for the plyvel handle: records write batches, forbids loose writes.

    plyvel's types are immutable, so the spy wraps the handle instead of patching it.
    """

    def __init__(self, real) -> None:
        self.real = real
        self.batches: list[dict] = []

    def write_batch(self, **kwargs):
        self.batches.append(kwargs)
        return self.real.write_batch(**kwargs)

    def put(self, *args, **kwargs):
        raise AssertionError("a batched write must not use a loose put")

    def delete(self, *args, **kwargs):
        raise AssertionError("a batched write must not use a loose delete")

    def __getattr__(self, name: str):
        return getattr(self.real, name)


def test_leveldb_atomic_batch_is_one_plyvel_transaction(tmp_path: Path) -> None:
    with LevelDB(tmp_path / "db") as db:
        db[b"k-old"] = b"x"
        spy = _PlyvelSpy(db._db)
        db._db = spy
        with db.atomic_batch() as batch:
            for i in range(100):
                batch[b"k%d" % i] = b"v"
            del batch[b"k-old"]
        assert spy.batches == [{"transaction": True, "sync": False}]
        assert len(list(db.iterate(b"k"))) == 100
        db._db = spy.real


# --------------------------------------------------------------------- batch views


def test_batch_view_commit_and_discard(tmp_path: Path) -> None:
    with LevelDB(tmp_path / "db") as db:
        db[b"gone"] = b"1"
        view = db.batch_view()
        view[b"a"] = b"1"
        del view[b"gone"]
        assert view.pending_count() == 2
        assert b"a" not in db and b"gone" in db
        view.commit()
        assert db[b"a"] == b"1" and b"gone" not in db
        with pytest.raises(BatchClosed):
            view[b"a"]

        other = db.batch_view()
        other[b"b"] = b"2"
        other.discard()
        assert b"b" not in db


def test_batch_view_context_manager_discards_on_exception(tmp_path: Path) -> None:
    with LevelDB(tmp_path / "db") as db:
        with pytest.raises(KeyError):
            with db.batch_view() as view:
                view[b"a"] = b"1"
                raise KeyError("boom")
        assert b"a" not in db
        with batch_view(db) as view:
            view[b"a"] = b"1"
        assert db[b"a"] == b"1"


# ------------------------------------------------ a real py-evm import in one batch

_SENDER_KEY = keys.PrivateKey(b"\x01" * 32)
_SENDER = _SENDER_KEY.public_key.to_canonical_address()
_RECIPIENT = b"\x22" * 20
_GENESIS_PARAMS = {
    "difficulty": 1,
    "gas_limit": 30_000_000,
    "timestamp": 1_700_000_000,
    "coinbase": constants.ZERO_ADDRESS,
    "extra_data": b"",
    "nonce": b"\x00" * 8,
    "mix_hash": constants.ZERO_HASH32,
}


def _genesis_state() -> dict:
    return {_SENDER: {"balance": to_wei(1000, "ether"), "nonce": 0, "code": b"", "storage": {}}}


def _chain_class() -> type:
    vm = LondonVM.configure(consensus_class=NoProofConsensus)
    return MiningChain.configure(__name__="TestChain", vm_configuration=((0, vm),), chain_id=1337)


def _mined_block():
    """A block with two value transfers, mined on an in-memory chain."""
    chain = _chain_class().from_genesis(AtomicDB(), _GENESIS_PARAMS, _genesis_state())
    vm = chain.get_vm()
    for nonce in range(2):
        tx = vm.create_unsigned_transaction(
            nonce=nonce, gas_price=10**9, gas=21000, to=_RECIPIENT, value=1000 + nonce, data=b""
        ).as_signed_transaction(_SENDER_KEY, chain_id=1337)
        chain.apply_transaction(tx)
    return chain.mine_block(timestamp=1_700_000_013)


def _keys(db: LevelDB) -> set[bytes]:
    return {k for k, _ in db.iterate()}


def test_whole_chain_import_lands_in_one_batch_only_on_commit(tmp_path: Path) -> None:
    block = _mined_block()
    with LevelDB(tmp_path / "db") as db:
        _chain_class().from_genesis(db, _GENESIS_PARAMS, _genesis_state())
        before = _keys(db)

        spy = _PlyvelSpy(db._db)
        db._db = spy
        with db.batch_view() as view:
            chain = _chain_class()(view)
            chain.import_block(block)
            assert view.pending_count() > 0
            assert _keys(db) == before  # nothing on disk while the import is pending
            # the view itself already answers like the imported chain
            assert chain.get_canonical_head() == block.header
        assert len(spy.batches) == 1  # every key of the import in one plyvel batch
        db._db = spy.real

        new_keys = _keys(db) - before
        assert block.header.hash in new_keys
        head = _chain_class()(db).get_canonical_head()
        assert head == block.header
        state = _chain_class()(db).get_vm().state
        assert state.get_balance(_RECIPIENT) == 1000 + 1001
        assert ChainDB(db).get_transaction_index(block.transactions[1].hash) == (1, 1)


def test_invalid_failed_import_leaves_no_key(tmp_path: Path) -> None:
    block = _mined_block()
    with LevelDB(tmp_path / "db") as db:
        _chain_class().from_genesis(db, _GENESIS_PARAMS, _genesis_state())
        genesis = _chain_class()(db).get_canonical_head()
        before = {k: v for k, v in db.iterate()}
        with pytest.raises(RuntimeError):
            with db.batch_view() as view:
                _chain_class()(view).import_block(block)
                raise RuntimeError("crash after execution, before commit")
        assert {k: v for k, v in db.iterate()} == before
        assert _chain_class()(db).get_canonical_head() == genesis
        # and the same block imports cleanly afterwards
        with db.batch_view() as view:
            _chain_class()(view).import_block(block)
        assert _chain_class()(db).get_canonical_head() == block.header
