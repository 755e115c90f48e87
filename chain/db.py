"""LevelDB storage for py-evm, with one write batch per block import.

py-evm 0.12 no longer ships a LevelDB backend, so this module provides one on plyvel
that implements py-evm's :class:`eth.abc.AtomicDatabaseAPI` (bytes keys to bytes
values, plus ``atomic_batch()``). Every key the node writes is named in
:mod:`chain.schema`; this module only stores bytes.

Two kinds of batch
------------------
``LevelDB.atomic_batch()``
    py-evm's contract: a readable write batch (reads see its own pending writes and
    deletes) committed on clean exit as ONE plyvel ``write_batch(transaction=True)``,
    discarded if the block raises.

``batch_view(db)`` / ``LevelDB.batch_view()``
    An :class:`AtomicDatabaseAPI` of its own whose writes, including those of the
    many nested ``atomic_batch()`` calls py-evm makes while importing a block
    (``ChainDB.persist_block``, ``AccountDB.persist``, header score updates ...),
    accumulate in memory and reach the database in one batch on ``commit()``. This is
    how the protocol's rule "every block import is one atomic write batch" is kept:
    a crash at any instant leaves either the whole import on disk or none of it.

Intended use by block import::

    db = LevelDB(datadir / "chaindata")
    ...
    with import_lock:                      # one writer at a time (see below)
        with db.batch_view() as view:      # commit on clean exit, discard on raise
            chain = PouwChain(view)        # a fresh chain object bound to the view
            chain.import_block(block)
        # here, and only here, every key of the import is in LevelDB
    head_chain = PouwChain(db)             # rebuild read-side objects after commit

Rules of use, each for a reason:

- Build the py-evm ``Chain``/``ChainDB`` on the view for each import and drop it
  afterwards: py-evm objects cache headers and state roots in memory, so a chain
  object that saw a discarded import would believe in blocks that are not on disk.
- Keep one writer: a view reads through to LevelDB but its commit is a blind
  overwrite of the keys it touched, so two overlapping views (or a view and a direct
  writer) could interleave. The node serialises imports with a lock.
- A view is single use and single threaded; after ``commit()`` or ``discard()`` every
  access raises :class:`BatchClosed`. Readers on other threads read LevelDB directly
  and see the import only once it is committed.

Datadir safety: opening takes an exclusive ``flock`` on ``<path>/pouw.lock`` before
plyvel opens the database, so a second process (or a second ``LevelDB`` in the same
process) gets :class:`DatadirLocked` naming the path instead of plyvel's terse
``IO error: lock ... already held``. The lock file is not LevelDB's own ``LOCK``:
LevelDB holds that one with a POSIX ``fcntl`` lock, which the kernel drops when ANY
descriptor of that file in the process is closed, so sharing the name would let our
``close()`` silently release LevelDB's lock.
"""
from __future__ import annotations

import errno
import fcntl
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, Optional, Tuple, Union

import plyvel
from eth.abc import AtomicDatabaseAPI, AtomicWriteBatchAPI, DatabaseAPI
from eth.db.backends.base import BaseAtomicDB, BaseDB
from eth.db.diff import DBDiff, DBDiffTracker, DiffMissingError

from chain import schema
from chain.errors import ChainError

__all__ = [
    "LOCK_FILENAME",
    "BatchClosed",
    "BatchView",
    "DatabaseClosed",
    "DatabaseCorrupt",
    "DatabaseError",
    "DatadirLocked",
    "DatadirMissing",
    "LevelDB",
    "ReadableWriteBatch",
    "batch_view",
]

#: Our own lock file inside the LevelDB directory (not LevelDB's ``LOCK``; see above).
LOCK_FILENAME = "pouw.lock"

#: Blob values (``chain.schema.blob`` keys) longer than this are stored in pieces of
#: PIECE_BYTES: LevelDB keeps a value whole in one block, so a 60 MiB dataset would cost
#: 60 MiB buffers in the memtable, the table builder and every compaction that moves it
#: (six uploads took a node to 1.7 GB). Readers see the whole value, as before.
LARGE_VALUE_BYTES = 4 * 1024 * 1024
PIECE_BYTES = 1024 * 1024
PIECE_BATCH_BYTES = 8 * 1024 * 1024


def _piecewise(key: bytes) -> bool:
    return key.startswith(schema.BLOB_PREFIX)


# --------------------------------------------------------------------------- errors


class DatabaseError(ChainError):
    """Root of storage errors: the database cannot be opened, read or written."""

    def __init__(self, message: str, *, path: Optional[Path] = None) -> None:
        self.path = path
        super().__init__(message)


class DatadirLocked(DatabaseError):
    """Another process (or another handle in this one) has the datadir open."""


