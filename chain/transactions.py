"""Decoding and static checks of raw signed transactions.

Everything here depends on the transaction alone, never on state, so it is the first,
cheapest stage for both the RPC (``eth_sendRawTransaction``) and the tx pool. Checks
run cheapest first: size before any parsing (a 100 MB blob must not reach the RLP
decoder), type byte, strict RLP, field ranges, signature ranges, then the one
expensive step, sender recovery (ECDSA, about 50 us with coincurve).

Accepted: legacy (type 0, EIP-155 protected unless explicitly allowed), EIP-2930
(type 1) and EIP-1559 (type 2). Refused: blob transactions (type 3; the chain has no
blob market) and set-code transactions (type 4), with :class:`UnsupportedTransactionType`.

Each refusal is an :class:`InvalidTransaction` subclass carrying ``expected``/``got``
and, as ``rpc_message``, the wording geth uses for the same refusal, so the RPC layer
can answer wallets in the words they already recognise.
"""
from __future__ import annotations

from typing import ClassVar, Optional, Tuple, Type, cast

import rlp
from coincurve import PublicKey as CoincurvePublicKey
from eth.abc import LegacyTransactionFieldsAPI, SignedTransactionAPI, TransactionBuilderAPI
from eth.constants import SECPK1_N
from eth.exceptions import PyEVMError
from eth.vm.forks.berlin.transactions import TypedTransaction
from eth.vm.forks.prague.transactions import PragueTransactionBuilder
from eth_hash.auto import keccak
from eth_keys.exceptions import BadSignature
from eth_utils.exceptions import ValidationError as EthValidationError
from rlp.codec import length_prefix

from chain.errors import ValidationError
from common.rlp_items import item_prefix

#: Largest raw transaction accepted (geth's txMaxSize is also 128 KiB).
MAX_TX_SIZE = 128 * 1024

LEGACY_TX_TYPE = 0
ACCESS_LIST_TX_TYPE = 1
DYNAMIC_FEE_TX_TYPE = 2
BLOB_TX_TYPE = 3
SET_CODE_TX_TYPE = 4
SUPPORTED_TX_TYPES: Tuple[int, ...] = (LEGACY_TX_TYPE, ACCESS_LIST_TX_TYPE, DYNAMIC_FEE_TX_TYPE)

#: py-evm's transaction classes of the fork our VM is built from (decodes types 0-4).
DEFAULT_BUILDER: Type[TransactionBuilderAPI] = PragueTransactionBuilder

UINT64_MAX = 2**64 - 1
UINT256_CEILING = 2**256
SECPK1_HALF_N = SECPK1_N // 2

# ------------------------------------------------------------------------- errors


class InvalidTransaction(ValidationError):
    """A raw transaction breaks a static rule; ``rpc_message`` is geth's wording.

    ``reason`` is the message without the expected/got suffix.
    """

    rpc_message: ClassVar[str] = "invalid transaction"

    def __init__(self, message: str, *, expected: object = None, got: object = None) -> None:
        self.reason = message
        super().__init__(message, expected=expected, got=got)


class OversizedTransaction(InvalidTransaction):
    """Raw bytes above the size limit; refused before decoding."""

    rpc_message = "oversized data"


class MalformedTransaction(InvalidTransaction):
    """Not a canonical RLP encoding of a known transaction (incl. trailing bytes)."""

    rpc_message = "rlp: invalid transaction encoding"


class UnsupportedTransactionType(InvalidTransaction):
    """A typed transaction this chain does not accept (3, 4, or unknown)."""

    rpc_message = "transaction type not supported"


class InvalidTransactionFields(InvalidTransaction):
    """A field is out of range (nonce at 2**64-1, fee above 2**256-1, tip above cap)."""

    rpc_message = "invalid transaction fields"


class TipAboveFeeCap(InvalidTransactionFields):
    """EIP-1559: max priority fee above max fee can never be paid as stated."""

    rpc_message = "max priority fee per gas higher than max fee per gas"


class InvalidSignature(InvalidTransaction):
    """v/r/s out of range, high s (EIP-2), or no sender can be recovered."""

    rpc_message = "invalid sender"


class WrongChainId(InvalidTransaction):
    """Signed for another chain: replaying it here must fail."""

    rpc_message = "invalid chain id for signer"


class UnprotectedTransaction(InvalidTransaction):
    """Legacy transaction without EIP-155 chain id, replayable on every chain."""

    rpc_message = "only replay-protected (EIP-155) transactions allowed over RPC"


# ---------------------------------------------------------------------- decoding


