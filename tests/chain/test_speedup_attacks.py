"""Attacks on chain/speedups.py, chain/account_db.py and the faster transaction checks:
each replacement against the library function it replaces on adversarial inputs (same
value, same error type), and the accounts recorded by state root against the trie."""
from __future__ import annotations

import random

import pytest
import rlp
from eth._utils.transactions import extract_transaction_sender
from eth.constants import EMPTY_SHA3, SECPK1_N
from eth.rlp.accounts import Account
from eth.vm.forks.prague.transactions import PragueTransactionBuilder
from eth_hash.auto import keccak
from eth_keys import keys
from hexbytes import HexBytes
from trie import HexaryTrie
from trie.exceptions import MissingTrieNode

import chain  # noqa: F401 - installs the speedups
from chain import speedups
from tests.chain.test_speedups import hexary_root_and_nodes
from chain.account_db import KNOWN_ACCOUNTS, decode_account, encode_account
from chain.state_reader import StateReader
from chain.transactions import (
    InvalidSignature,
    InvalidTransaction,
    _signing_message,
    decode_raw_transaction,
    recover_sender,
)

RANDOM = random.Random(0xA77AC4)
KEY = keys.PrivateKey(b"\x07" * 32)
SENDER = KEY.public_key.to_canonical_address()


def _outcome(function, *args):
    """(True, value) or (False, exception type)."""
    try:
        return True, function(*args)
    except Exception as exc:  # noqa: BLE001 - compared, not swallowed
        return False, type(exc)


# --- account codec ------------------------------------------------------------------------


def test_account_decoder_refuses_a_zero_byte_integer_as_rlp_does() -> None:
    """b"\\x00" as the nonce or balance is an integer with a leading zero: rlp refuses
    it. The hand-written decoder took it for 0 (a second encoding of one account)."""
    tail = b"\xa0" + b"\x11" * 32 + b"\xa0" + b"\x22" * 32
    for nonce, balance in [(b"\x00", b"\x80"), (b"\x80", b"\x00"), (b"\x00", b"\x00"), (b"\x05", b"\x00")]:
        payload = nonce + balance + tail
        encoded = b"\xf8" + bytes((len(payload),)) + payload
        with pytest.raises(rlp.exceptions.DeserializationError):
            rlp.decode(encoded, sedes=Account)
        with pytest.raises(rlp.exceptions.DeserializationError):
            decode_account(encoded)


def test_account_codec_mutation_fuzz_against_rlp() -> None:
    samples = []
    for _ in range(300):
        nonce = RANDOM.choice([0, 1, 0x7F, 0x80, 0xFF, 0x100, 2**64 - 1, 2**256 - 1, RANDOM.getrandbits(RANDOM.randint(1, 256))])
        balance = RANDOM.choice([0, 1, 0x7F, 0x80, 2**256 - 1, RANDOM.getrandbits(RANDOM.randint(1, 256))])
        account = Account(nonce, balance, RANDOM.randbytes(32), RANDOM.choice([EMPTY_SHA3, RANDOM.randbytes(32)]))
        encoded = encode_account(account)
        assert encoded == rlp.encode(account, sedes=Account)
        assert decode_account(encoded) == account
        samples.append(encoded)
    for encoded in samples:
        for _ in range(12):
            data = bytearray(encoded)
            kind = RANDOM.randrange(4)
            position = RANDOM.randrange(len(data))
            if kind == 0:
                data[position] = RANDOM.randrange(256)
            elif kind == 1:
                del data[position]
            elif kind == 2:
                data.insert(position, RANDOM.choice([0, 0x80, 0x81, RANDOM.randrange(256)]))
            else:
                data[2] = RANDOM.choice([0x00, 0x01, 0x7F, 0x80, 0x81, 0xA0, 0xA1])
            data = bytes(data)
            if len(data) >= 2 and data[0] == 0xF8:  # keep the outer length right, to reach the fields
                data = data[:1] + bytes((min(len(data) - 2, 255),)) + data[2:]
            assert _outcome(decode_account, data) == _outcome(lambda d: rlp.decode(d, sedes=Account), data), data.hex()


# --- the decoded-node cache ---------------------------------------------------------------


