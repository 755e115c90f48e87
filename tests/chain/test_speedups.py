"""chain/speedups.py and chain/account_db.py: each faster function gives exactly what the
library function it replaces gives (same bytes, same errors), on edge cases and on
random inputs; and the replacements are the ones in use once ``chain`` is imported."""
from __future__ import annotations

import copy
import random

import pytest
import rlp
import rlp.codec
import trie.hexary
import trie.utils.nibbles as nibbles
from eth.constants import BLANK_ROOT_HASH, EMPTY_SHA3
from eth.db.atomic import AtomicDB
from eth.db.trie import make_trie_root_and_nodes
from eth.rlp.accounts import Account
from trie import HexaryTrie

import chain  # noqa: F401 - installs the speedups
from chain import speedups
from chain.account_db import FastAccountDB, decode_account, encode_account
from chain.header import PouwBlockHeader
from chain.vm import PouwState

RANDOM = random.Random(20261202)


def hexary_root_and_nodes(values: tuple[bytes, ...]) -> tuple[bytes, dict[bytes, bytes]]:
    """What py-evm did before: one insertion at a time into a HexaryTrie."""
    store: dict[bytes, bytes] = {}
    reference = HexaryTrie(store, BLANK_ROOT_HASH)
    with reference.squash_changes() as memory_trie:
        for index, value in enumerate(values):
            memory_trie[rlp.encode(index)] = value
    return reference.root_hash, store


# --- installation -----------------------------------------------------------------------


def test_the_replacements_are_installed() -> None:
    import eth.db.trie
    assert rlp.codec.encode_raw is speedups.encode_raw
    assert trie.hexary.encode_raw is speedups.encode_raw
    assert trie.hexary.decode_node is speedups.decode_node
    assert nibbles.bytes_to_nibbles is speedups.bytes_to_nibbles
    assert nibbles.decode_nibbles is speedups.decode_nibbles
    assert eth.db.trie._make_trie_root_and_nodes.__wrapped__ is speedups.ordered_trie_root_and_nodes
    assert rlp.Serializable.copy is speedups.fast_copy
    assert PouwState.get_account_db_class() is FastAccountDB
    import eth.vm.forks.berlin.transactions
    from eth.vm.forks.london.transactions import DynamicFeePayloadDecoder

    assert eth.vm.forks.berlin.transactions.to_bytes is speedups.to_bytes
    assert eth.vm.forks.berlin.transactions.to_int is speedups.to_int
    assert DynamicFeePayloadDecoder.decode is speedups.decode_dynamic_fee_payload
    speedups.install()  # idempotent
    assert rlp.codec.encode_raw is speedups.encode_raw


# --- ordered tries -----------------------------------------------------------------------


@pytest.mark.parametrize("count", [0, 1, 2, 3, 15, 16, 17, 127, 128, 129, 255, 256, 257, 300])
def test_ordered_trie_equals_hexary_trie(count: int) -> None:
    for sizes in ([1], [31], [32], [33], [1, 2, 40, 200], [110]):
        values = tuple(RANDOM.randbytes(RANDOM.choice(sizes)) for _ in range(count))
        assert speedups.ordered_trie_root_and_nodes(values) == hexary_root_and_nodes(values)


def test_ordered_trie_small_values_embed_nodes_and_skips_empty_values() -> None:
    # one-byte values make nodes under 32 bytes, which parents embed instead of hashing
    values = tuple(bytes((i % 100,)) for i in range(40))
    assert speedups.ordered_trie_root_and_nodes(values) == hexary_root_and_nodes(values)
    # an empty value is no entry at all (a trie cannot hold one), as before
    values = (b"a" * 40, b"", b"b" * 5, b"")
    assert speedups.ordered_trie_root_and_nodes(values) == hexary_root_and_nodes(values)
    assert speedups.ordered_trie_root_and_nodes(()) == (BLANK_ROOT_HASH, {})