def decode_raw_transaction(
    raw: bytes,
    *,
    max_size: int = MAX_TX_SIZE,
    builder: Type[TransactionBuilderAPI] = DEFAULT_BUILDER,
) -> SignedTransactionAPI:
    """Decode and statically check ``raw``; the returned transaction's sender is recovered.

    Does not check the chain id (see :func:`validate_chain_id`) nor anything that
    depends on state (nonce, balance, base fee): those belong to the pool and the VM.
    """
    if not isinstance(raw, (bytes, bytearray)):
        raise MalformedTransaction("raw transaction must be bytes", expected="bytes", got=type(raw).__name__)
    raw = bytes(raw)
    if len(raw) > max_size:
        raise OversizedTransaction("transaction too large", expected=max_size, got=len(raw))
    if not raw:
        raise MalformedTransaction("empty transaction", expected="at least 1 byte", got=0)
    tx_type = _type_of(raw)
    if tx_type not in SUPPORTED_TX_TYPES:
        raise UnsupportedTransactionType(
            "transaction type not supported", expected=SUPPORTED_TX_TYPES, got=tx_type
        )
    tx = _decode_strict(raw, builder)
    _check_decoded(tx)
    return tx


def validate_transaction(tx: SignedTransactionAPI, *, max_size: int = MAX_TX_SIZE) -> bytes:
    """The same static checks for a transaction object (built locally, or from a block).

    Returns its canonical encoding, whose length the size limit applies to.
    """
    encoded = encode_transaction(tx)
    if len(encoded) > max_size:
        raise OversizedTransaction("transaction too large", expected=max_size, got=len(encoded))
    tx_type = transaction_type(tx)
    if tx_type not in SUPPORTED_TX_TYPES:
        raise UnsupportedTransactionType(
            "transaction type not supported", expected=SUPPORTED_TX_TYPES, got=tx_type
        )
    _check_decoded(tx)
    return encoded


def _check_decoded(tx: SignedTransactionAPI) -> None:
    validate_signature_values(tx)
    validate_fields(tx)
    recover_sender(tx)


def _type_of(raw: bytes) -> int:
    """EIP-2718: a first byte below 0x80 is the type; an RLP list (>= 0xc0) is legacy."""
    first = raw[0]
    if first >= 0xC0:
        return LEGACY_TX_TYPE
    if first < 0x80:
        if first == LEGACY_TX_TYPE:  # legacy has no envelope; a 0x00 type byte is invalid
            raise UnsupportedTransactionType(
                "typed envelope with type 0", expected=SUPPORTED_TX_TYPES[1:], got=first
            )
        return first
    raise MalformedTransaction(
        "neither a typed transaction nor an RLP list", expected="type < 0x80 or list", got=first
    )


def _decode_strict(raw: bytes, builder: Type[TransactionBuilderAPI]) -> SignedTransactionAPI:
    try:
        tx = builder.decode(raw)
    except (rlp.exceptions.RLPException, EthValidationError, PyEVMError, ValueError, TypeError, IndexError) as exc:
        raise MalformedTransaction(f"cannot decode transaction: {exc}") from exc
    # One transaction, one encoding (so one hash): rlp's strict mode refuses trailing
    # bytes, long forms of short lengths and single bytes behind a prefix, and the
    # integer fields refuse leading zeros (tests/chain/test_transactions.py tries every
    # such variant of every field). Comparing with a re-encoding would add nothing: the
    # decoded object keeps the bytes it was decoded from as its encoding.
    return tx


def encode_transaction(tx: SignedTransactionAPI) -> bytes:
    """The canonical network encoding (what the hash and the size limit are about)."""
    if isinstance(tx, TypedTransaction):
        return tx.encode()
    encoded: bytes = rlp.encode(tx)
    return encoded


def transaction_type(tx: SignedTransactionAPI) -> int:
    """0 for legacy, else the EIP-2718 type byte."""
    return LEGACY_TX_TYPE if tx.type_id is None else tx.type_id


def validate_fields(tx: SignedTransactionAPI) -> None:
    """Ranges py-evm's ``validate()`` does not fully cover, then ``validate()`` itself."""
    if tx.nonce >= UINT64_MAX:  # EIP-2681
        raise InvalidTransactionFields("nonce has max value", expected=f"< {UINT64_MAX}", got=tx.nonce)
    if tx.gas > UINT64_MAX:
        raise InvalidTransactionFields("gas uint64 overflow", expected=f"<= {UINT64_MAX}", got=tx.gas)
    fee_cap, tip = fee_cap_and_tip(tx)
    if fee_cap >= UINT256_CEILING:
        raise InvalidTransactionFields("max fee per gas higher than 2^256-1", got=fee_cap)
    if tip >= UINT256_CEILING:
        raise InvalidTransactionFields("max priority fee per gas higher than 2^256-1", got=tip)
    if tip > fee_cap:
        raise TipAboveFeeCap(
            "max priority fee per gas higher than max fee per gas", expected=f"<= {fee_cap}", got=tip
        )
    try:
        tx.validate()
    except EthValidationError as exc:
        raise InvalidTransactionFields(f"invalid transaction field: {exc}") from exc