def test_node_cache_does_not_pin_large_transaction_and_receipt_leaves() -> None:
    """Leaves of a transaction or receipt trie hold whole transactions or receipts:
    reading such tries (every eth_getBlockByNumber, receipt poll) must not fill the
    8,192-entry cache with megabytes per entry."""
    values = tuple(bytes((i + 1,)) * 100_000 for i in range(4))
    root, nodes = speedups.ordered_trie_root_and_nodes(values)
    reader = HexaryTrie(dict(nodes), root)
    for index, value in enumerate(values):
        assert reader[rlp.encode(index)] == value
        assert reader[rlp.encode(index)] == value  # twice: a cached copy would answer
    assert max((len(key) for key in list(speedups.NODE_CACHE._nodes)), default=0) <= speedups.NODE_CACHE_MAX_NODE_BYTES
    # state-sized nodes are still kept, and fresh copies still come back
    small = rlp.encode([b"\x20" + b"\x01" * 31, b"v" * 40])
    first = speedups.decode_node(small)
    first[1] = b"edited"
    assert speedups.decode_node(small) == rlp.decode(small)
    assert small in speedups.NODE_CACHE._nodes


def test_decode_node_and_nibbles_match_the_library_on_malformed_nodes() -> None:
    import trie.utils.nibbles as lib_nibbles

    original_decode = rlp.decode
    for _ in range(2000):
        data = RANDOM.randbytes(RANDOM.randint(0, 40))
        if RANDOM.random() < 0.5:
            data = rlp.encode([RANDOM.randbytes(RANDOM.randint(0, 33)) for _ in range(RANDOM.choice([2, 17]))])
            if RANDOM.random() < 0.5:
                data = data[:-1] if RANDOM.random() < 0.5 else data + b"\x00"
        expected = _outcome(lambda d: b"" if d == b"" else original_decode(d), data)
        assert _outcome(speedups.decode_node, data) == expected
        assert _outcome(speedups.decode_node, data) == expected  # cached the second time
    original_bytes_to_nibbles = lambda value: tuple(n for byte in value for n in divmod(byte, 16))  # noqa: E731
    for _ in range(2000):
        value = RANDOM.randbytes(RANDOM.randint(0, 6))
        assert speedups.bytes_to_nibbles(value) == original_bytes_to_nibbles(value)
        got = _outcome(speedups.decode_nibbles, value)
        flag_source = _outcome(lib_nibbles.bytes_to_nibbles, value)
        assert flag_source[0] and flag_source[1] == original_bytes_to_nibbles(value)
        if not value:
            assert got == (False, IndexError)
            continue
        nibbles = original_bytes_to_nibbles(value)
        flag = nibbles[0]
        raw = nibbles[1:] if flag in (1, 3) else nibbles[2:]
        assert got == (True, raw + (16,) if flag in (2, 3) else raw)


# --- ordered tries --------------------------------------------------------------------------


@pytest.mark.parametrize("count", [1, 2, 15, 16, 17, 127, 128, 129, 130, 256, 257, 1100])
def test_ordered_trie_identical_and_boundary_values(count: int) -> None:
    """Identical values give identical subtrees (the same node under two parents) and
    values of 0/1/31/32/33/55/56 bytes straddle embedding and the long RLP forms."""
    for value in [b"\x00", b"\x7f", b"\x80", b"x" * 31, b"y" * 32, b"z" * 33, b"w" * 55, b"v" * 56]:
        values = (value,) * count
        assert speedups.ordered_trie_root_and_nodes(values) == hexary_root_and_nodes(values)
    mixed = tuple(RANDOM.choice([b"", b"\x01", b"a" * 30, b"b" * 60]) for _ in range(count))
    assert speedups.ordered_trie_root_and_nodes(mixed) == hexary_root_and_nodes(mixed)


# --- plain RLP encoding and copies ----------------------------------------------------------


def _random_item(depth: int = 0) -> object:
    pick = RANDOM.randrange(8 if depth < 3 else 5)
    if pick == 0:
        return RANDOM.randbytes(RANDOM.choice([0, 1, 55, 56, 300]))
    if pick == 1:
        return bytes((RANDOM.randrange(256),))
    if pick == 2:
        return bytearray(RANDOM.randbytes(RANDOM.choice([0, 1, 2, 60])))
    if pick == 3:
        return HexBytes(RANDOM.randbytes(RANDOM.choice([1, 2, 60])))
    if pick == 4:
        return RANDOM.choice([1, "s", None, True, 1.5, b"\x00"])
    items = [_random_item(depth + 1) for _ in range(RANDOM.choice([0, 1, 3, 30]))]
    return tuple(items) if pick == 5 else items


