"""Raw transaction decoding: each static rule has its happy path and a test_invalid_*."""
from __future__ import annotations

import time

import pytest
import rlp
from eth.constants import SECPK1_N
from eth.vm.forks.prague.transactions import PragueTransactionBuilder
from eth_account import Account
from eth_keys import keys
from eth_keys.backends import CoinCurveECCBackend, NativeECCBackend, get_backend
from eth_utils import keccak

from chain.errors import ValidationError
from chain.transactions import (
    MAX_TX_SIZE,
    InvalidSignature,
    InvalidTransaction,
    InvalidTransactionFields,
    MalformedTransaction,
    OversizedTransaction,
    TipAboveFeeCap,
    UnprotectedTransaction,
    UnsupportedTransactionType,
    WrongChainId,
    decode_raw_transaction,
    ecdsa_backend_name,
    effective_tip,
    encode_transaction,
    fee_cap_and_tip,
    transaction_type,
    validate_chain_id,
)

CHAIN_ID = 1337
KEY = b"\x01" * 32
ACCOUNT = Account.from_key(KEY)
TO = "0x" + "22" * 20


def sign(**fields) -> bytes:
    base = dict(nonce=0, gas=21000, to=TO, value=1, data=b"", chainId=CHAIN_ID)
    base.update(fields)
    if "maxFeePerGas" not in base and "gasPrice" not in base:
        base["gasPrice"] = 10**9
    if base.get("chainId") is None:
        base.pop("chainId")
    return bytes(ACCOUNT.sign_transaction(base).raw_transaction)


LEGACY = sign()
ACCESS_LIST = sign(type=1, gas=30000, accessList=[{"address": "0x" + "33" * 20, "storageKeys": ["0x" + "00" * 32]}])
DYNAMIC = sign(type=2, maxFeePerGas=2 * 10**9, maxPriorityFeePerGas=10**8)


def _resign_legacy(raw: bytes, **changes) -> bytes:
    tx = rlp.decode(raw, sedes=PragueTransactionBuilder.legacy_signed)
    return rlp.encode(tx.copy(**changes))


def _resign_typed(raw: bytes, **changes) -> bytes:
    tx = PragueTransactionBuilder.decode(raw)
    return tx.copy(**changes).encode()


# ------------------------------------------------------------------- happy paths


@pytest.mark.parametrize("raw, tx_type", [(LEGACY, 0), (ACCESS_LIST, 1), (DYNAMIC, 2)])
def test_decode_supported_types(raw: bytes, tx_type: int) -> None:
    tx = decode_raw_transaction(raw)
    assert transaction_type(tx) == tx_type
    assert tx.sender == bytes.fromhex(ACCOUNT.address[2:])
    assert tx.chain_id == CHAIN_ID
    assert encode_transaction(tx) == raw
    assert tx.hash == keccak(raw)
    validate_chain_id(tx, CHAIN_ID)


def test_fees_and_effective_tip() -> None:
    legacy, dynamic = decode_raw_transaction(LEGACY), decode_raw_transaction(DYNAMIC)
    assert fee_cap_and_tip(legacy) == (10**9, 10**9)
    assert fee_cap_and_tip(dynamic) == (2 * 10**9, 10**8)
    assert effective_tip(legacy, 4 * 10**8) == 6 * 10**8
    assert effective_tip(dynamic, 10**9) == 10**8  # capped by the tip
    assert effective_tip(dynamic, 1_95 * 10**7) == 5 * 10**7  # capped by fee cap - base fee


def test_unprotected_legacy_allowed_when_asked() -> None:
    tx = decode_raw_transaction(sign(chainId=None))
    assert tx.chain_id is None
    validate_chain_id(tx, CHAIN_ID, allow_unprotected=True)


# ------------------------------------------------------------------------ refusals


def test_invalid_oversized_refused_before_decoding() -> None:
    garbage = b"\xff" * (MAX_TX_SIZE + 1)  # not even RLP: size is checked first
    with pytest.raises(OversizedTransaction) as info:
        decode_raw_transaction(garbage)
    assert (info.value.expected, info.value.got) == (MAX_TX_SIZE, MAX_TX_SIZE + 1)
    assert info.value.rpc_message == "oversized data"