class DatadirMissing(DatabaseError):
    """The directory, or the database inside it, does not exist and create=False."""


class DatabaseCorrupt(DatabaseError):
    """LevelDB reports corruption (bad CURRENT/MANIFEST, checksum mismatch ...)."""


class DatabaseClosed(DatabaseError):
    """The database was used after ``close()``."""


class BatchClosed(DatabaseError):
    """A write batch or batch view was used after it was committed or discarded."""


# ----------------------------------------------------------------- readable batches


class ReadableWriteBatch(BaseDB, AtomicWriteBatchAPI):
    """Pending writes over a read target; reads see pending writes and deletes.

    The same class serves ``LevelDB.atomic_batch()`` (commit = one plyvel batch) and the
    nested ``atomic_batch()`` of a :class:`BatchView` (commit = merge into the view), so
    both have py-evm's semantics: ``del`` of an absent key raises ``KeyError``, and
    after the context ends the batch refuses all use.
    """

    def __init__(self, read_target: DatabaseAPI) -> None:
        self._read_target: Optional[DatabaseAPI] = read_target
        self._track_diff: Optional[DBDiffTracker] = DBDiffTracker()

    def _tracker(self) -> Tuple[DBDiffTracker, DatabaseAPI]:
        if self._track_diff is None or self._read_target is None:
            raise BatchClosed("write batch used outside its atomic_batch() context")
        return self._track_diff, self._read_target

    def __getitem__(self, key: bytes) -> bytes:
        tracker, target = self._tracker()
        try:
            return tracker[key]
        except DiffMissingError as missing:
            if missing.is_deleted:
                raise KeyError(key) from None
            return target[key]

    def __setitem__(self, key: bytes, value: bytes) -> None:
        tracker, _ = self._tracker()
        tracker[key] = value

    def __delitem__(self, key: bytes) -> None:
        tracker, _ = self._tracker()
        if not self._exists(key):
            raise KeyError(key)
        del tracker[key]

    def _exists(self, key: bytes) -> bool:
        try:
            self[key]
        except KeyError:
            return False
        return True

    def diff(self) -> DBDiff:
        """The pending changes (writes and deletes) as py-evm's :class:`DBDiff`."""
        tracker, _ = self._tracker()
        return tracker.diff()

    def pending_count(self) -> int:
        """How many keys this batch would write or delete."""
        tracker, _ = self._tracker()
        return len(tracker)

    def _close(self) -> None:
        self._track_diff = None
        self._read_target = None


@contextmanager
def _commit_unless_raises(
    read_target: DatabaseAPI, commit: Callable[[DBDiff], None]
) -> Iterator[ReadableWriteBatch]:
    """Yield a readable batch; on clean exit hand its diff to ``commit``, else drop it."""
    batch = ReadableWriteBatch(read_target)
    try:
        yield batch
        commit(batch.diff())
    finally:
        batch._close()


# ------------------------------------------------------------------------ LevelDB