def test_encode_raw_matches_the_library_on_odd_types() -> None:
    for _ in range(1500):
        item = _random_item()
        new = _outcome(speedups.encode_raw, item)
        old = _outcome(speedups._original_encode_raw, item)
        assert new == old
        if new[0]:
            assert type(new[1]) is type(old[1])


def test_fast_copy_matches_the_original() -> None:
    from eth.vm.forks.berlin.transactions import AccessListTransaction

    tx = AccessListTransaction(
        1, 2, 3, 4, b"\x11" * 20, 5, b"data", ((b"\x22" * 20, (1, 2)),), 0, 6, 7,
    )
    account = Account(1, 2, b"\x33" * 32, EMPTY_SHA3)
    cases = [
        (account, (), {}), (account, (9,), {}), (account, (), {"balance": 10}), (account, (), {"bogus": 1}),
        (account, (1, 2, 3, 4, 5), {}), (account, (1,), {"nonce": 2}),
        (tx, (), {}), (tx, (), {"access_list": ()}), (tx, (), {"data": b""}),
    ]
    for obj, args, kwargs in cases:
        new = _outcome(lambda: speedups.fast_copy(obj, *args, **kwargs))
        old = _outcome(lambda: speedups._original_copy(obj, *args, **kwargs))
        assert new == old, (args, kwargs)
        if new[0]:
            assert type(new[1]) is type(old[1]) and new[1] is not obj
            assert _outcome(rlp.encode, new[1]) == _outcome(rlp.encode, old[1])


# --- type-2 decoding --------------------------------------------------------------------------


def _dynamic_payload(**changes: object) -> list:
    fields = dict(chain_id=7357, nonce=3, max_priority_fee_per_gas=10**9, max_fee_per_gas=2 * 10**10, gas=50_000,
                  to=b"\x44" * 20, value=10**18, data=b"\x01\x02", access_list=[])
    fields.update(changes)
    unsigned = PragueTransactionBuilder.new_unsigned_dynamic_fee_transaction(**fields)
    return rlp.decode(unsigned.as_signed_transaction(KEY).encode()[1:])


def test_dynamic_fee_decoder_structural_fuzz_against_the_library() -> None:
    original = speedups._original_dynamic_fee_decode
    bases = [_dynamic_payload(), _dynamic_payload(to=b"", data=b""), _dynamic_payload(chain_id=2**300, nonce=0)]
    replacements = [b"", b"\x00", b"\x01", b"\x7f", b"\x80", b"\x00\x01", b"\x01\x00", b"\xff" * 32, b"\x01" + b"\x00" * 32,
                    b"\x11" * 19, b"\x11" * 20, b"\x11" * 21, [], [b""], [[b"\x11" * 20, []]], [[b"\x11" * 20, [b"\x00" * 32]]],
                    [[b"", []]], [[b"\x11" * 20, [b"\x01"]]], [[b"\x11" * 20]], [[]]]
    payloads = []
    for base in bases:
        payloads.append(rlp.encode(base))
        for index in range(12):
            for replacement in replacements:
                payloads.append(rlp.encode(base[:index] + [replacement] + base[index + 1:]))
        payloads += [rlp.encode(base[:11]), rlp.encode(base + [b""]), rlp.encode(base) + b"\x00", rlp.encode(base)[:-1]]
    for payload in payloads:
        new = _outcome(speedups.decode_dynamic_fee_payload, payload)
        old = _outcome(original, payload)
        assert new[0] == old[0], payload.hex()
        if not new[0]:
            assert new[1] is old[1], payload.hex()
            continue
        got, expected = new[1], old[1]
        assert got == expected and type(got) is type(expected)
        assert [type(v) for v in got] == [type(v) for v in expected]
        assert rlp.encode(got) == rlp.encode(expected) == payload
        assert got.get_message_for_signing() == expected.get_message_for_signing()