def test_invalid_oversized_with_custom_limit() -> None:
    raw = sign(data=b"\x01" * 2000, gas=100_000)
    decode_raw_transaction(raw, max_size=len(raw))
    with pytest.raises(OversizedTransaction):
        decode_raw_transaction(raw, max_size=len(raw) - 1)


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\x80",  # an RLP string, neither typed nor a list
        LEGACY[:-1],  # truncated
        LEGACY + b"\x00",  # trailing byte
        DYNAMIC + b"\x00",
        ACCESS_LIST[:-3],
        b"\x02\xc0",  # typed with an empty payload list
        b"\x01",  # type byte and nothing else
        rlp.encode([b"\x00\x01"] + [b""] * 8),  # non-minimal integer
        "f86b",  # not bytes
    ],
)
def test_invalid_malformed(raw) -> None:
    with pytest.raises(MalformedTransaction):
        decode_raw_transaction(raw)


@pytest.mark.parametrize("type_byte", [0, 3, 4, 5, 0x7F])
def test_invalid_unsupported_type(type_byte: int) -> None:
    raw = bytes([type_byte]) + rlp.encode([b""] * 14)
    with pytest.raises(UnsupportedTransactionType) as info:
        decode_raw_transaction(raw)
    assert info.value.got == type_byte
    assert info.value.rpc_message == "transaction type not supported"


def test_invalid_real_set_code_transaction_refused() -> None:
    unsigned = PragueTransactionBuilder.new_unsigned_set_code_transaction(
        chain_id=CHAIN_ID, nonce=0, max_priority_fee_per_gas=1, max_fee_per_gas=10**9,
        gas=100_000, to=b"\x22" * 20, value=0, data=b"", access_list=[],
        authorization_list=[dict(chain_id=CHAIN_ID, address=b"\x33" * 20, nonce=1, y_parity=0, r=1, s=1)],
    )
    raw = unsigned.as_signed_transaction(keys.PrivateKey(KEY)).encode()
    assert raw[0] == 4
    with pytest.raises(UnsupportedTransactionType):
        decode_raw_transaction(raw)


def test_invalid_high_s_legacy() -> None:
    tx = rlp.decode(LEGACY, sedes=PragueTransactionBuilder.legacy_signed)
    # (r, n - s) with the other parity is the same signature reflected: valid ECDSA, refused by EIP-2
    flipped_v = tx.v + 1 if tx.v % 2 else tx.v - 1
    with pytest.raises(InvalidSignature) as info:
        decode_raw_transaction(_resign_legacy(LEGACY, s=SECPK1_N - tx.s, v=flipped_v))
    assert "high s" in str(info.value)
    assert info.value.rpc_message == "invalid sender"


def test_invalid_high_s_typed() -> None:
    tx = PragueTransactionBuilder.decode(DYNAMIC)
    with pytest.raises(InvalidSignature):
        decode_raw_transaction(_resign_typed(DYNAMIC, s=SECPK1_N - tx.s, y_parity=1 - tx.y_parity))


@pytest.mark.parametrize("change", [dict(r=0), dict(s=0), dict(r=SECPK1_N), dict(v=29), dict(v=0)])
def test_invalid_signature_values_legacy(change) -> None:
    with pytest.raises(InvalidSignature):
        decode_raw_transaction(_resign_legacy(LEGACY, **change))


def test_invalid_y_parity_typed() -> None:
    with pytest.raises(InvalidSignature):
        decode_raw_transaction(_resign_typed(DYNAMIC, y_parity=2))


def test_invalid_unrecoverable_sender() -> None:
    # r = 5 is not the x coordinate of a curve point: no public key recovers
    with pytest.raises(InvalidSignature) as info:
        decode_raw_transaction(_resign_typed(DYNAMIC, r=5))
    assert "recover" in str(info.value)


def test_tampered_transaction_recovers_another_sender() -> None:
    """A changed field keeps a valid-looking signature but moves the sender: the pool
    then sees an unknown, unfunded account. Recovery alone cannot detect tampering."""
    tx = decode_raw_transaction(_resign_typed(DYNAMIC, value=10**18))
    assert tx.sender != bytes.fromhex(ACCOUNT.address[2:])


