"""The key schema: every key function is collision free, and metadata is checked."""
from __future__ import annotations

import itertools
import os

import pytest
from eth.db.atomic import AtomicDB
from eth_utils import keccak

from chain import schema
from chain.errors import ValidationError

HASHES = [b"\x00" * 32, b"\xff" * 32, keccak(b"a"), keccak(b"b")]


def _all_our_keys() -> list[bytes]:
    keys = list(schema.FIXED_KEYS)
    for fn in schema.KEY_FUNCTIONS.values():
        keys.extend(fn(h) for h in HASHES)
    return keys


def test_our_keys_are_namespaced_and_never_32_bytes() -> None:
    for key in _all_our_keys():
        assert key.startswith(schema.NAMESPACE)
        assert len(key) != 32, "a 32-byte key could collide with py-evm's content hashes"


def test_prefixes_are_prefix_free() -> None:
    """No dynamic prefix is a prefix of another or of a fixed key, so keys never collide."""
    prefixes = list(schema.KEY_FUNCTIONS)
    for a, b in itertools.permutations(prefixes, 2):
        assert not b.startswith(a)
    for prefix, fixed in itertools.product(prefixes, schema.FIXED_KEYS):
        assert not fixed.startswith(prefix)


def test_no_two_key_functions_collide_on_distinct_inputs() -> None:
    random_hashes = [os.urandom(32) for _ in range(200)] + HASHES
    seen: dict[bytes, tuple] = {}
    for key in schema.FIXED_KEYS:
        seen[key] = ("fixed", key)
    for prefix, fn in schema.KEY_FUNCTIONS.items():
        for h in random_hashes:
            key = fn(h)
            assert seen.setdefault(key, (prefix, h)) == (prefix, h)


def test_no_our_key_is_a_pyevm_key() -> None:
    pyevm = set(schema.PYEVM_FIXED_KEYS) | {
        schema.block_number_to_hash(0),
        schema.block_hash_to_score(HASHES[0]),
        schema.transaction_hash_to_block(HASHES[0]),
        schema.withdrawal_hash_to_block(HASHES[0]),
    }
    for key in pyevm:
        assert not key.startswith(schema.NAMESPACE)
    assert not pyevm & set(_all_our_keys())


def test_pyevm_keys_are_referenced_unchanged() -> None:
    assert schema.canonical_head_hash() == b"v1:canonical_head_hash"
    assert schema.block_number_to_hash(7) == b"block-number-to-hash:7"
    assert schema.header(HASHES[2]) == HASHES[2]


@pytest.mark.parametrize("fn", list(schema.KEY_FUNCTIONS.values()) + [schema.header])
@pytest.mark.parametrize("bad", [b"", b"\x00" * 31, b"\x00" * 33, "00" * 32])
def test_invalid_key_argument_length(fn, bad) -> None:
    with pytest.raises(schema.SchemaError) as info:
        fn(bad)
    assert info.value.expected == 32
    assert isinstance(info.value, ValidationError)


def test_metadata_round_trip_and_check() -> None:
    db = AtomicDB()
    assert schema.read_metadata(db) is None
    meta = schema.write_metadata(db, 1337, HASHES[2])
    assert schema.read_metadata(db) == meta
    assert schema.check_metadata(db, 1337, HASHES[2]) == meta


@pytest.mark.parametrize(
    "chain_id, genesis, what",
    [(1, HASHES[2], "chain id"), (1337, HASHES[3], "genesis hash")],
)
def test_invalid_metadata_mismatch(chain_id, genesis, what) -> None:
    db = AtomicDB()
    schema.write_metadata(db, 1337, HASHES[2])
    with pytest.raises(schema.MetadataMismatch) as info:
        schema.check_metadata(db, chain_id, genesis)
    assert what in str(info.value)


def test_invalid_metadata_missing_or_other_version() -> None:
    db = AtomicDB()
    with pytest.raises(schema.MetadataMismatch):
        schema.check_metadata(db, 1337, HASHES[2])
    schema.write_metadata(db, 1337, HASHES[2])
    db[schema.SCHEMA_VERSION_KEY] = (schema.SCHEMA_VERSION + 1).to_bytes(8, "big")
    with pytest.raises(schema.MetadataMismatch) as info:
        schema.check_metadata(db, 1337, HASHES[2])
    assert info.value.got == schema.SCHEMA_VERSION + 1