# --- signing message and sender recovery -------------------------------------------------------


def _random_signed(kind: str) -> object:
    to = RANDOM.choice([b"", b"\x55" * 20])
    data = RANDOM.randbytes(RANDOM.choice([0, 1, 40, 56, 300, 70_000]))
    access_list = [(RANDOM.randbytes(20), tuple(RANDOM.getrandbits(256) for _ in range(RANDOM.randint(0, 3))))
                   for _ in range(RANDOM.choice([0, 0, 1, 4]))]
    big = RANDOM.choice([0, 1, 127, 128, 2**64 - 2, 2**255])
    if kind == "legacy":
        unsigned = PragueTransactionBuilder.create_unsigned_transaction(
            nonce=RANDOM.choice([0, 5, 2**40]), gas_price=big, gas=5 * 10**6, to=to, value=big, data=data)
        return unsigned.as_signed_transaction(KEY, chain_id=RANDOM.choice([1, 7357, 2**40]))
    if kind == "access_list":
        unsigned = PragueTransactionBuilder.new_unsigned_access_list_transaction(
            chain_id=RANDOM.choice([1, 7357, 2**64]), nonce=3, gas_price=big, gas=5 * 10**6, to=to, value=big, data=data,
            access_list=access_list)
    else:
        unsigned = PragueTransactionBuilder.new_unsigned_dynamic_fee_transaction(
            chain_id=RANDOM.choice([1, 7357, 2**64]), nonce=3, max_priority_fee_per_gas=big, max_fee_per_gas=big,
            gas=5 * 10**6, to=to, value=big, data=data, access_list=access_list)
    return unsigned.as_signed_transaction(KEY)


def _library_sender(tx: object) -> tuple[bool, object]:
    try:
        return True, extract_transaction_sender(tx)
    except Exception:  # noqa: BLE001 - any refusal
        return False, None


def test_signing_message_and_sender_recovery_match_py_evm_on_random_and_tampered_signatures() -> None:
    half_n = SECPK1_N // 2
    for round_ in range(120):
        kind = ("legacy", "access_list", "dynamic")[round_ % 3]
        signed = _random_signed(kind)
        raw = signed.encode() if kind != "legacy" else rlp.encode(signed)
        tx = PragueTransactionBuilder.decode(raw)
        assert _signing_message(tx) == tx.get_message_for_signing()
        if tx.s <= half_n:
            assert recover_sender(PragueTransactionBuilder.decode(raw)) == SENDER
        # tampered: other r, s (in the ranges validate_signature_values lets through), parity
        for _ in range(3):
            changes = {"r": RANDOM.choice([1, 2, SECPK1_N - 1, RANDOM.randrange(1, SECPK1_N)]),
                       "s": RANDOM.choice([1, half_n, RANDOM.randrange(1, half_n + 1)])}
            if kind == "legacy":
                changes["v"] = tx.v ^ 1  # the other parity, same chain id
            else:
                changes["y_parity"] = RANDOM.choice([0, 1])
            tampered_raw = tx.copy(**changes).encode() if kind != "legacy" else rlp.encode(tx.copy(**changes))
            library = _library_sender(PragueTransactionBuilder.decode(tampered_raw))
            fresh = PragueTransactionBuilder.decode(tampered_raw)
            assert _signing_message(fresh) == fresh.get_message_for_signing()
            try:
                ours = True, recover_sender(fresh)
            except InvalidSignature:
                ours = False, None
            assert ours == library


def test_decode_raw_transaction_sender_equals_the_library_and_tampering_is_refused_or_moves_the_sender() -> None:
    for round_ in range(30):
        kind = ("legacy", "access_list", "dynamic")[round_ % 3]
        signed = _random_signed(kind)
        raw = signed.encode() if kind != "legacy" else rlp.encode(signed)
        if signed.s > SECPK1_N // 2 or len(raw) > 128 * 1024:
            continue
        tx = decode_raw_transaction(raw)
        assert tx.sender == SENDER == extract_transaction_sender(PragueTransactionBuilder.decode(raw))
        # flip one byte of the data: the sender recovered changes (or nothing recovers)
        index = len(raw) - 70
        flipped = raw[:index] + bytes((raw[index] ^ 1,)) + raw[index + 1:]
        try:
            other = decode_raw_transaction(flipped)
        except InvalidTransaction:
            continue
        assert other.sender != SENDER
        assert other.sender == extract_transaction_sender(PragueTransactionBuilder.decode(flipped))


