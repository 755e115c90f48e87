"""The node around a chain: its datadir, its block files, and the running service.

What ``pouw-node`` (``node/cli.py``) does, one function per command, each a list of
steps:

- :func:`init_datadir`: check the genesis, refuse a datadir of another chain, write the
  genesis block and a copy of the genesis file;
- :func:`open_datadir`: the datadir's database (locked) and chain, for every other command;
- :func:`export_blocks` / :func:`import_blocks`: canonical blocks to and from a block file;
- :class:`Node`: the running node: tx pool, JSON-RPC server, automine and the periodic
  dev block producer (``--dev-period``, dev chains only).

Datadir layout::

    DIR/genesis.json     copy of the genesis file the datadir was initialised with
    DIR/chaindata/       LevelDB (chain/db.py): blocks, state, receipts, work payloads;
                         chaindata/pouw.lock is held by the one process using it
    DIR/uploads/         dataset uploads being received (spool files; emptied at start)
    DIR/running.json     while ``run`` serves JSON-RPC: its pid, JSON-RPC URL and p2p port,
                         written once the ports are bound, removed at exit (pouw-devnet
                         checks that the process it started is the one on its ports)

Block files
-----------
A block file is a sequence of entries, each one RLP item, back to back, no header:

- a block without a work payload is the block's RLP, exactly as geth's
  ``export``/``import`` write and read it, so a payload-less chain (every dev chain)
  exports to a file geth's tools can read;
- a block with a work payload is the two-item list ``[block, payload]``. It cannot be
  mistaken for a block: a block's second item is its transaction *list*, while here it
  is a byte string.

Block 0 may be in a file (geth exports it): on import it must be our genesis, and it is
then counted as already known.

Blob files
----------
Verifying a block of a pouw chain reads blobs besides its payload: the job's dataset and
its checkpoint state (``SealEngine.blobs_for_block`` names them, by the hash the chain
uses), and the start state each fraud proof in it names (``SealEngine.transaction_blobs``). ``export`` writes them to ``FILE.blobs`` beside the block file, each once, as RLP
entries ``[hash, data]`` back to back; ``import`` reads an index of that file first and
puts each blob into the node's blob store just before the first block that needs it, so
an export imports on a node with no peers. A block whose blob is in neither place stops
the import with its number and the blob's hash.
"""
from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import random
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterator, Optional

import rlp
from rlp.codec import length_prefix
from eth.db.atomic import AtomicDB
from eth_typing import Address, Hash32
from eth_utils import encode_hex

from chain import schema
from chain.addresses import parse_address
from common.errors import PouwNodeError
from common.rlp_items import item_prefix
from genesis.errors import GenesisError
from chain.txpool import TxPoolLimits
from chain.chain import Chain, decode_block, decode_header
from chain.db import DatadirLocked, LevelDB
from chain.errors import ChainError, InvalidBlock, MalformedBlock, UnknownParent, WrongChain
from chain.sealing import NoProofEngine
from genesis.format import DEFAULT_GENESIS_PATH, GenesisConfig, loads_genesis_json, parse_genesis

log = logging.getLogger("node")

GENESIS_FILENAME = "genesis.json"
CHAINDATA_DIRNAME = "chaindata"
UPLOADS_DIRNAME = "uploads"
RUNNING_FILENAME = "running.json"
DEV_GENESIS_PATH = DEFAULT_GENESIS_PATH.with_name("dev.json")
"""The no-proof development genesis (chain id 1337): ``--genesis dev``."""


# --- Errors ------------------------------------------------------------------------------


class NodeError(PouwNodeError):
    """Root of the errors of this module: each message is fit for a user as is."""


class NotADatadir(NodeError):
    """The directory was never initialised with ``pouw-node init``."""


class ForeignDatadir(NodeError):
    """The datadir holds another chain than the genesis given."""


class DatadirInUse(NodeError):
    """Another process holds the datadir's lock."""


class AutomineRefused(NodeError):
    """Automine was asked for on a chain whose blocks need proof of work."""


class DevAccountsRefused(NodeError):
    """``--dev-accounts`` was asked for on a chain that is not a development chain."""


class DevPeriodRefused(NodeError):
    """``--dev-period`` was asked for on a chain whose blocks need proof of work."""


class BlockFileError(NodeError):
    """A block file cannot be imported. ``offset``: byte offset of the bad entry."""

    def __init__(self, message: str, *, offset: int) -> None:
        self.offset = offset
        super().__init__(message)


class CorruptBlockFile(BlockFileError):
    """The bytes at ``offset`` are not a block file entry (bad RLP, truncated file)."""