class LevelDB(BaseAtomicDB):
    """py-evm database on a LevelDB directory (plyvel), exclusive to one process.

    ``create``: make the directory and database if absent; otherwise a missing one is
    :class:`DatadirMissing`. ``sync``: default for whether a committed batch is fsynced
    before returning (off: a process crash loses nothing, a power cut may lose the
    last batches but never splits one).
    """

    def __init__(
        self,
        path: Union[str, os.PathLike[str]],
        *,
        create: bool = True,
        max_open_files: Optional[int] = None,
        sync: bool = False,
    ) -> None:
        self.path = Path(path)
        self.sync = sync
        self._db: Optional[plyvel.DB] = None
        self._lock_fd: Optional[int] = None
        if not self.path.exists():
            if not create:
                raise DatadirMissing(f"database directory {self.path} does not exist", path=self.path)
            self.path.mkdir(parents=True, exist_ok=True)
        if not self.path.is_dir():
            raise DatabaseError(f"database path {self.path} is not a directory", path=self.path)
        self._lock_fd = _lock_datadir(self.path)
        try:
            self._db = _open_plyvel(self.path, create=create, max_open_files=max_open_files)
        except BaseException:
            self._release_lock()
            raise

    # -- the DatabaseAPI contract

    def __getitem__(self, key: bytes) -> bytes:
        value: Optional[bytes] = self._handle().get(key)
        if value is None:
            head = self._pieces_head(key)
            if head is None:
                raise KeyError(key)
            return self._read_pieces(key, head)
        return value

    def __setitem__(self, key: bytes, value: bytes) -> None:
        if len(value) > LARGE_VALUE_BYTES and _piecewise(key):
            self._write_pieces(key, value)
            return
        db = self._handle()
        db.put(key, value, sync=self.sync)
        if _piecewise(key) and db.get(schema.pieces_head(key)) is not None:
            self._delete_pieces(key)

    def __delitem__(self, key: bytes) -> None:
        # LevelDB deletes are blind; MutableMapping (and py-evm's MemoryDB) raise on an
        # absent key, so check first to behave the same on every backend.
        db = self._handle()
        if db.get(key) is not None:
            db.delete(key, sync=self.sync)
        elif self._pieces_head(key) is not None:
            self._delete_pieces(key)
        else:
            raise KeyError(key)

    def _exists(self, key: bytes) -> bool:
        return self._handle().get(key) is not None or self._pieces_head(key) is not None

    # -- large blobs, stored in pieces

    def _pieces_head(self, key: bytes) -> Optional[tuple[int, int]]:
        """(total length, piece count) of a value stored in pieces, or None."""
        if not _piecewise(key):
            return None
        head = self._handle().get(schema.pieces_head(key))
        if head is None:
            return None
        return int.from_bytes(head[:8], "big"), int.from_bytes(head[8:12], "big")

    def _write_pieces(self, key: bytes, value: bytes) -> None:
        """Pieces first, in batches of a few MiB, then the head that makes them visible
        (a crash in between leaves only unreferenced pieces, rewritten by a retry)."""
        db = self._handle()
        view = memoryview(value)
        count = (len(value) + PIECE_BYTES - 1) // PIECE_BYTES
        per_batch = max(1, PIECE_BATCH_BYTES // PIECE_BYTES)
        for first in range(0, count, per_batch):
            with db.write_batch(sync=self.sync) as wb:
                for i in range(first, min(count, first + per_batch)):
                    wb.put(schema.piece(key, i), bytes(view[i * PIECE_BYTES : (i + 1) * PIECE_BYTES]))
        with db.write_batch(transaction=True, sync=self.sync) as wb:
            wb.put(schema.pieces_head(key), len(value).to_bytes(8, "big") + count.to_bytes(4, "big"))
            wb.delete(key)

    def _read_pieces(self, key: bytes, head: tuple[int, int]) -> bytes:
        total, count = head
        db = self._handle()
        pieces = [db.get(schema.piece(key, i)) for i in range(count)]
        if any(piece is None for piece in pieces) or sum(len(p) for p in pieces if p is not None) != total:
            raise DatabaseCorrupt(f"value of {key!r} stored in pieces is incomplete", path=self.path)
        return b"".join(pieces)

    def _delete_pieces(self, key: bytes) -> None:
        head = self._pieces_head(key)
        db = self._handle()
        with db.write_batch(transaction=True, sync=self.sync) as wb:
            wb.delete(schema.pieces_head(key))
            for i in range(head[1] if head is not None else 0):
                wb.delete(schema.piece(key, i))

    @contextmanager
    def atomic_batch(self, *, sync: Optional[bool] = None) -> Iterator[AtomicWriteBatchAPI]:
        """py-evm's atomic batch, committed as ONE LevelDB write batch on clean exit."""
        self._handle()
        with _commit_unless_raises(self, lambda diff: self.write_diff(diff, sync=sync)) as batch:
            yield batch

    # -- our additions

    def batch_view(self) -> "BatchView":
        """A view whose writes accumulate until ``commit()``; see the module docstring."""
        return BatchView(self)

    def write_diff(self, diff: DBDiff, *, sync: Optional[bool] = None) -> None:
        """Apply a py-evm :class:`DBDiff` (writes and deletes) as one LevelDB batch."""
        db = self._handle()
        with db.write_batch(transaction=True, sync=self.sync if sync is None else sync) as wb:
            for key, value in diff.pending_items():
                wb.put(key, value)
            for key in diff.deleted_keys():
                wb.delete(key)

    def iterate(self, prefix: bytes = b"") -> Iterator[Tuple[bytes, bytes]]:
        """(key, value) pairs whose key starts with ``prefix``, in key order.

        LevelDB iterators read an implicit snapshot, so an export sees one consistent
        state even while imports continue.
        """
        db = self._handle()
        with db.iterator(prefix=prefix) as it:
            for key, value in it:
                yield key, value

    def flush(self) -> None:
        """Make every earlier write durable now (an empty synced batch fsyncs the log),
        for writers that use ``sync=False`` and reach a point they must not lose."""
        with self._handle().write_batch(sync=True):
            pass

    @property
    def closed(self) -> bool:
        return self._db is None

    def close(self) -> None:
        """Close LevelDB (its log is already on disk) and release the datadir lock."""
        if self._db is not None:
            self._db.close()
            self._db = None
        self._release_lock()

    def __enter__(self) -> "LevelDB":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"LevelDB({str(self.path)!r}{', closed' if self.closed else ''})"

    def _handle(self) -> plyvel.DB:
        if self._db is None:
            raise DatabaseClosed(f"database {self.path} is closed", path=self.path)
        return self._db

    def _release_lock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing the descriptor releases the flock
            self._lock_fd = None


def _lock_datadir(path: Path) -> int:
    lock_path = path / LOCK_FILENAME
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise DatadirLocked(
                f"datadir {path} is in use by another process (lock {lock_path})", path=path
            ) from exc
        raise DatabaseError(f"cannot lock datadir {path}: {exc}", path=path) from exc
    # The pid is for a human looking at a stuck datadir; the flock is what counts.
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


def _open_plyvel(path: Path, *, create: bool, max_open_files: Optional[int]) -> plyvel.DB:
    kwargs = {} if max_open_files is None else {"max_open_files": max_open_files}
    try:
        return plyvel.DB(str(path), create_if_missing=create, **kwargs)
    except plyvel.CorruptionError as exc:
        raise DatabaseCorrupt(f"database {path} is corrupt: {_msg(exc)}", path=path) from exc
    except plyvel.IOError as exc:
        if "lock" in _msg(exc).lower():
            raise DatadirLocked(f"datadir {path} is in use: {_msg(exc)}", path=path) from exc
        raise DatabaseError(f"cannot open database {path}: {_msg(exc)}", path=path) from exc
    except plyvel.Error as exc:
        if "does not exist" in _msg(exc):
            raise DatadirMissing(f"no database in {path} (create=False)", path=path) from exc
        raise DatabaseError(f"cannot open database {path}: {_msg(exc)}", path=path) from exc


def _msg(exc: BaseException) -> str:
    arg = exc.args[0] if exc.args else ""
    return arg.decode(errors="replace") if isinstance(arg, bytes) else str(arg)


# --------------------------------------------------------------------- batch view


class BatchView(BaseAtomicDB):
    """An ``AtomicDatabaseAPI`` whose writes accumulate until one ``commit()``.

    Reads see the view's own pending writes and deletes, then fall through to the
    target. Nested ``atomic_batch()`` contexts (py-evm opens several per block) merge
    into the view on clean exit and are dropped on exception, exactly as they would
    on the target. ``commit()`` writes everything as one batch of the target: one
    plyvel transaction for :class:`LevelDB`, the target's own ``atomic_batch()``
    otherwise (so tests can run the same code on py-evm's ``AtomicDB``).
    """

    def __init__(self, target: AtomicDatabaseAPI) -> None:
        self._target: Optional[AtomicDatabaseAPI] = target
        self._batch: Optional[ReadableWriteBatch] = ReadableWriteBatch(target)

    def _pending(self) -> ReadableWriteBatch:
        if self._batch is None:
            raise BatchClosed("batch view used after commit() or discard()")
        return self._batch

    def __getitem__(self, key: bytes) -> bytes:
        return self._pending()[key]

    def __setitem__(self, key: bytes, value: bytes) -> None:
        self._pending()[key] = value

    def __delitem__(self, key: bytes) -> None:
        del self._pending()[key]

    def _exists(self, key: bytes) -> bool:
        return self._pending()._exists(key)

    @contextmanager
    def atomic_batch(self) -> Iterator[AtomicWriteBatchAPI]:
        pending = self._pending()
        with _commit_unless_raises(pending, lambda diff: diff.apply_to(pending)) as batch:
            yield batch

    def pending_count(self) -> int:
        """How many keys the commit would write or delete."""
        return self._pending().pending_count()

    def diff(self) -> DBDiff:
        return self._pending().diff()

    @property
    def closed(self) -> bool:
        return self._batch is None

    def commit(self, *, sync: Optional[bool] = None) -> None:
        """Write every pending change to the target as one batch, then close the view."""
        diff = self.diff()
        target = self._target
        assert target is not None
        if isinstance(target, LevelDB):
            target.write_diff(diff, sync=sync)
        else:
            with target.atomic_batch() as batch:
                diff.apply_to(batch, apply_deletes=True)
        self._close()

    def discard(self) -> None:
        """Drop every pending change; nothing reaches the target."""
        self._close()

    def _close(self) -> None:
        if self._batch is not None:
            self._batch._close()
        self._batch = None
        self._target = None

    def __enter__(self) -> "BatchView":
        self._pending()
        return self

    def __exit__(self, exc_type: Optional[type], exc: Optional[BaseException], tb: object) -> None:
        if self.closed:
            return
        if exc_type is None:
            self.commit()
        else:
            self.discard()


def batch_view(db: AtomicDatabaseAPI) -> BatchView:
    """A :class:`BatchView` over any atomic database (LevelDB in the node, AtomicDB in tests)."""
    if isinstance(db, LevelDB):
        return db.batch_view()
    return BatchView(db)