# --- accounts recorded by state root ------------------------------------------------------------


def _check_records_against_the_trie(db: object) -> int:
    """Every account recorded for every root that ``db`` holds is what the trie holds."""
    checked = 0
    for root, accounts in list(KNOWN_ACCOUNTS._by_root.items()):
        state = HexaryTrie(db, root)
        for address, encoded in accounts.items():
            try:
                actual = state.get(keccak(address))
            except MissingTrieNode:
                break  # a root this database does not hold (a discarded template)
            assert actual == encoded, (root.hex(), address.hex())
            checked += 1
    return checked


def test_records_stay_true_across_reorgs_self_destructs_and_repeated_roots(monkeypatch) -> None:
    """Side branches built on an old block, an empty-account touch (deleted), a
    create-and-self-destruct, storage writes, a failed creation, the same state reached
    on two branches: after every block every record equals the trie under its root,
    and a chain executing without records imports the same blocks to the same roots."""
    from devnet.kit.accounts import address_of
    from devnet.kit.transactions import sign_tx, transfer
    from tests.chain.helpers import DEV_KEYS, STORAGE_INIT, contract_address, mine, open_chain, store_call

    KNOWN_ACCOUNTS.clear()
    builder = open_chain()
    alice, bob, carol = DEV_KEYS[:3]
    contract = contract_address(address_of(alice), 0)
    blocks = [mine(builder, [sign_tx(alice, 0, None, data=STORAGE_INIT, gas=200_000)])]
    fork_point = builder.head().hash
    self_destruct = bytes.fromhex("73" + "ab" * 20 + "ff")
    # branch A
    a1 = mine(builder, [store_call(bob, 0, contract, 5), transfer(carol, 0, b"\x61" * 20, value=0)])
    a2 = mine(builder, [sign_tx(alice, 1, None, data=self_destruct, value=7, gas=100_000),
                        sign_tx(bob, 1, None, data=bytes.fromhex("60006000fd"), gas=100_000)])
    assert _check_records_against_the_trie(builder.db) > 0
    # branch B from the fork point: different transactions, longer (a reorg)
    b1 = mine(builder, [store_call(bob, 0, contract, 6)], parent_hash=fork_point, dt=3)
    b2 = mine(builder, [transfer(carol, 0, b"\x62" * 20, value=1)], parent_hash=b1.hash)
    b3 = mine(builder, [store_call(bob, 1, contract, 5)], parent_hash=b2.hash)
    assert _check_records_against_the_trie(builder.db) > 0
    # back on branch A, which grows longer again (reorg back), reading A's records
    a3 = mine(builder, [transfer(alice, 2, address_of(bob), 10**15)], parent_hash=a2.hash)
    a4 = mine(builder, [store_call(bob, 2, contract, 9), sign_tx(carol, 1, contract, data=b"\x01" * 32, gas=21_600)],
              parent_hash=a3.hash)
    a5 = mine(builder, [], parent_hash=a4.hash)  # an empty block: coinbase only
    assert builder.head().hash == a5.hash
    assert _check_records_against_the_trie(builder.db) > 0
    # every reader at every block answers what the trie holds
    for block in [*blocks, a1, a2, b1, b2, b3, a3, a4, a5]:
        reader = StateReader(builder.db, block.header.state_root)  # fresh: consults the records
        state = HexaryTrie(builder.db, block.header.state_root)
        for address in [address_of(k) for k in (alice, bob, carol)] + [contract, b"\x61" * 20, b"\x62" * 20,
                                                                          b"\xab" * 20]:
            encoded = state.get(keccak(address))
            assert reader.account(address) == (decode_account(encoded) if encoded else Account())
    monkeypatch.setattr(KNOWN_ACCOUNTS, "roots", 0)
    KNOWN_ACCOUNTS.clear()
    importer = open_chain()
    for block in [*blocks, a1, a2, b1, b2, b3, a3, a4, a5]:
        importer.import_block(block)
    assert importer.head() == builder.head()