def validate_signature_values(tx: SignedTransactionAPI) -> None:
    """v (or y_parity), r and s in range, and s in the lower half (EIP-2), before ECDSA."""
    if isinstance(tx, TypedTransaction):
        if tx.y_parity not in (0, 1):
            raise InvalidSignature("invalid y_parity", expected=(0, 1), got=tx.y_parity)
    else:
        v = cast(LegacyTransactionFieldsAPI, tx).v
        if v not in (27, 28) and v < 35:
            raise InvalidSignature("invalid v", expected="27, 28 or >= 35 (EIP-155)", got=v)
    if not 1 <= tx.r < SECPK1_N:
        raise InvalidSignature("invalid r", expected="1 <= r < secp256k1n", got=tx.r)
    if not 1 <= tx.s <= SECPK1_HALF_N:
        raise InvalidSignature("invalid s (high s, EIP-2)", expected="1 <= s <= secp256k1n/2", got=tx.s)


def recover_sender(tx: SignedTransactionAPI) -> bytes:
    """The sender's 20-byte address, cached on the transaction as py-evm caches it.

    The same computation as py-evm's ``extract_transaction_sender`` with eth-keys'
    coincurve backend (keccak of the signing message, secp256k1 public-key recovery with
    recovery id ``y_parity``, the last 20 bytes of the key's keccak), without the
    eth-keys objects around it: about 45 us instead of 90 per transaction, for every
    transaction the pool admits and every block body checked. Call it after
    :func:`validate_signature_values`: the ranges of v, r and s are checked there."""
    cached = tx.__dict__.get("sender")
    if cached is not None:
        return cast(bytes, cached)
    try:
        message_hash = keccak(_signing_message(tx))
        signature = tx.r.to_bytes(32, "big") + tx.s.to_bytes(32, "big") + bytes((tx.y_parity,))
        public_key = CoincurvePublicKey.from_signature_and_message(signature, message_hash, hasher=None)
    except (BadSignature, EthValidationError, ValueError, OverflowError) as exc:
        raise InvalidSignature(f"cannot recover sender: {exc}") from exc
    sender = keccak(public_key.format(compressed=False)[1:])[12:]
    tx.__dict__["sender"] = sender  # where py-evm's cached ``sender`` property keeps it
    return sender


def _signing_message(tx: SignedTransactionAPI) -> bytes:
    """What the sender signed. For a typed transaction (EIP-2718: type byte, then the
    RLP list of its fields with y_parity, r and s last) that is the type byte and the
    list of every field but those three, cut out of the transaction's own (canonical)
    encoding instead of built and encoded again; legacy ones go through py-evm (EIP-155
    adds fields). Equal to py-evm's ``get_message_for_signing`` for every type (tested)."""
    if not isinstance(tx, TypedTransaction):
        return tx.get_message_for_signing()
    encoded = tx.encode()
    try:
        is_list, prefix, length = item_prefix(encoded, 1)
        start = 1 + prefix
        if not is_list or start + length != len(encoded):
            raise ValueError("not one list after the type byte")
        ends = []
        pos = start
        while pos < len(encoded):
            _, prefix, length = item_prefix(encoded, pos)
            pos += prefix + length
            ends.append(pos)
        if pos != len(encoded) or len(ends) < 4:
            raise ValueError("not a signed transaction's fields")
    except ValueError:  # not what a decoded transaction encodes to: py-evm's way
        return tx.get_message_for_signing()
    body = encoded[start:ends[-4]]
    return encoded[:1] + length_prefix(len(body), 0xC0) + body


def fee_cap_and_tip(tx: SignedTransactionAPI) -> Tuple[int, int]:
    """(max fee per gas, max priority fee per gas); a legacy gas price is both."""
    if transaction_type(tx) in (LEGACY_TX_TYPE, ACCESS_LIST_TX_TYPE):
        return tx.gas_price, tx.gas_price
    return tx.max_fee_per_gas, tx.max_priority_fee_per_gas


def effective_tip(tx: SignedTransactionAPI, base_fee: int) -> int:
    """What the miner earns per gas at ``base_fee``; negative if not includable."""
    fee_cap, tip = fee_cap_and_tip(tx)
    return min(tip, fee_cap - base_fee)


def chain_id_of(tx: SignedTransactionAPI) -> Optional[int]:
    """The chain id signed into the transaction; None for a pre-EIP-155 legacy one."""
    return tx.chain_id


def validate_chain_id(
    tx: SignedTransactionAPI, chain_id: int, *, allow_unprotected: bool = False
) -> None:
    """Refuse transactions signed for another chain, and unprotected legacy ones.

    ``allow_unprotected`` mirrors geth's ``--rpc.allow-unprotected-txs`` (off by
    default): a pre-EIP-155 signature is valid on every chain, so accepting one lets
    anyone replay it here.
    """
    signed_for = chain_id_of(tx)
    if signed_for is None:
        if not allow_unprotected:
            raise UnprotectedTransaction(
                "legacy transaction without EIP-155 chain id", expected=chain_id, got=None
            )
        return
    if signed_for != chain_id:
        raise WrongChainId("transaction signed for another chain", expected=chain_id, got=signed_for)


def ecdsa_backend_name() -> str:
    """Name of eth-keys' active backend (coincurve is about 100x the pure-Python one)."""
    from eth_keys.backends import get_backend

    return type(get_backend()).__name__
