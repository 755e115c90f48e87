"""Signed transactions from the development keys, built with py-evm's own builder.

Blocks built by the kit (and by the tests) take py-evm transaction objects, so these
are signed with the Prague builder rather than eth-account: the object that comes back
is the one the chain decodes from the wire, and its hash is the one a node reports.
"""
from __future__ import annotations

from typing import Literal, Optional

from eth.abc import SignedTransactionAPI
from eth.vm.forks.prague.transactions import PragueTransactionBuilder
from eth_keys.datatypes import PrivateKey
from eth_typing import Address

GWEI = 10**9
ETHER = 10**18

DEFAULT_CHAIN_ID = 7357
"""``genesis/default.json``'s chain id, and so the kit's noproof and pouw genesis'."""

TxKind = Literal["eip1559", "access_list", "legacy"]


def sign_tx(
    key: PrivateKey,
    nonce: int,
    to: Optional[bytes] = None,
    value: int = 0,
    data: bytes = b"",
    gas: int = 21_000,
    *,
    chain_id: int = DEFAULT_CHAIN_ID,
    kind: TxKind = "eip1559",
    max_fee: int = 10 * GWEI,
    tip: int = 1 * GWEI,
) -> SignedTransactionAPI:
    """A signed transaction of ``kind`` "eip1559" (type 2, fee cap ``max_fee`` and
    priority fee ``tip``), "access_list" (type 1) or "legacy" (EIP-155; both priced at
    ``max_fee``); ``to=None`` creates a contract."""
    to_field = Address(b"" if to is None else bytes(to))
    signed: SignedTransactionAPI
    if kind == "eip1559":
        signed = PragueTransactionBuilder.new_unsigned_dynamic_fee_transaction(
            chain_id=chain_id, nonce=nonce, max_priority_fee_per_gas=tip, max_fee_per_gas=max_fee,
            gas=gas, to=to_field, value=value, data=data, access_list=[],
        ).as_signed_transaction(key)
    elif kind == "access_list":
        signed = PragueTransactionBuilder.new_unsigned_access_list_transaction(
            chain_id=chain_id, nonce=nonce, gas_price=max_fee, gas=gas, to=to_field,
            value=value, data=data, access_list=[],
        ).as_signed_transaction(key)
    elif kind == "legacy":
        signed = PragueTransactionBuilder.create_unsigned_transaction(
            nonce=nonce, gas_price=max_fee, gas=gas, to=to_field, value=value, data=data
        ).as_signed_transaction(key, chain_id=chain_id)
    else:
        raise ValueError(f"transaction kind: expected eip1559, access_list or legacy, got {kind!r}")
    # Re-decode with the Prague builder: py-evm's signers return older fork classes.
    return PragueTransactionBuilder.decode(signed.encode())


def transfer(
    key: PrivateKey,
    nonce: int,
    to: bytes,
    value: int = 1,
    *,
    chain_id: int = DEFAULT_CHAIN_ID,
    kind: TxKind = "eip1559",
    max_fee: int = 10 * GWEI,
    tip: int = 1 * GWEI,
) -> SignedTransactionAPI:
    """A plain value transfer of ``value`` wei from ``key`` to ``to`` (21,000 gas)."""
    return sign_tx(key, nonce, to, value, chain_id=chain_id, kind=kind, max_fee=max_fee, tip=tip)


__all__ = ["DEFAULT_CHAIN_ID", "ETHER", "GWEI", "TxKind", "sign_tx", "transfer"]