def test_make_trie_root_and_nodes_of_transactions_unchanged() -> None:
    from devnet.kit.accounts import DEV_KEYS
    from devnet.kit.transactions import sign_tx

    txs = [sign_tx(DEV_KEYS[i % 3], i, b"\x11" * 20, data=RANDOM.randbytes(i)) for i in range(40)]
    assert make_trie_root_and_nodes(txs) == hexary_root_and_nodes(tuple(tx.encode() for tx in txs))


# --- trie nodes and nibbles ----------------------------------------------------------------


def test_nibble_helpers_match_the_library() -> None:
    original_to_nibbles = nibbles._bytes_to_nibbles
    for _ in range(3000):
        value = RANDOM.randbytes(RANDOM.randint(1, 40))
        assert speedups.bytes_to_nibbles(value) == tuple(original_to_nibbles(value))
    # decode_nibbles, every flag nibble (0-3 are the valid ones) and both parities
    for flag in range(16):
        for body in (b"", b"\x12", b"\x12\x34\xff"):
            value = bytes((flag << 4 | 0x5,)) + body
            expected = nibbles.add_nibbles_terminator if flag in (2, 3) else tuple
            raw = speedups.bytes_to_nibbles(value)
            raw = raw[1:] if flag in (1, 3) else raw[2:]
            assert speedups.decode_nibbles(value) == tuple(expected(raw))
    with pytest.raises(IndexError):
        speedups.decode_nibbles(b"")


def test_decoded_nodes_are_fresh_copies_and_missing_nodes_still_raise() -> None:
    db = AtomicDB()
    state = HexaryTrie(db)
    for i in range(200):
        state[RANDOM.randbytes(32)] = RANDOM.randbytes(70)
    encoded = db[state.root_hash]
    first = speedups.decode_node(encoded)
    assert first == rlp.decode(encoded)
    first[0] = b"edited"  # the trie edits the lists it is given
    assert speedups.decode_node(encoded) == rlp.decode(encoded)
    # the cache holds decodings by content: a database without the node still fails
    empty = HexaryTrie(AtomicDB(), state.root_hash)
    with pytest.raises(trie.exceptions.MissingTrieNode):
        empty[b"\x00" * 32]


def test_hexary_trie_with_speedups_matches_a_plain_model() -> None:
    db = AtomicDB()
    state = HexaryTrie(db, prune=True)
    model: dict[bytes, bytes] = {}
    keys = [RANDOM.randbytes(32) for _ in range(300)]
    for step in range(3000):
        key = RANDOM.choice(keys)
        if RANDOM.random() < 0.2:
            model.pop(key, None)
            del state[key]
        else:
            model[key] = RANDOM.randbytes(RANDOM.choice([1, 20, 40, 100]))
            state[key] = model[key]
        if step % 500 == 0:
            for probe in keys:
                assert state.get(probe) == model.get(probe, b"")
    # the root is what a trie built from scratch, without any cache, gives
    fresh_store: dict[bytes, bytes] = {}
    fresh = HexaryTrie(fresh_store)
    for key in sorted(model):
        fresh[key] = model[key]
    assert fresh.root_hash == state.root_hash


# --- RLP encoding ----------------------------------------------------------------------------


def random_item(depth: int = 0) -> object:
    roll = RANDOM.random()
    if depth > 3 or roll < 0.6:
        return RANDOM.randbytes(RANDOM.choice([0, 1, 1, 2, 55, 56, 57, 255, 256, 70_000]))
    if roll < 0.85:
        return [random_item(depth + 1) for _ in range(RANDOM.randint(0, 20))]
    return tuple(random_item(depth + 1) for _ in range(RANDOM.randint(0, 5)))


