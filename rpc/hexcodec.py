"""Hex encoding of JSON-RPC values, strict like geth.

Quantities are "0x" + lowercase hex with no leading zeros ("0x0" for zero); data are
"0x" + an even number of hex digits. Parsers raise ``ValueError`` with a short message;
the registry adds which parameter it was.
"""
from __future__ import annotations

from eth_typing import Address, Hash32

from rpc.jsontypes import Json

_HEX = frozenset("0123456789abcdefABCDEF")
UINT256_MAX = 2**256 - 1


def quantity(value: int) -> str:
    """Encode a non-negative integer as a JSON-RPC QUANTITY."""
    return hex(value)


def data(value: bytes) -> str:
    """Encode bytes as JSON-RPC DATA."""
    return "0x" + bytes(value).hex()


def parse_quantity(value: Json, *, bits: int = 256) -> int:
    """Decode a QUANTITY ("0x1a"). geth also refuses leading zeros and empty "0x"."""
    if not isinstance(value, str):
        raise ValueError(f"expected hex-encoded quantity string, got {_kind(value)}")
    if not value.startswith(("0x", "0X")):
        raise ValueError("hex string without 0x prefix")
    digits = value[2:]
    if not digits:
        raise ValueError("hex string \"0x\"")
    if len(digits) > 1 and digits[0] == "0":
        raise ValueError("hex number with leading zero digits")
    if not _HEX.issuperset(digits):
        raise ValueError("invalid hex string")
    if len(digits) * 4 > bits + 3:
        raise ValueError(f"hex number > {bits} bits")
    number = int(digits, 16)
    if number.bit_length() > bits:
        raise ValueError(f"hex number > {bits} bits")
    return number


def parse_data(value: Json, *, size: int | None = None, max_size: int | None = None) -> bytes:
    """Decode DATA ("0xabcd"); with ``size``, exactly that many bytes."""
    if not isinstance(value, str):
        raise ValueError(f"expected hex-encoded data string, got {_kind(value)}")
    if not value.startswith(("0x", "0X")):
        raise ValueError("hex string without 0x prefix")
    digits = value[2:]
    if len(digits) % 2:
        raise ValueError("hex string of odd length")
    if not _HEX.issuperset(digits):
        raise ValueError("invalid hex string")
    raw = bytes.fromhex(digits)
    if size is not None and len(raw) != size:
        raise ValueError(f"hex string has length {len(raw) * 2}, want {size * 2}")
    if max_size is not None and len(raw) > max_size:
        raise ValueError(f"hex data longer than {max_size} bytes")
    return raw


def parse_address(value: Json) -> Address:
    """Decode a 20-byte address (checksum case is not enforced, as in geth)."""
    return Address(parse_data(value, size=20))


def parse_hash(value: Json) -> Hash32:
    """Decode a 32-byte hash."""
    return Hash32(parse_data(value, size=32))


def parse_storage_slot(value: Json) -> int:
    """A storage key: geth accepts any hex up to 32 bytes, leading zeros allowed."""
    if not isinstance(value, str):
        raise ValueError(f"expected hex string, got {_kind(value)}")
    if not value.startswith(("0x", "0X")):
        raise ValueError("hex string without 0x prefix")
    digits = value[2:] or "0"
    if len(digits) > 64 or not _HEX.issuperset(digits):
        raise ValueError("invalid storage key (want up to 32 bytes of hex)")
    return int(digits, 16)


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__
