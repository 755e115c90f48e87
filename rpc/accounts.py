"""Accounts the node signs for: the development accounts (``pouw-node run --dev-accounts``,
development genesis only), as anvil and hardhat offer them.

By default the node holds no key: ``eth_accounts`` is ``[]`` and every method below
answers "unknown account", and dApps sign on their side (``eth_sendRawTransaction``).
With ``--dev-accounts`` it holds the five public test-mnemonic keys
(``genesis/devkeys.py``) and:

* ``eth_accounts`` lists their addresses;
* ``eth_sendTransaction(tx)`` fills what is missing (nonce: the pending one; gas: the
  estimate; fees: a type-2 transaction with the suggested tip and twice the next base
  fee plus the tip, or a legacy one when ``gasPrice`` is given; the chain id), signs
  and submits it like ``eth_sendRawTransaction``;
* ``eth_signTransaction(tx)`` does the same without submitting: ``{raw, tx}``;
* ``eth_sign(address, data)``: an EIP-191 personal-message signature;
* ``eth_signTypedData_v4(address, typedData)`` (and ``eth_signTypedData``): EIP-712.

Anyone can spend from these accounts; the node refuses ``--dev-accounts`` on any
genesis but a development one (node/node.py).
"""
from __future__ import annotations

from collections.abc import Sequence

from eth_account import Account
from eth_account.messages import encode_defunct, encode_typed_data
from eth_typing import Address
from eth_utils import to_checksum_address

from rpc.backend import CallInvalid, CallRequest
from rpc.context import CallContext
from rpc.encoding import TransactionJson, transaction_json
from rpc.errors import InvalidParams, ServerError
from rpc.eth_methods import _estimate, next_base_fee, submit_raw, suggest_tip
from rpc.hexcodec import data, parse_address, parse_data
from rpc.jsontypes import Json
from rpc.params import parse_call
from rpc.registry import Param, Registry

signing = Registry()

UNKNOWN_ACCOUNT = "unknown account"
"""geth's answer when asked to sign for an address it holds no key for."""


class DevAccounts:
    """Keys the node signs with, by address."""

    def __init__(self, keys_hex: Sequence[str]) -> None:
        self._keys: dict[bytes, bytes] = {}
        for key_hex in keys_hex:
            key = bytes.fromhex(key_hex[2:] if key_hex.startswith("0x") else key_hex)
            self._keys[bytes.fromhex(Account.from_key(key).address[2:])] = key

    @property
    def addresses(self) -> list[bytes]:
        return list(self._keys)

    def key_for(self, address: bytes) -> bytes:
        key = self._keys.get(bytes(address))
        if key is None:
            raise ServerError(UNKNOWN_ACCOUNT)
        return key


def _accounts(ctx: CallContext) -> DevAccounts:
    accounts = getattr(ctx.backend, "accounts", None)
    if not isinstance(accounts, DevAccounts):
        raise ServerError(UNKNOWN_ACCOUNT)
    return accounts


@signing.method("eth_accounts")
async def account_addresses(ctx: CallContext) -> list[str]:
    """``eth_accounts``: the addresses the node signs for (checksummed), or []."""
    accounts = getattr(ctx.backend, "accounts", None)
    if not isinstance(accounts, DevAccounts):
        return []
    return [to_checksum_address(a) for a in accounts.addresses]


def _filled(ctx: CallContext, request: CallRequest) -> dict[str, object]:
    """The transaction ``request`` asks for, every field filled (see the module doc)."""
    backend = ctx.backend
    nonce = request.nonce if request.nonce is not None else backend.pending_nonce(request.sender)
    gas = request.gas
    if gas is None:
        head = backend.head_header()
        with backend.simulate(head, None) as sim:
            try:
                gas = _estimate(ctx, sim, request, head.gas_limit)
            except CallInvalid as exc:
                raise ServerError(str(exc)) from None
    tx: dict[str, object] = {
        "chainId": backend.chain_id, "nonce": nonce, "gas": gas, "value": request.value, "data": request.data,
    }
    if request.to is not None:
        tx["to"] = to_checksum_address(request.to)
    if request.gas_price is not None:
        tx["gasPrice"] = request.gas_price
    else:
        tip = request.max_priority_fee_per_gas
        if tip is None:
            tip = suggest_tip(ctx)
        max_fee = request.max_fee_per_gas
        if max_fee is None:
            max_fee = 2 * next_base_fee(backend.head_header()) + tip
        tx.update({"type": 2, "maxPriorityFeePerGas": tip, "maxFeePerGas": max_fee})
        if request.access_list:
            tx["accessList"] = [{"address": to_checksum_address(a), "storageKeys": ["0x%064x" % k for k in keys]}
                                for a, keys in request.access_list]
    return tx


def _sign(ctx: CallContext, request: CallRequest) -> bytes:
    key = _accounts(ctx).key_for(request.sender)
    tx = _filled(ctx, request)
    try:
        signed = Account.sign_transaction(tx, key)
    except (TypeError, ValueError) as exc:
        raise InvalidParams(f"cannot sign the transaction: {exc}") from None
    return bytes(signed.raw_transaction)


def _parse_sendable(value: Json) -> CallRequest:
    if not isinstance(value, dict) or value.get("from") is None:
        raise ValueError("expected a transaction object with \"from\"")
    return parse_call(value)


@signing.method("eth_sendTransaction", Param("transaction", _parse_sendable), evm=True)
def send_transaction(ctx: CallContext, request: CallRequest) -> str:
    return submit_raw(ctx, _sign(ctx, request))


@signing.method("eth_signTransaction", Param("transaction", _parse_sendable), evm=True)
def sign_transaction(ctx: CallContext, request: CallRequest) -> dict[str, object]:
    from chain.transactions import decode_raw_transaction

    raw = _sign(ctx, request)
    tx: TransactionJson = transaction_json(decode_raw_transaction(raw, max_size=len(raw)))
    return {"raw": data(raw), "tx": tx}


@signing.method("eth_sign", Param("address", parse_address), Param("data", parse_data), blocking=True)
def sign(ctx: CallContext, address: Address, message: bytes) -> str:
    key = _accounts(ctx).key_for(address)
    return data(bytes(Account.sign_message(encode_defunct(primitive=message), key).signature))


def _parse_typed(value: Json) -> dict[str, Json]:
    if isinstance(value, str):
        import json

        try:
            value = json.loads(value)
        except ValueError as exc:
            raise ValueError(f"typed data is not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ValueError("expected an EIP-712 typed data object")
    return value


def _sign_typed(ctx: CallContext, address: Address, typed: dict[str, Json]) -> str:
    key = _accounts(ctx).key_for(address)
    try:
        message = encode_typed_data(full_message=typed)
    except Exception as exc:  # noqa: BLE001 - eth_account raises a zoo of types on a malformed message
        raise InvalidParams(f"invalid typed data: {exc}") from None
    return data(bytes(Account.sign_message(message, key).signature))


@signing.method("eth_signTypedData_v4", Param("address", parse_address), Param("typedData", _parse_typed),
                blocking=True)
def sign_typed_data_v4(ctx: CallContext, address: Address, typed: dict[str, Json]) -> str:
    return _sign_typed(ctx, address, typed)


@signing.method("eth_signTypedData", Param("address", parse_address), Param("typedData", _parse_typed),
                blocking=True)
def sign_typed_data(ctx: CallContext, address: Address, typed: dict[str, Json]) -> str:
    return _sign_typed(ctx, address, typed)


__all__ = ["DevAccounts", "UNKNOWN_ACCOUNT", "account_addresses", "signing"]