def test_encode_raw_matches_the_library() -> None:
    original = speedups._original_encode_raw
    for _ in range(2000):
        item = random_item()
        assert speedups.encode_raw(item) == original(item)
    for item in (b"\x00", b"\x7f", b"\x80", bytearray(b"ab"), [bytearray(b"\x01"), b""], [[], [[]]]):
        assert speedups.encode_raw(item) == original(item)
    for bad in ("text", 5, [1], None, [b"a", object()]):
        with pytest.raises(rlp.exceptions.EncodingError):
            speedups.encode_raw(bad)
        with pytest.raises(rlp.exceptions.EncodingError):
            original(bad)


# --- copies ------------------------------------------------------------------------------------


def test_copies_of_headers_and_accounts_match_deep_copies() -> None:
    header = PouwBlockHeader(difficulty=1000, block_number=7, gas_limit=30_000_000, timestamp=5,
                             extra_data=b"x", base_fee_per_gas=7)
    for changes in ({}, {"gas_used": 21_000}, {"extra_data": b"new", "timestamp": 9}):
        fast = header.copy(**changes)
        slow = speedups._original_copy(header, **changes)
        assert fast == slow and rlp.encode(fast) == rlp.encode(slow) and type(fast) is type(slow)
    account = Account(3, 10**18)
    assert account.copy(balance=5) == Account(3, 5)
    assert account.copy() == account and account.copy() is not account
    with pytest.raises(TypeError):
        account.copy(no_such_field=1)
    # fields that are not ints or bytes are still deep-copied
    from eth.rlp.logs import Log

    log = Log(b"\x01" * 20, [1, 2], b"data")
    copied = log.copy()
    assert copied == log and copied.topics == log.topics
    assert copy.deepcopy(log) == copied


# --- accounts ------------------------------------------------------------------------------


ACCOUNT_EDGES = [
    Account(),
    Account(0, 0, BLANK_ROOT_HASH, EMPTY_SHA3),
    Account(1, 1),
    Account(0x7F, 0x80),
    Account(0x80, 0x7F),
    Account(0xFF, 0x100),
    Account(2**64 - 1, 2**256 - 1, b"\x00" * 32, b"\xff" * 32),
]


def test_account_codec_matches_rlp() -> None:
    accounts = ACCOUNT_EDGES + [
        Account(RANDOM.getrandbits(RANDOM.randint(0, 64)), RANDOM.getrandbits(RANDOM.randint(0, 256)),
                RANDOM.randbytes(32), RANDOM.randbytes(32))
        for _ in range(2000)
    ]
    for account in accounts:
        encoded = rlp.encode(account, sedes=Account)
        assert encode_account(account) == encoded
        assert decode_account(encoded) == account


def test_account_decoder_refuses_what_rlp_refuses() -> None:
    good = rlp.encode(Account(5, 10**18), sedes=Account)
    payload = good[2:]  # nonce 0x05, then the balance and the two hashes

    def listed(items: bytes) -> bytes:
        return b"\xf8" + bytes((len(items),)) + items

    bad = [
        good[:-1],  # short
        good + b"\x00",  # trailing byte
        b"\xf8" + bytes((len(payload) + 1,)) + payload + b"\x00",  # an extra item's byte inside
        listed(b"\x81\x05" + payload[1:]),  # non-minimal integer (0x05 written as 0x8105)
        listed(b"\x82\x00\x05" + payload[1:]),  # leading zero
        listed(payload[:-1]),  # a 31-byte code hash
        b"\xf8\x10" + payload[:16],  # long form for a short list
        b"",
        b"\xc0",
    ]
    for encoded in bad:
        with pytest.raises(rlp.exceptions.RLPException) as expected:
            rlp.decode(encoded, sedes=Account)
        with pytest.raises(expected.type):
            decode_account(encoded)


def test_account_encoder_refuses_what_rlp_refuses() -> None:
    for fields in ((-1, 0), (0, -5)):
        account = Account.__new__(Account)
        rlp.Serializable.__init__(account, *fields, BLANK_ROOT_HASH, EMPTY_SHA3)
        with pytest.raises(rlp.exceptions.ObjectSerializationError):
            encode_account(account)
        with pytest.raises(rlp.exceptions.ObjectSerializationError):
            rlp.encode(account, sedes=Account)