def test_invalid_tip_above_fee_cap() -> None:
    raw = sign(type=2, maxFeePerGas=10**9, maxPriorityFeePerGas=10**9 + 1)
    with pytest.raises(TipAboveFeeCap) as info:
        decode_raw_transaction(raw)
    assert info.value.rpc_message == "max priority fee per gas higher than max fee per gas"


def test_invalid_nonce_at_uint64_max() -> None:
    with pytest.raises(InvalidTransactionFields):
        decode_raw_transaction(sign(nonce=2**64 - 1))


def test_invalid_wrong_chain_id() -> None:
    for raw in (sign(chainId=1), sign(type=2, chainId=1, maxFeePerGas=10**9, maxPriorityFeePerGas=1)):
        tx = decode_raw_transaction(raw)
        with pytest.raises(WrongChainId) as info:
            validate_chain_id(tx, CHAIN_ID)
        assert (info.value.expected, info.value.got) == (CHAIN_ID, 1)


def test_invalid_unprotected_legacy_refused_by_default() -> None:
    tx = decode_raw_transaction(sign(chainId=None))
    with pytest.raises(UnprotectedTransaction):
        validate_chain_id(tx, CHAIN_ID)


def test_errors_are_validation_errors() -> None:
    for cls in (OversizedTransaction, MalformedTransaction, InvalidSignature, WrongChainId):
        assert issubclass(cls, InvalidTransaction) and issubclass(cls, ValidationError)


# ---------------------------------------------------------------- ECDSA backend


def _recoveries_per_second(backend, n: int) -> float:
    key = keys.PrivateKey(KEY)
    hashes = [keccak(i.to_bytes(4, "big")) for i in range(n)]
    sigs = [key.sign_msg_hash(h) for h in hashes]
    start = time.perf_counter()
    for msg_hash, sig in zip(hashes, sigs):
        backend.ecdsa_recover(msg_hash, sig)
    return n / (time.perf_counter() - start)


def test_sender_recovery_uses_coincurve_and_is_fast(capsys) -> None:
    assert isinstance(get_backend(), CoinCurveECCBackend)
    assert ecdsa_backend_name() == "CoinCurveECCBackend"
    fast = _recoveries_per_second(CoinCurveECCBackend(), 400)
    slow = _recoveries_per_second(NativeECCBackend(), 10)
    with capsys.disabled():
        print(f"\nsender recovery: coincurve {fast:,.0f}/s, pure Python {slow:,.0f}/s, ratio {fast / slow:.0f}x")
    assert fast > 2000  # coincurve does ~20,000/s on a laptop core; 2,000 leaves room for CI
    assert fast > 10 * slow


def test_invalid_fuzzed_bytes_only_raise_invalid_transaction() -> None:
    """Random and mutated inputs: either a transaction or InvalidTransaction, never a
    stray exception type that would reach a user as a traceback."""
    import random

    rng = random.Random(1)
    seeds = [LEGACY, ACCESS_LIST, DYNAMIC]
    outcomes = {"ok": 0, "refused": 0}
    for i in range(3000):
        if i % 3 == 0:
            data = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200)))
        else:
            data = bytearray(rng.choice(seeds))
            for _ in range(rng.randrange(1, 4)):
                pos = rng.randrange(len(data))
                op = rng.randrange(3)
                if op == 0:
                    data[pos] = rng.randrange(256)
                elif op == 1:
                    del data[pos]
                else:
                    data.insert(pos, rng.randrange(256))
            data = bytes(data)
        try:
            decode_raw_transaction(data)
            outcomes["ok"] += 1
        except InvalidTransaction:
            outcomes["refused"] += 1
    assert outcomes["refused"] > 2000