class MissingBlob(BlockFileError):
    """A block's verification needs a blob that neither the node nor the blob file holds."""

    def __init__(self, message: str, *, offset: int, number: int, blob_hash: bytes) -> None:
        self.number = number
        self.blob_hash = blob_hash
        super().__init__(message, offset=offset)


class InvalidBlockInFile(BlockFileError):
    """A well-formed block in the file breaks a rule; ``error`` is the chain's verdict."""

    def __init__(self, message: str, *, offset: int, number: Optional[int], error: ChainError) -> None:
        self.number = number
        self.error = error
        super().__init__(message, offset=offset)


# --- Genesis and datadir ------------------------------------------------------------------


@dataclass(frozen=True)
class GenesisSource:
    """A genesis file read once: its text (copied into the datadir) and its config."""

    path: Path
    text: str
    config: GenesisConfig


def read_genesis(spec: Optional[str]) -> GenesisSource:
    """``spec``: a path, ``"dev"`` (genesis/dev.json) or None (genesis/default.json)."""
    path = DEV_GENESIS_PATH if spec == "dev" else DEFAULT_GENESIS_PATH if spec is None else Path(spec)
    text = path.read_text()  # OSError: reported by the CLI with the path
    try:
        raw = loads_genesis_json(text)
    except ValueError as exc:
        raise NodeError(f"{path}: not valid JSON: {exc}") from None
    try:
        config = parse_genesis(raw)
    except GenesisError as exc:
        raise NodeError(f"{path}: {exc}") from None
    return GenesisSource(path, text, config)


def genesis_hash_of(config: GenesisConfig) -> bytes:
    """The hash of the genesis block ``config`` describes (built in memory).

    The genesis block does not depend on the seal engine, so this works for a genesis
    whose engine is not available in this build.
    """
    return bytes(Chain.open(AtomicDB(), config, seal_engine=NoProofEngine).genesis_hash)


@dataclass(frozen=True)
class InitResult:
    chain_id: int
    genesis_hash: bytes
    created: bool
    """False when the datadir already held this chain (init is idempotent)."""


def init_datadir(datadir: Path, genesis: GenesisSource) -> InitResult:
    """Create ``datadir`` for ``genesis``, or check that it already holds that chain.

    Steps: compute the genesis hash; open (create) the database under its lock; refuse a
    database recorded for another genesis; write the genesis block; copy the genesis file.
    """
    expected = genesis_hash_of(genesis.config)
    datadir.mkdir(parents=True, exist_ok=True)
    with _open_db(datadir, create=True) as db:
        meta = schema.read_metadata(db)
        if meta is not None and bytes(meta.genesis_hash) != expected:
            raise ForeignDatadir(
                f"datadir {datadir} belongs to another chain "
                f"(genesis {encode_hex(meta.genesis_hash)} != {encode_hex(expected)})"
            )
        Chain.open(db, genesis.config, seal_engine=NoProofEngine)  # writes genesis + metadata
    _write_atomically(datadir / GENESIS_FILENAME, genesis.text.encode())
    return InitResult(genesis.config.chain_id, expected, created=meta is None)