# --- accounts recorded by state root -------------------------------------------------------------


def test_blocks_built_with_recorded_accounts_import_where_nothing_is_recorded(monkeypatch) -> None:
    """The strongest check of the record: a chain builds blocks of creations, calls,
    reverts, out-of-gas failures, empty-account touches (EIP-161 deletes them) and a
    create-and-self-destruct, reading accounts from the records of earlier roots; its
    own imports trust that execution. A second chain, with records turned off, executes
    every block again and must reach the same state roots (import compares them)."""
    from chain.account_db import KNOWN_ACCOUNTS
    from tests.chain.helpers import (
        DEV_KEYS, STORAGE_INIT, contract_address, mine, open_chain, store_call,
    )
    from devnet.kit.accounts import address_of
    from devnet.kit.transactions import sign_tx, transfer

    KNOWN_ACCOUNTS.clear()
    builder = open_chain()
    keys = DEV_KEYS[:3]
    nonces = {key: 0 for key in keys}

    def next_nonce(key: object) -> int:
        nonces[key] += 1
        return nonces[key] - 1

    deployer = keys[0]
    contract = contract_address(address_of(deployer), 0)
    blocks = [mine(builder, [sign_tx(deployer, next_nonce(deployer), None, data=STORAGE_INIT, gas=200_000)])]
    revert = bytes.fromhex("60006000fd")  # initcode that reverts: the creation fails, the nonce moves
    # initcode: SELFDESTRUCT to a fresh beneficiary in the creating transaction (EIP-6780: deleted)
    self_destruct = bytes.fromhex("73" + "ab" * 20 + "ff")
    for round_ in range(12):
        txs = []
        for i, key in enumerate(keys):
            pick = (round_ + i) % 6
            if pick == 0:
                txs.append(transfer(key, next_nonce(key), bytes([0x50 + round_]) * 20, value=round_ + 1))
            elif pick == 1:  # zero value to a fresh account: touched, empty, deleted
                txs.append(transfer(key, next_nonce(key), bytes([0x70 + round_]) * 20, value=0))
            elif pick == 2:
                txs.append(store_call(key, next_nonce(key), contract, round_ * 7 + i))
            elif pick == 3:
                txs.append(sign_tx(key, next_nonce(key), None, data=revert, gas=100_000))
            elif pick == 4:
                # intrinsic gas 21,512: enough to start, runs out of gas at the SSTORE
                txs.append(sign_tx(key, next_nonce(key), contract, data=b"\x01" * 32, gas=21_600))
            else:
                txs.append(sign_tx(key, next_nonce(key), None, data=self_destruct, value=5, gas=100_000))
        txs.append(transfer(keys[round_ % 3], next_nonce(keys[round_ % 3]), address_of(keys[(round_ + 1) % 3]), 10**15))
        blocks.append(mine(builder, txs))
    assert KNOWN_ACCOUNTS.at(builder.head().state_root)  # the builder did use records

    monkeypatch.setattr(KNOWN_ACCOUNTS, "roots", 0)
    KNOWN_ACCOUNTS.clear()
    importer = open_chain()
    for block in blocks:
        importer.import_block(block)
        assert KNOWN_ACCOUNTS.at(block.header.state_root) is None
    assert importer.head() == builder.head()
    assert importer.reader_at().get_storage(contract, 0) == builder.reader_at().get_storage(contract, 0) != 0


def test_block_transaction_checks_are_remembered_only_under_the_same_limits() -> None:
    import dataclasses

    from chain.chain import validate_block_transaction
    from chain.errors import InvalidBlockTransaction, OversizedBlock
    from devnet.kit.accounts import ALICE
    from devnet.kit.transactions import transfer
    from tests.chain.helpers import dev_genesis

    genesis = dev_genesis()
    tx = transfer(ALICE, 0, b"\x22" * 20)
    validate_block_transaction(0, tx, genesis)
    validate_block_transaction(0, tx, genesis)  # remembered: passes again
    with pytest.raises(OversizedBlock):
        validate_block_transaction(0, tx, dataclasses.replace(genesis, max_transaction_bytes=50))
    with pytest.raises(InvalidBlockTransaction):
        validate_block_transaction(0, tx, dataclasses.replace(genesis, chain_id=genesis.chain_id + 1))
    validate_block_transaction(0, tx, genesis)


