"""Every key the node writes, named in one module.

The database is one flat bytes-to-bytes space shared by py-evm and by us, so a key
written anywhere must be traceable to a function here. py-evm names its own keys in
:class:`eth.db.schema.SchemaV1` and writes content-addressed data under the raw hash;
this module re-exports those and adds ours under the ``pouw/`` namespace.

======================================  ===========================  ==================
key                                     value                        written by
======================================  ===========================  ==================
py-evm, content addressed (exactly 32 bytes, the keccak of the value)
-----------------------------------------------------------------------------------------
``header_hash`` (32 B)                  rlp(header)                  py-evm ChainDB
trie node hash (32 B)                   rlp(node): state, storage,   py-evm
                                        tx, receipt, withdrawal tries
``code_hash`` (32 B)                    contract code                py-evm AccountDB
``uncles_hash`` (32 B)                  rlp(uncle headers)           py-evm ChainDB
py-evm, ASCII prefixed (SchemaV1)
-----------------------------------------------------------------------------------------
``v1:canonical_head_hash``              head block hash              py-evm HeaderDB
``block-number-to-hash:<n>``            canonical hash at n          py-evm HeaderDB
``block-hash-to-score:<repr(h)>``       rlp(cumulative difficulty)   py-evm HeaderDB
``transaction-hash-to-block:<repr(h)>`` rlp(block number, index)     py-evm ChainDB
``withdrawal-hash-to-block:<repr(h)>``  rlp(block number, index)     py-evm ChainDB
``v1:header_chain_gaps`` / ``v1:chain_gaps`` / ``v1:checkpoint-header-hashes-list``
                                        sync bookkeeping             py-evm
ours (``pouw/`` namespace; never 32 bytes long, so never a content hash)
-----------------------------------------------------------------------------------------
``pouw/meta/schema-version``            uint, big endian             node, at init
``pouw/meta/chain-id``                  uint, big endian             node, at init
``pouw/meta/genesis-hash``              32 B block hash              node, at init
``pouw/work/`` + block_hash (32 B)      block work payload bytes     block import
``pouw/blob/`` + content_hash (32 B)    blob bytes (datasets,        pouw BlobStore
                                        checkpoints)
``pouw/job/`` + job_id (32 B)           job registry aux data        reserved
``pouw/pieces/`` + blob key (42 B)      length (8 B) || count (4 B)  chain/db.py, for
                                        of a blob over 4 MiB, stored blob values over 4 MiB
``pouw/pieces/`` + blob key + i (4 B)   its i-th 1 MiB piece         (LevelDB keeps a
                                                                     value whole in memory)
``pouw/upload/`` + content_hash (32 B)  rlp([size, unix time]) of a  rpc/uploads.py
                                        dataset uploaded over RPC
                                        that no posted job named yet
======================================  ===========================  ==================

Why py-evm's keys are enough where they exist:

- Canonical head and fork choice: py-evm's ``HeaderDB`` keeps the head by score (the
  cumulative difficulty, our cumulative work) and moves it only on a strictly greater
  score, which is exactly "heaviest chain, ties to the block seen first".
- Transaction lookup: ``transaction-hash-to-block`` maps a hash to (block number,
  index) on the canonical chain and is rewritten on reorg; the block hash follows from
  ``block-number-to-hash``.
- Receipts: stored in each block's receipt trie, found from the header's receipt root.

Collision freedom: our dynamic prefixes are prefix-free (no one is a prefix of
another, nor of a fixed meta key), every argument is exactly 32 bytes (``pieces/``:
a 42-byte blob key, plus a 4-byte index for a piece), and every key of ours is longer
than 32 bytes and starts with ``pouw/``, which no py-evm key does.
``tests/chain/test_schema.py`` checks all three.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, Optional

from eth.abc import DatabaseAPI
from eth.db.schema import SchemaV1
from eth_typing import BlockNumber, Hash32

from chain.errors import ValidationError

#: Bumped whenever a key or value layout of ours changes incompatibly.
SCHEMA_VERSION = 1

NAMESPACE = b"pouw/"
HASH_LENGTH = 32

# ------------------------------------------------------------------ our fixed keys

SCHEMA_VERSION_KEY = NAMESPACE + b"meta/schema-version"
CHAIN_ID_KEY = NAMESPACE + b"meta/chain-id"
GENESIS_HASH_KEY = NAMESPACE + b"meta/genesis-hash"

#: Every fixed key of ours, for tests and for tools that export metadata.
FIXED_KEYS: tuple[bytes, ...] = (SCHEMA_VERSION_KEY, CHAIN_ID_KEY, GENESIS_HASH_KEY)

# --------------------------------------------------------- our keys with an argument

WORK_PAYLOAD_PREFIX = NAMESPACE + b"work/"
BLOB_PREFIX = NAMESPACE + b"blob/"
JOB_AUX_PREFIX = NAMESPACE + b"job/"
UPLOAD_PREFIX = NAMESPACE + b"upload/"
PIECES_PREFIX = NAMESPACE + b"pieces/"


class SchemaError(ValidationError):
    """A key argument or stored metadata does not fit the schema."""


def _hash_arg(name: str, value: bytes) -> bytes:
    if not isinstance(value, (bytes, bytearray)) or len(value) != HASH_LENGTH:
        got = len(value) if isinstance(value, (bytes, bytearray)) else type(value).__name__
        raise SchemaError(f"{name} must be {HASH_LENGTH} bytes", expected=HASH_LENGTH, got=got)
    return bytes(value)


def work_payload(block_hash: bytes) -> bytes:
    """Key of a block's work payload (challenged states, new checkpoint).

    Kept outside the header because it can be megabytes; the header commits to it.
    """
    return WORK_PAYLOAD_PREFIX + _hash_arg("block_hash", block_hash)


def blob(content_hash: bytes) -> bytes:
    """Key of a content-addressed blob (dataset, model state) for the pouw BlobStore."""
    return BLOB_PREFIX + _hash_arg("content_hash", content_hash)


def job_aux(job_id: bytes) -> bytes:
    """Key reserved for off-state job registry data (e.g. an index to its latest payload).

    Jobs themselves live in the state trie (the registry contract's storage), so a reorg
    rolls them back; anything stored here must be recomputable from the chain.
    """
    return JOB_AUX_PREFIX + _hash_arg("job_id", job_id)


def dataset_upload(content_hash: bytes) -> bytes:
    """Key of the upload record (size, time) of a dataset a client uploaded: what the
    dataset quota counts and may collect while no posted job names the dataset."""
    return UPLOAD_PREFIX + _hash_arg("content_hash", content_hash)


def pieces_head(blob_key: bytes) -> bytes:
    """Key of the head (length, piece count) of a blob value stored in pieces; the
    argument is the blob's own key (``blob(hash)``), so heads are all the same length."""
    return PIECES_PREFIX + _blob_key_arg(blob_key)


def piece(blob_key: bytes, index: int) -> bytes:
    """Key of piece ``index`` of a blob value stored in pieces (4 bytes longer than a head)."""
    if not 0 <= index < 2**32:
        raise SchemaError("piece index out of range", expected="< 2**32", got=index)
    return PIECES_PREFIX + _blob_key_arg(blob_key) + index.to_bytes(4, "big")


def _blob_key_arg(blob_key: bytes) -> bytes:
    if not (isinstance(blob_key, (bytes, bytearray)) and len(blob_key) == len(BLOB_PREFIX) + HASH_LENGTH
            and bytes(blob_key).startswith(BLOB_PREFIX)):
        raise SchemaError("expected a blob key (pouw/blob/ + 32 bytes)", got=blob_key)
    return bytes(blob_key)


#: Our key functions by prefix, for tests and for scans with ``LevelDB.iterate(prefix)``.
KEY_FUNCTIONS: Dict[bytes, Callable[[bytes], bytes]] = {
    WORK_PAYLOAD_PREFIX: work_payload,
    BLOB_PREFIX: blob,
    JOB_AUX_PREFIX: job_aux,
    UPLOAD_PREFIX: dataset_upload,
}

# --------------------------------------------------- py-evm's keys, referenced here

PyEvmSchema = SchemaV1


def canonical_head_hash() -> bytes:
    """py-evm: hash of the canonical head (moved only by a strictly greater score)."""
    return SchemaV1.make_canonical_head_hash_lookup_key()


def header(block_hash: Hash32) -> bytes:
    """py-evm: a header is stored under its own hash (content addressed)."""
    return _hash_arg("block_hash", block_hash)


def block_number_to_hash(block_number: int) -> bytes:
    """py-evm: canonical block hash at a height."""
    return SchemaV1.make_block_number_to_hash_lookup_key(BlockNumber(block_number))


def block_hash_to_score(block_hash: Hash32) -> bytes:
    """py-evm: cumulative difficulty (our cumulative work) of a block, for fork choice."""
    return SchemaV1.make_block_hash_to_score_lookup_key(block_hash)


def transaction_hash_to_block(transaction_hash: Hash32) -> bytes:
    """py-evm: canonical (block number, index) of a transaction."""
    return SchemaV1.make_transaction_hash_to_block_lookup_key(transaction_hash)


def withdrawal_hash_to_block(withdrawal_hash: Hash32) -> bytes:
    """py-evm: canonical (block number, index) of a withdrawal (unused by our chain)."""
    return SchemaV1.make_withdrawal_hash_to_block_lookup_key(withdrawal_hash)


#: py-evm's fixed bookkeeping keys.
PYEVM_FIXED_KEYS: tuple[bytes, ...] = (
    SchemaV1.make_canonical_head_hash_lookup_key(),
    SchemaV1.make_header_chain_gaps_lookup_key(),
    SchemaV1.make_chain_gaps_lookup_key(),
    SchemaV1.make_checkpoint_headers_key(),
)

# ------------------------------------------------------------------ datadir metadata


@dataclass(frozen=True)
class DatadirMetadata:
    """What a datadir was created for; checked on every open so that a node never
    runs one network's genesis on another network's database."""

    schema_version: int
    chain_id: int
    genesis_hash: Hash32


class MetadataMismatch(SchemaError):
    """The datadir belongs to another chain, genesis or schema version."""


def _uint(value: int) -> bytes:
    return value.to_bytes(8, "big")


def write_metadata(db: DatabaseAPI, chain_id: int, genesis_hash: Hash32) -> DatadirMetadata:
    """Record what this datadir is for (call inside the genesis write batch)."""
    meta = DatadirMetadata(SCHEMA_VERSION, chain_id, Hash32(_hash_arg("genesis_hash", genesis_hash)))
    db[SCHEMA_VERSION_KEY] = _uint(meta.schema_version)
    db[CHAIN_ID_KEY] = _uint(meta.chain_id)
    db[GENESIS_HASH_KEY] = meta.genesis_hash
    return meta


def read_metadata(db: DatabaseAPI) -> Optional[DatadirMetadata]:
    """The recorded metadata, or None for a fresh datadir."""
    if SCHEMA_VERSION_KEY not in db:
        return None
    return DatadirMetadata(
        schema_version=int.from_bytes(db[SCHEMA_VERSION_KEY], "big"),
        chain_id=int.from_bytes(db[CHAIN_ID_KEY], "big"),
        genesis_hash=Hash32(db[GENESIS_HASH_KEY]),
    )


def check_metadata(db: DatabaseAPI, chain_id: int, genesis_hash: Hash32) -> DatadirMetadata:
    """Refuse a datadir written for another schema, chain id or genesis."""
    meta = read_metadata(db)
    if meta is None:
        raise MetadataMismatch("datadir has no metadata (not initialised)", expected=chain_id, got=None)
    if meta.schema_version != SCHEMA_VERSION:
        raise MetadataMismatch(
            "datadir schema version differs", expected=SCHEMA_VERSION, got=meta.schema_version
        )
    if meta.chain_id != chain_id:
        raise MetadataMismatch("datadir chain id differs", expected=chain_id, got=meta.chain_id)
    if meta.genesis_hash != genesis_hash:
        raise MetadataMismatch(
            "datadir genesis hash differs", expected=bytes(genesis_hash), got=bytes(meta.genesis_hash)
        )
    return meta