def test_sender_recovery_matches_py_evm_for_every_type() -> None:
    """recover_sender computes the sender without eth-keys' objects: it must name the
    same account py-evm's own extraction does, for every type and signer, tampered
    transactions included (which recover some other account)."""
    from eth._utils.transactions import extract_transaction_sender

    from chain.transactions import recover_sender

    raws = []
    for i in range(60):
        key = keys.PrivateKey(keccak(i.to_bytes(4, "big")))
        account = Account.from_key(key.to_bytes())
        common = dict(nonce=i, gas=30_000, to=TO, value=i, data=bytes(i % 7))
        raws += [
            bytes(account.sign_transaction({**common, "gasPrice": 10**9}).raw_transaction),  # pre-EIP-155
            bytes(account.sign_transaction({**common, "gasPrice": 10**9, "chainId": CHAIN_ID}).raw_transaction),
            bytes(account.sign_transaction({**common, "type": 1, "gasPrice": 10**9, "chainId": CHAIN_ID,
                                            "accessList": []}).raw_transaction),
            bytes(account.sign_transaction({**common, "type": 2, "maxFeePerGas": 2 * 10**9,
                                            "maxPriorityFeePerGas": 10**8, "chainId": CHAIN_ID}).raw_transaction),
        ]
    raws.append(_resign_typed(DYNAMIC, value=10**18))
    raws.append(_resign_legacy(LEGACY, value=10**18))
    for raw in raws:
        tx = decode_raw_transaction(raw)
        fresh = PragueTransactionBuilder.decode(raw)
        assert tx.sender == extract_transaction_sender(fresh) == recover_sender(fresh)
        assert fresh.sender == tx.sender  # kept where py-evm's cached property looks


def test_invalid_non_canonical_encodings_of_every_field() -> None:
    """Each field of a typed and of a legacy transaction written in a non-canonical
    form (a single byte behind a 0x81 prefix, a short string in long form, an integer
    with a leading zero, the list in long form) is refused: a transaction has one
    encoding, so one hash."""
    def variants(item: bytes, integer: bool) -> list[bytes]:
        out = [b"\xb8" + bytes((len(item),)) + item] if len(item) < 56 else []
        if len(item) == 1 and item[0] < 0x80:
            out.append(b"\x81" + item)
        if integer and item:
            out.append(bytes((0x80 + len(item) + 1,)) + b"\x00" + item)
        return out

    def listed(payload: bytes, long_form: bool = False) -> bytes:
        if long_form or len(payload) >= 56:
            length = len(payload).to_bytes((len(payload).bit_length() + 7) // 8, "big")
            return bytes((0xF7 + len(length),)) + length + payload
        return bytes((0xC0 + len(payload),)) + payload

    typed_integers = {0, 1, 2, 3, 4, 6, 9, 10, 11}  # chain id .. value, y_parity, r, s
    legacy_integers = {0, 1, 2, 4, 6, 7, 8}  # nonce, gas price, gas, value, v, r, s
    for raw, prefix, integers in ((DYNAMIC, DYNAMIC[:1], typed_integers), (LEGACY, b"", legacy_integers)):
        body = raw[len(prefix):]
        items = rlp.decode(body)
        assert decode_raw_transaction(raw)  # the canonical one is fine
        refused = 0
        for index, item in enumerate(items):
            if not isinstance(item, bytes):
                continue
            for variant in variants(item, index in integers):
                payload = b"".join(variant if j == index else rlp.encode(x) for j, x in enumerate(items))
                with pytest.raises(InvalidTransaction):
                    decode_raw_transaction(prefix + listed(payload))
                refused += 1
        with pytest.raises(InvalidTransaction):
            decode_raw_transaction(prefix + listed(body[2:] if body[0] == 0xF8 else body[1:], long_form=True)
                                   if len(body) < 58 else prefix + body + b"\x00")
        assert refused > 15


def test_signing_message_cut_from_the_encoding_equals_py_evms() -> None:
    from chain.transactions import _signing_message

    raws = [LEGACY, ACCESS_LIST, DYNAMIC, sign(type=2, maxFeePerGas=2 * 10**9, maxPriorityFeePerGas=1, data=b"\x00" * 300)]
    raws.append(sign(type=1, gas=90_000, gasPrice=10**9, accessList=[
        {"address": "0x" + f"{i:02x}" * 20, "storageKeys": ["0x" + f"{j:02x}" * 32 for j in range(i)]} for i in range(5)]))
    for raw in raws:
        tx = PragueTransactionBuilder.decode(raw)
        assert _signing_message(tx) == tx.get_message_for_signing()