def _write_atomically(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _open_db(datadir: Path, *, create: bool) -> LevelDB:
    try:
        return LevelDB(datadir / CHAINDATA_DIRNAME, create=create)
    except DatadirLocked:
        raise DatadirInUse(f"datadir {datadir} is in use by another process") from None


def read_datadir_genesis(datadir: Path) -> GenesisConfig:
    """The genesis a datadir was initialised with (its ``genesis.json``)."""
    genesis_file = datadir / GENESIS_FILENAME
    if not genesis_file.is_file() or not (datadir / CHAINDATA_DIRNAME).is_dir():
        raise NotADatadir(f"{datadir} is not a pouw-node datadir (run pouw-node init first)")
    return read_genesis(str(genesis_file)).config


def parse_address_option(text: str, option: str, error: type[Exception] = NodeError) -> bytes:
    """A command-line address (``--coinbase``); ``error`` naming ``option`` if malformed."""
    return parse_address(text, option, error)


def check_automine_allowed(genesis: GenesisConfig, datadir: Path) -> None:
    """Automine builds blocks with no proof: only a no-proof (dev) chain accepts them."""
    _check_dev_only(genesis, datadir, "--automine", AutomineRefused)


def check_dev_period_allowed(genesis: GenesisConfig, datadir: Path) -> None:
    """The dev block producer builds blocks with no proof: only a no-proof chain takes them."""
    _check_dev_only(genesis, datadir, "--dev-period", DevPeriodRefused)


def check_dev_accounts_allowed(genesis: GenesisConfig, datadir: Path) -> None:
    """The dev accounts' keys are public: only a development chain, where nothing holds
    value, may sign with them."""
    _check_dev_only(genesis, datadir, "--dev-accounts", DevAccountsRefused,
                    "whose accounts may hold value: the dev keys are public, sign on the client side")


def _check_dev_only(genesis: GenesisConfig, datadir: Path, option: str, error: type[NodeError],
                    why: str = "whose blocks need proof of work: mine it with --mine --coinbase ADDR") -> None:
    if not genesis.is_dev_only:
        raise error(
            f"{option} needs a development genesis (\"sealEngine\": \"noproof\", e.g. "
            f"pouw-node init --genesis dev); the chain in {datadir} uses \"{genesis.seal_engine}\", {why}"
        )


class OpenDatadir:
    """A datadir's locked database and its chain; close it (or use ``with``) to unlock."""

    def __init__(self, datadir: Path, *, seal_engine: Any = None) -> None:
        """``seal_engine``: None takes the genesis file's; commands that never verify
        work (export) pass NoProofEngine so they work before the consensus milestone."""
        self.path = datadir
        self.genesis = read_datadir_genesis(datadir)
        self.db = _open_db(datadir, create=False)
        try:
            if seal_engine is None:
                from node.engines import engine_for

                seal_engine = engine_for(self.genesis)
            self.chain = Chain.open(self.db, self.genesis, seal_engine=seal_engine)
        except WrongChain as exc:
            self.db.close()
            raise ForeignDatadir(f"{datadir}/{GENESIS_FILENAME} does not match the chain stored in {datadir}: {exc}") from None
        except BaseException:
            self.db.close()
            raise

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> "OpenDatadir":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_datadir(datadir: Path, *, seal_engine: Any = None) -> OpenDatadir:
    """Open an initialised datadir: refuses a missing one, a locked one, another chain."""
    return OpenDatadir(datadir, seal_engine=seal_engine)


# --- Block files ---------------------------------------------------------------------


@dataclass(frozen=True)
class BlockFileEntry:
    offset: int
    """Byte offset of the entry in the file (for error messages)."""
    block_rlp: bytes
    payload: Optional[bytes]


def encode_entry(block_rlp: bytes, payload: Optional[bytes]) -> bytes:
    """One block file entry: the block's RLP, or ``[block, payload]`` with a payload."""
    if payload is None:
        return block_rlp
    body = block_rlp + rlp.encode(payload)
    return length_prefix(len(body), 0xC0) + body


def _split_entry(entry: bytes) -> tuple[bytes, Optional[bytes]]:
    """The block RLP and payload of one entry (``entry``: a whole RLP list item)."""
    _, prefix, length = item_prefix(entry, 0)
    body_end = prefix + length
    first_list, first_prefix, first_len = item_prefix(entry, prefix)
    first_end = prefix + first_prefix + first_len
    if first_end >= body_end or not first_list:
        return entry, None
    second_list, second_prefix, second_len = item_prefix(entry, first_end)
    if second_list or first_end + second_prefix + second_len != body_end:
        return entry, None  # a block: its second item is the transaction list
    payload = rlp.decode(entry[first_end:body_end])
    return entry[prefix:first_end], payload


def read_block_file(f: BinaryIO, *, max_entry_bytes: int, name: str = "") -> Iterator[BlockFileEntry]:
    """Entries of a block file, one at a time (the file is never read whole).

    Raises :class:`CorruptBlockFile` at the first entry that is not an RLP list, is
    larger than ``max_entry_bytes`` or is cut short by the end of the file; its message
    starts with ``name`` (the file's name) if given.
    """

    def corrupt(offset: int, reason: str) -> CorruptBlockFile:
        where = f"{name}: " if name else ""
        return CorruptBlockFile(f"{where}corrupt block at offset {offset}: {reason}", offset=offset)

    offset = 0
    while True:
        head = f.read(1)
        if not head:
            return
        b = head[0]
        if b < 0xC0:
            raise corrupt(offset, f"expected an RLP list, got byte 0x{b:02x}")
        if b >= 0xF8:
            head += f.read(b - 0xF7)
        try:
            _, prefix, length = item_prefix(head, 0)
        except ValueError as exc:
            raise corrupt(offset, str(exc)) from None
        if length > max_entry_bytes:
            raise corrupt(offset, f"entry of {length} bytes exceeds the limit of {max_entry_bytes}")
        body = f.read(length)
        if len(body) < length:
            raise corrupt(offset, f"truncated (file ends {len(body)} bytes into a {length}-byte entry)")
        entry = head + body
        try:
            block_rlp, payload = _split_entry(entry)
        except (ValueError, rlp.DecodingError) as exc:
            raise corrupt(offset, str(exc)) from None
        yield BlockFileEntry(offset, block_rlp, payload)
        offset += len(entry)


@dataclass
class ImportStats:
    imported: int = 0
    known: int = 0
    transactions: int = 0
    seconds: float = 0.0
    head_number: int = 0
    head_hash: bytes = b""

    @property
    def blocks_per_second(self) -> float:
        return self.imported / self.seconds if self.seconds > 0 else 0.0

    @property
    def txs_per_second(self) -> float:
        return self.transactions / self.seconds if self.seconds > 0 else 0.0


def import_blocks(
    chain: Chain,
    path: Path,
    *,
    progress_every: int = 1000,
    on_progress: Optional[Callable[[ImportStats, int], None]] = None,
    blobs_path: Optional[Path] = None,
) -> ImportStats:
    """Import every block of the file at ``path`` through ``chain.import_block``.

    Blocks already stored are skipped without being decoded (so a re-run after an
    interruption resumes where it stopped); every other block is validated in full.
    Stops at the first corrupt entry or invalid block, keeping the blocks before it.
    ``on_progress(stats, number)`` is called every ``progress_every`` imported blocks.
    Blobs the blocks need come from the blob file ``blobs_path`` (default: ``path``
    + ``.blobs`` when it exists; see "Blob files" above).
    """
    stats = ImportStats()
    started = time.perf_counter()
    max_entry = chain.genesis.max_block_bytes + chain.engine.max_payload_bytes() + 64
    if blobs_path is None and blob_file_path(path).is_file():
        blobs_path = blob_file_path(path)
    blob_file = BlobFile(blobs_path) if blobs_path is not None else None
    with open(path, "rb", buffering=1 << 20) as f:
        for entry in read_block_file(f, max_entry_bytes=max_entry, name=str(path)):
            try:
                header = _peek_header(entry.block_rlp)
            except (ValueError, TypeError, rlp.DecodingError, rlp.DeserializationError) as exc:
                raise CorruptBlockFile(
                    f"{path}: corrupt block at offset {entry.offset}: {exc}", offset=entry.offset
                ) from None
            number, block_hash = int(header.block_number), bytes(header.hash)
            if chain.chaindb.header_exists(Hash32(block_hash)):
                stats.known += 1
                continue
            if number == 0:
                raise InvalidBlockInFile(
                    f"{path}: block #0 at offset {entry.offset} is the genesis of another chain "
                    f"({encode_hex(block_hash)} != ours {encode_hex(chain.genesis_hash)})",
                    offset=entry.offset, number=0, error=ChainError("foreign genesis"),
                )
            _provide_blobs(chain, header, entry.block_rlp, blob_file, path, entry.offset)
            try:
                result = chain.import_block(entry.block_rlp, entry.payload)
            except MalformedBlock as exc:
                raise CorruptBlockFile(
                    f"{path}: corrupt block at offset {entry.offset}: {exc}", offset=entry.offset
                ) from None
            except InvalidBlock as exc:
                raise InvalidBlockInFile(
                    f"{path}: block #{number} {encode_hex(block_hash)} at offset {entry.offset} "
                    f"is invalid: {_rule_name(exc)}: {exc}",
                    offset=entry.offset, number=number, error=exc,
                ) from None
            except UnknownParent as exc:
                raise InvalidBlockInFile(
                    f"{path}: block #{number} at offset {entry.offset} does not continue this chain: {exc}",
                    offset=entry.offset, number=number, error=exc,
                ) from None
            except ChainError as exc:  # transient: e.g. a dataset the node lacks
                raise BlockFileError(
                    f"{path}: block #{number} at offset {entry.offset} cannot be verified on this node: {exc}",
                    offset=entry.offset,
                ) from None
            stats.imported += 1
            stats.transactions += len(result.imported.transactions)
            if on_progress is not None and stats.imported % progress_every == 0:
                stats.seconds = time.perf_counter() - started
                on_progress(stats, number)
    stats.seconds = time.perf_counter() - started
    head = chain.head()
    stats.head_number, stats.head_hash = head.block_number, bytes(head.hash)
    return stats


def _peek_header(block_rlp: bytes) -> Any:
    """A block's header from its RLP, decoding only the header."""
    _, prefix, _ = item_prefix(block_rlp, 0)
    is_list, header_prefix, header_len = item_prefix(block_rlp, prefix)
    if not is_list:
        raise ValueError("a block's first item must be its header (a list)")
    return decode_header(block_rlp[prefix : prefix + header_prefix + header_len])


def _put_named(store: Any, name: bytes, data: bytes) -> bytes:
    from pouw.blobstore import put_named

    return put_named(store, name, data)


def _provide_blobs(
    chain: Chain, header: Any, block_rlp: bytes, blob_file: Optional["BlobFile"], path: Path, offset: int
) -> None:
    """Put into the blob store the blobs the block's verification reads (its seal's, and
    its fraud proofs' start states) that the store
    lacks, from the blob file; MissingBlob (naming the block and the blob) when neither
    has one. A block the engine cannot even read (unknown parent, unknown job) is left to
    import_block, which says what is wrong with it."""
    store = chain.engine.blobs
    if store is None or not chain.chaindb.header_exists(header.parent_hash):
        return
    try:
        names = chain.engine.blobs_for_block(header, chain.state_at(chain.get_header_by_hash(header.parent_hash)))
        transactions = decode_block(block_rlp, chain.genesis).transactions
        names += tuple(h for tx in transactions for h in chain.engine.transaction_blobs(tx))
    except ChainError:
        return
    for name in names:
        if store.has(name):
            continue
        data = blob_file.get(name) if blob_file is not None else None
        if data is None:
            where = f"nor in {blob_file.path}" if blob_file is not None else "and there is no blob file"
            raise MissingBlob(
                f"{path}: block #{header.block_number} at offset {offset} needs blob {encode_hex(name)} "
                f"(a dataset, checkpoint or proof state its verification reads), which is not in this node's blob "
                f"store {where}: export the chain with its blobs (pouw-node export writes FILE.blobs), "
                "or import on a node whose peers have it",
                offset=offset, number=int(header.block_number), blob_hash=bytes(name),
            )
        try:
            _put_named(store, name, data)  # a dataset under its keccak256, a state under its state hash
        except ValueError:
            raise CorruptBlockFile(
                f"{blob_file.path if blob_file else path}: blob {encode_hex(name)} (for block "
                f"#{header.block_number}) does not match its hash", offset=offset,
            ) from None


def blob_file_path(block_file: Path) -> Path:
    """Where ``export`` writes a block file's blobs: ``FILE.blobs`` beside it."""
    return block_file.with_name(block_file.name + ".blobs")


class BlobFile:
    """An index (hash -> offset, length) of a blob file, read without loading any blob;
    ``get`` reads one blob when a block needs it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.index: dict[bytes, tuple[int, int]] = {}
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            offset = 0
            while offset < size:
                try:
                    head = f.read(9)
                    is_list, prefix, length = item_prefix(head, 0)
                    if not is_list or offset + prefix + length > size:
                        raise ValueError("not a [hash, data] entry")
                    f.seek(offset + prefix)
                    inner = f.read(min(length, 33 + 9))
                    hash_list, hash_prefix, hash_len = item_prefix(inner, 0)
                    if hash_list or hash_len != 32:
                        raise ValueError("the first item of an entry must be a 32-byte hash")
                    blob_hash = inner[hash_prefix : hash_prefix + 32]
                    data_list, data_prefix, data_len = item_prefix(inner, hash_prefix + 32)
                    if data_list or hash_prefix + 32 + data_prefix + data_len != length:
                        raise ValueError("the second item of an entry must be the blob's bytes")
                except ValueError as exc:
                    raise CorruptBlockFile(f"{path}: corrupt blob entry at offset {offset}: {exc}", offset=offset) from None
                self.index[bytes(blob_hash)] = (offset + prefix + hash_prefix + 32 + data_prefix, data_len)
                offset += prefix + length
                f.seek(offset)

    def get(self, blob_hash: bytes) -> Optional[bytes]:
        where = self.index.get(bytes(blob_hash))
        if where is None:
            return None
        with open(self.path, "rb") as f:
            f.seek(where[0])
            data = f.read(where[1])
        if len(data) != where[1]:
            raise CorruptBlockFile(f"{self.path}: blob {encode_hex(blob_hash)} is truncated", offset=where[0])
        return data


def _rule_name(exc: ChainError) -> str:
    """``InvalidStateRoot`` -> ``state root``: the rule a block broke, in words."""
    name = type(exc).__name__
    if name.startswith("Invalid"):
        name = name[len("Invalid"):]
    words = "".join(f" {c.lower()}" if c.isupper() else c for c in name).strip()
    return words or "invalid block"


@dataclass(frozen=True)
class ExportStats:
    blocks: int
    blobs: int
    blob_bytes: int
    blobs_path: Optional[Path]
    """The blob file written, or None (no block needs a blob, or ``blobs`` was off)."""


def export_blocks(
    chain: Chain, path: Path, *, start: int = 0, end: Optional[int] = None, blobs: bool = True
) -> ExportStats:
    """Write canonical blocks ``start..end`` (default: to the head) to a block file, and
    (``blobs``) the blobs their verification reads to ``path.blobs`` (see "Blob files").

    Written to ``.tmp`` files and renamed, so neither file is ever partial. A blob a
    block needs that this node lacks stops the export (NodeError naming block and blob).
    """
    head = chain.head().block_number
    last = head if end is None else min(end, head)
    if start < 0 or start > last:
        raise NodeError(f"nothing to export: --from {start} is above --to {last} (head #{head})")
    store = chain.engine.blobs if blobs else None
    blobs_path = blob_file_path(path)
    tmp, blobs_tmp = path.with_name(path.name + ".tmp"), blobs_path.with_name(blobs_path.name + ".tmp")
    count = 0
    written: set[bytes] = set()
    blob_bytes = 0
    try:
        with open(tmp, "wb", buffering=1 << 20) as f, open(blobs_tmp, "wb", buffering=1 << 20) as bf:
            for number in range(start, last + 1):
                block_hash = chain.get_canonical_hash(number)
                block = chain.get_block_by_hash(block_hash)
                payload = chain.get_payload(block_hash)
                f.write(encode_entry(rlp.encode(block), payload))
                count += 1
                if store is None or payload is None or number == 0:
                    continue
                parent_state = chain.state_at(chain.get_header_by_hash(block.header.parent_hash))
                tx_blobs = [h for tx in block.transactions for h in chain.engine.transaction_blobs(tx)]
                for name in (*chain.engine.blobs_for_block(block.header, parent_state), *tx_blobs):
                    if name in written:
                        continue
                    if not store.has(name):
                        raise NodeError(
                            f"cannot export block #{number} with its blobs: blob {encode_hex(name)} (a dataset, "
                            "checkpoint or proof state its verification reads) is not in this node's blob store "
                            "(--no-blobs exports the blocks alone)"
                        )
                    data = bytes(store.get(name))
                    bf.write(rlp.encode([bytes(name), data]))
                    written.add(bytes(name))
                    blob_bytes += len(data)
        os.replace(tmp, path)
        if written:
            os.replace(blobs_tmp, blobs_path)
        elif blobs_path.exists() and store is not None:
            blobs_path.unlink()  # a stale blob file of an earlier export would mislead import
    finally:
        for leftover in (tmp, blobs_tmp):
            if leftover.exists():
                leftover.unlink()
    return ExportStats(count, len(written), blob_bytes, blobs_path if written else None)


# --- The running node ------------------------------------------------------------------


@dataclass(frozen=True)
class NodeConfig:
    """What ``pouw-node run`` was asked for (mining and p2p are started beside the node
    by ``node/cli.py``)."""

    rpc_host: str = "127.0.0.1"
    rpc_port: int = 8545
    rpc: bool = True
    automine: bool = False
    dev_period: float = 0.0
    """Build a block every ``dev_period`` seconds (+-40 % jitter), empty or with the
    pool's transactions; 0 = off. No-proof (dev) chains only, like geth's --dev.period."""
    coinbase: Optional[bytes] = None
    """Coinbase of the blocks the dev producer and automine build (None: automine's)."""
    rpc_config: Any = None
    """``rpc.config.RpcConfig`` (limits, CORS, namespaces); None: defaults. Its host and
    port are replaced by ``rpc_host`` and ``rpc_port``."""
    txpool_limits: Optional[TxPoolLimits] = None
    """The pool's limits (``--txpool-*``); None: defaults."""
    dashboard: bool = True
    """Serve the dashboard at GET / on the RPC port (``--no-dashboard``)."""
    metrics: bool = True
    """Serve Prometheus metrics at /metrics on the RPC port (``--no-metrics``)."""
    dataset_quota: int = 1 << 30
    """Bytes of uploaded datasets no posted job names that the node keeps (rpc/uploads.py)."""
    ws_max_per_client: int = 32
    """WebSocket connections one client address may hold open."""
    dev_accounts: bool = False
    """Sign for the public development accounts (``--dev-accounts``; development genesis
    only): ``eth_accounts``, ``eth_sendTransaction``, ``eth_sign*`` (rpc/accounts.py)."""


class Node:
    """A running node on an open datadir: tx pool, JSON-RPC server, automine, dev producer.

    ``run(stop)`` serves until ``stop`` is set, then stops every service (the caller
    closes the datadir, which releases its lock).
    """

    def __init__(self, datadir: OpenDatadir, config: NodeConfig) -> None:
        # rpc/ (aiohttp) is imported here, not at the top: init/import/export never serve
        # and should not pay its start-up time.
        from chain.txpool import TxPool
        from rpc.backend import ChainBackend

        self.datadir = datadir
        self.config = config
        self.chain = datadir.chain
        if config.automine:
            check_automine_allowed(self.chain.genesis, datadir.path)
            self.chain.clock = AutomineClock(self.chain)
        if config.dev_period:
            check_dev_period_allowed(self.chain.genesis, datadir.path)
            if config.dev_period < 0:
                raise NodeError(f"--dev-period must be positive, got {config.dev_period}")
        self.chain.txpool = TxPool(
            self.chain.genesis.chain_id, self.chain.state_view(), limits=config.txpool_limits,
            missing_blobs=self.chain.engine.missing_transaction_blobs,
        )
        self.backend = ChainBackend(self.chain)
        if config.dev_accounts:
            check_dev_accounts_allowed(self.chain.genesis, datadir.path)
            from genesis.devkeys import DEV_KEYS_HEX
            from rpc.accounts import DevAccounts

            self.backend.accounts = DevAccounts(DEV_KEYS_HEX)
            log.warning("dev accounts unlocked: the node signs for the %d public test-mnemonic accounts "
                        "(anyone can spend from them)", len(DEV_KEYS_HEX))
        self.rpc_url: Optional[str] = None
        from node.imports import ImportLog

        # one log line and a timing record per imported block, whoever imports it
        self.imports = ImportLog(self.chain).attach()
        self.backend.imports = self.imports  # /metrics and pouw_blockImports (rpc.sources.ImportSource)
        self.p2p_port: Optional[int] = None
        """Set by the CLI once the p2p service listens (reported in running.json)."""

    async def run(self, stop: asyncio.Event) -> None:
        automine = None
        producer = None
        try:
            if self.config.automine:
                automine = make_automine(self.backend, self.config.coinbase).start()
                log.info("automine on: a block is built whenever the pool holds transactions")
            if self.config.dev_period:
                producer = DevBlockProducer(self.backend, self.config.dev_period, self.config.coinbase).start()
                log.info("dev block producer on: a block every %g s (+-40%%), coinbase %s",
                         self.config.dev_period, encode_hex(producer.miner.coinbase))
                if self.config.dev_period < 1:
                    log.warning("--dev-period under 1 s: block timestamps (at least parent + 1 s) run ahead "
                                "of the clock, and peers refuse blocks more than 15 s ahead of theirs")
            if self.config.rpc:
                await self._serve_rpc(stop)
            else:
                await stop.wait()
        finally:
            if producer is not None:
                await asyncio.get_running_loop().run_in_executor(None, producer.stop)
            if automine is not None:
                automine.stop()

    async def _serve_rpc(self, stop: asyncio.Event) -> None:
        """Serve JSON-RPC until ``stop``. Not rpc.server.running_server: that one leaves
        the app's services (and their threads, which read the database) running when
        the port cannot be bound, and the node must join every reader before it closes
        the database."""
        from aiohttp import web

        from rpc.config import RpcConfig
        from rpc.server import SERVICES, create_app

        uploads = self.datadir.path / UPLOADS_DIRNAME
        if uploads.is_dir():  # spool files of uploads a previous run did not finish
            for leftover in uploads.glob("upload-*.part"):
                leftover.unlink(missing_ok=True)
        config = dataclasses.replace(
            self.config.rpc_config or RpcConfig(), host=self.config.rpc_host, port=self.config.rpc_port,
            dashboard=self.config.dashboard, metrics=self.config.metrics,
            dataset_quota_bytes=self.config.dataset_quota, upload_dir=str(uploads),
            max_ws_per_client=self.config.ws_max_per_client,
        )
        app = create_app(self.backend, config)
        runner = web.AppRunner(app, access_log=None, keepalive_timeout=config.idle_timeout_s)
        await runner.setup()
        try:
            site = web.TCPSite(runner, config.host, config.port)
            try:
                await site.start()
            except OSError as exc:
                raise NodeError(f"cannot listen on {config.host}:{config.port}: {exc.strerror or exc}") from None
            port = runner.addresses[0][1] if runner.addresses else config.port
            self.rpc_url = f"http://{config.host}:{port}"
            write_running_file(self.datadir.path, self.rpc_url, self.p2p_port)
            log.info("JSON-RPC listening on %s (HTTP and WebSocket)", self.rpc_url)
            if config.dashboard:
                log.info("dashboard on %s/ (--no-dashboard to turn it off)", self.rpc_url)
            if config.metrics:
                log.info("Prometheus metrics on %s/metrics", self.rpc_url)
            await stop.wait()
        finally:
            remove_running_file(self.datadir.path)
            services = app.get(SERVICES)
            await runner.cleanup()
            if services is not None:  # wait for requests still running in its threads
                await asyncio.get_running_loop().run_in_executor(None, services.executor.shutdown, True)


def write_running_file(datadir: Path, rpc_url: str, p2p_port: Optional[int]) -> None:
    """DIR/running.json: who serves this datadir and where, once its ports are bound."""
    info = {"pid": os.getpid(), "rpc": rpc_url, "p2p_port": p2p_port, "started": time.time()}
    _write_atomically(datadir / RUNNING_FILENAME, (json.dumps(info) + "\n").encode())


def read_running_file(datadir: Path) -> Optional[dict[str, Any]]:
    """The running.json of a datadir, or None when absent or unreadable."""
    try:
        info = json.loads((datadir / RUNNING_FILENAME).read_text())
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) else None


def remove_running_file(datadir: Path) -> None:
    info = read_running_file(datadir)
    if info is not None and info.get("pid") == os.getpid():
        (datadir / RUNNING_FILENAME).unlink(missing_ok=True)


class AutomineClock:
    """The chain's clock on an automine dev chain: never behind the head's timestamp.

    Automine stamps a block max(now, parent + 1); mining faster than one block a second
    (a dApp test suite sending transactions back to back) pushes timestamps ahead of the
    wall clock, and import refuses blocks more than 15 s in the future. Like anvil, a
    dev chain lets its time run ahead instead of stalling.
    """

    def __init__(self, chain: Chain) -> None:
        self.chain = chain

    def __call__(self) -> float:
        return max(time.time(), float(self.chain.head().timestamp))


def make_automine(backend: Any, coinbase: Optional[bytes] = None) -> Any:
    """rpc/automine.py's loop, with blocks stamped by the clock (its own stamps are
    parent + 1 s, which on a long-lived dev chain lag ever further behind real time, so
    ``block.timestamp`` in contracts would be wrong) and each block logged."""
    from rpc.automine import Automine

    class LoggingAutomine(Automine):
        def mine_now(self, *, allow_empty: bool = True) -> Any:
            backend = self.backend
            chain = backend.chain
            with chain.write_lock:  # build on the head and import, nothing in between
                if not backend.pending_transactions() and not allow_empty:
                    return None
                block, payload = chain.build_block(self.coinbase)  # timestamp: max(now, parent + 1)
                if not block.transactions and not allow_empty:
                    return None
                chain.import_block(block, payload)
            self.blocks_mined += 1
            backend.notify_new_head(block.hash)
            log.info(
                "mined block #%d %s (%d txs, gas used %d)",
                block.number, encode_hex(block.hash), len(block.transactions), block.header.gas_used,
            )
            return block

    automine = LoggingAutomine(backend)
    if coinbase is not None:
        automine.coinbase = Address(bytes(coinbase))
    return automine


class DevBlockProducer:
    """``--dev-period S``: a thread that builds a block every S seconds (+-40 % jitter),
    empty or with the pool's transactions, on a no-proof chain: the devnet's stand-in
    for mining, like geth's ``--dev.period``.

    The jitter matters on a network: producers started together would otherwise build
    competing blocks of equal work at the same instants forever (ties keep each node on
    its own branch). Each producer has its own coinbase, so separated producers fork.
    """

    def __init__(self, backend: Any, period: float, coinbase: Optional[bytes] = None) -> None:
        if not period > 0:
            raise NodeError(f"--dev-period must be positive, got {period}")
        self.miner = make_automine(backend, coinbase)
        self.period = float(period)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="dev-producer", daemon=True)

    @property
    def blocks_built(self) -> int:
        return int(self.miner.blocks_mined)

    def start(self) -> "DevBlockProducer":
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop and join (a block being built is finished first)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def _run(self) -> None:
        """Blocks start ``period`` (jittered) apart, from start to start as geth's dev
        period: the time a large block takes to build is not added to the period."""
        jitter = random.Random()
        started = time.monotonic()
        while not self._stop.wait(max(0.0, started + self.period * jitter.uniform(0.6, 1.4) - time.monotonic())):
            started = time.monotonic()
            try:
                self.miner.mine_now(allow_empty=True)
            except Exception:  # noqa: BLE001 - keep producing; the log says why
                log.exception("dev block producer failed")