# --- type-2 transaction decoding -----------------------------------------------------------------


def test_dynamic_fee_decoding_matches_the_library_and_refuses_what_it_refuses() -> None:
    from eth.vm.forks.london.transactions import DynamicFeeTransaction
    from eth_account import Account as EthAccount
    from eth_utils import to_checksum_address

    from devnet.kit.accounts import DEV_KEYS_HEX

    original = speedups._original_dynamic_fee_decode
    payloads = []
    for i in range(400):
        fields = {
            "type": 2, "chainId": RANDOM.choice([1, 1337, 2**64]), "nonce": RANDOM.choice([0, 1, 127, 128, 2**40]),
            "value": RANDOM.choice([0, 1, 10**18]), "gas": RANDOM.choice([21_000, 10**6]),
            "maxFeePerGas": RANDOM.choice([0, 1, 2 * 10**10]), "maxPriorityFeePerGas": 0,
            "data": RANDOM.randbytes(RANDOM.choice([0, 1, 2, 60, 300])),
        }
        if RANDOM.random() < 0.8:
            fields["to"] = to_checksum_address(RANDOM.randbytes(20))
        if RANDOM.random() < 0.2:  # the library's own path
            fields["accessList"] = [{"address": to_checksum_address(b"\x11" * 20), "storageKeys": ["0x" + "00" * 32]}]
        payloads.append(bytes(EthAccount.sign_transaction(fields, DEV_KEYS_HEX[i % 5]).raw_transaction)[1:])
    for payload in payloads:
        expected = rlp.decode(payload, sedes=DynamicFeeTransaction)
        got = speedups.decode_dynamic_fee_payload(payload)
        assert got == expected and type(got) is type(expected)
        assert [type(value) for value in got] == [type(value) for value in expected]
        assert got._cached_rlp == payload and rlp.encode(got) == payload

    items = rlp.decode(payloads[0])
    broken = [
        payloads[0] + b"\x00",  # trailing byte
        rlp.encode(items[:11]),  # a field short
        rlp.encode([b"\x00\x05"] + items[1:]),  # chain id with a leading zero
        rlp.encode(items[:5] + [b"\x11" * 19] + items[6:]),  # a 19-byte recipient
        rlp.encode(items[:1] + [[b"\x01"]] + items[2:]),  # a list where the nonce goes
        rlp.encode(items[:8] + [[b"\x11" * 20]] + items[9:]),  # a malformed access list
        b"",
    ]
    for payload in broken:  # the same error, whichever it is (a list as an integer: TypeError)
        with pytest.raises(Exception) as library_error:  # noqa: B017
            original(payload)
        with pytest.raises(library_error.type):
            speedups.decode_dynamic_fee_payload(payload)


def test_type_byte_conversions_match_eth_utils() -> None:
    import eth_utils

    for value in list(range(256)) + [256, 2**70, True, False, b"ab", bytearray(b"x")]:
        assert speedups.to_bytes(value) == eth_utils.to_bytes(value)
    assert speedups.to_bytes(hexstr="0x0102") == eth_utils.to_bytes(hexstr="0x0102")
    assert speedups.to_bytes(text="hi") == eth_utils.to_bytes(text="hi")
    for value in [0, 5, 2**300, True, b"\x01\x02"]:
        assert speedups.to_int(value) == eth_utils.to_int(value)
    assert speedups.to_int(hexstr="0x10") == 16
    with pytest.raises(TypeError):
        speedups.to_bytes(1.5)
