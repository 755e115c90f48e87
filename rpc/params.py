"""Parsers of structured parameters: block ids, call objects, filter objects, overrides.

Each raises ``ValueError``/``InvalidParams`` with a short message; the registry prefixes
the parameter's index and name.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, TypeVar

from eth_typing import Address, Hash32

from rpc.backend import ZERO_ADDRESS, AccountOverride, CallRequest
from rpc.errors import InvalidParams
from rpc.hexcodec import (
    parse_address,
    parse_data,
    parse_hash,
    parse_quantity,
    parse_storage_slot,
)
from rpc.jsontypes import Json, JsonObject

BLOCK_TAGS = ("latest", "pending", "safe", "finalized", "earliest")

T = TypeVar("T")


@dataclass(frozen=True)
class BlockId:
    """A block named by tag, number, or hash (EIP-1898)."""

    tag: str | None = None
    number: int | None = None
    block_hash: Hash32 | None = None
    require_canonical: bool = False


LATEST = BlockId(tag="latest")


def parse_block_id(value: Json) -> BlockId:
    """A block tag, a number, or (EIP-1898) {"blockHash"| "blockNumber", "requireCanonical"}."""
    if isinstance(value, str):
        if value in BLOCK_TAGS:
            return BlockId(tag=value)
        if len(value) == 66:
            return BlockId(block_hash=parse_hash(value))
        return BlockId(number=parse_quantity(value, bits=64))
    if isinstance(value, dict):
        if "blockHash" in value and "blockNumber" in value:
            raise ValueError("cannot specify both blockHash and blockNumber, choose one or the other")
        if "blockHash" in value:
            require = value.get("requireCanonical", False)
            if not isinstance(require, bool):
                raise ValueError("requireCanonical must be a boolean")
            return BlockId(block_hash=parse_hash(value["blockHash"]), require_canonical=require)
        if "blockNumber" in value:
            return parse_block_number(value["blockNumber"])
        raise ValueError("block object needs blockHash or blockNumber")
    raise ValueError("expected block tag, number or hash")


def parse_block_number(value: Json) -> BlockId:
    """A block tag or number (no hash), as eth_getBlockByNumber takes."""
    if isinstance(value, str) and value in BLOCK_TAGS:
        return BlockId(tag=value)
    return BlockId(number=parse_quantity(value, bits=64))


def parse_bool(value: Json) -> bool:
    if not isinstance(value, bool):
        raise ValueError("expected boolean")
    return value


def parse_index(value: Json) -> int:
    return parse_quantity(value, bits=64)


def _optional(obj: JsonObject, key: str, parse: Callable[[Json], T]) -> T | None:
    value = obj.get(key)
    if value is None:
        return None
    try:
        return parse(value)
    except ValueError as exc:
        raise ValueError(f"{key}: {exc}") from None


def parse_call(value: Json) -> CallRequest:
    """A transaction call object (eth_call, eth_estimateGas, eth_createAccessList)."""
    if not isinstance(value, dict):
        raise ValueError("expected transaction call object")
    data = _optional(value, "data", parse_data)
    input_ = _optional(value, "input", parse_data)
    if data is not None and input_ is not None and data != input_:
        raise InvalidParams('both "data" and "input" are set and not equal. Please use "input" to pass transaction call data')
    gas_price = _optional(value, "gasPrice", parse_quantity)
    max_fee = _optional(value, "maxFeePerGas", parse_quantity)
    if gas_price is not None and (max_fee is not None or value.get("maxPriorityFeePerGas") is not None):
        raise InvalidParams("both gasPrice and (maxFeePerGas or maxPriorityFeePerGas) specified")
    access_list: list[tuple[Address, tuple[int, ...]]] = []
    raw_list = value.get("accessList")
    if raw_list is not None:
        if not isinstance(raw_list, list):
            raise ValueError("accessList: expected array")
        for entry in raw_list:
            storage_keys = entry.get("storageKeys", []) if isinstance(entry, dict) else None
            if not isinstance(entry, dict) or not isinstance(storage_keys, list):
                raise ValueError("accessList: expected {address, storageKeys}")
            access_list.append((parse_address(entry.get("address")), tuple(parse_storage_slot(k) for k in storage_keys)))
    return CallRequest(
        sender=_optional(value, "from", parse_address) or ZERO_ADDRESS,
        to=_optional(value, "to", parse_address),
        gas=_optional(value, "gas", lambda v: parse_quantity(v, bits=64)),
        gas_price=gas_price,
        max_fee_per_gas=max_fee,
        max_priority_fee_per_gas=_optional(value, "maxPriorityFeePerGas", parse_quantity),
        value=_optional(value, "value", parse_quantity) or 0,
        data=input_ if input_ is not None else (data or b""),
        nonce=_optional(value, "nonce", lambda v: parse_quantity(v, bits=64)),
        access_list=tuple(access_list),
    )


def parse_overrides(value: Json) -> dict[Address, AccountOverride]:
    """geth's state override set: {address: {balance, nonce, code, state | stateDiff}}."""
    if not isinstance(value, dict):
        raise ValueError("expected state override object")
    overrides: dict[Address, AccountOverride] = {}
    for raw_address, entry in value.items():
        address = parse_address(raw_address)
        if not isinstance(entry, dict):
            raise ValueError(f"override for {raw_address}: expected object")
        if entry.get("state") is not None and entry.get("stateDiff") is not None:
            raise ValueError(f"account {raw_address} has both 'state' and 'stateDiff'")
        overrides[address] = AccountOverride(
            balance=_optional(entry, "balance", parse_quantity),
            nonce=_optional(entry, "nonce", lambda v: parse_quantity(v, bits=64)),
            code=_optional(entry, "code", parse_data),
            state=_optional(entry, "state", _parse_slots),
            state_diff=_optional(entry, "stateDiff", _parse_slots),
        )
    return overrides


def _parse_slots(value: Json) -> dict[int, int]:
    if not isinstance(value, dict):
        raise ValueError("expected {slot: value} object")
    return {parse_storage_slot(k): int.from_bytes(parse_hash(v), "big") for k, v in value.items()}


@dataclass(frozen=True)
class FilterQuery:
    """eth_getLogs / eth_newFilter object: a range (or one block hash) plus criteria."""

    from_block: BlockId
    to_block: BlockId
    block_hash: Hash32 | None
    raw: JsonObject


def parse_filter(value: Json) -> FilterQuery:
    if not isinstance(value, dict):
        raise ValueError("expected filter object")
    block_hash = _optional(value, "blockHash", parse_hash)
    if block_hash is not None and (value.get("fromBlock") is not None or value.get("toBlock") is not None):
        raise InvalidParams("cannot specify both BlockHash and FromBlock/ToBlock, choose one or the other")
    from_block = _optional(value, "fromBlock", parse_block_number) or LATEST
    to_block = _optional(value, "toBlock", parse_block_number) or LATEST
    from rpc.filters import LogCriteria

    LogCriteria.parse(value)  # validate addresses and topics now
    return FilterQuery(from_block, to_block, block_hash, value)
