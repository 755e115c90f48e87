"""Addresses as people type them (command-line options, configuration)."""
from __future__ import annotations

from eth_utils import is_checksum_address


def parse_address(text: str, option: str, error: type[Exception] = ValueError) -> bytes:
    """A typed address (``--coinbase``): 0x-prefixed 20-byte hex, its EIP-55 checksum
    checked when mixed case; ``error`` naming ``option`` otherwise."""
    body = text[2:] if text.startswith("0x") else ""
    if len(body) != 40 or any(c not in "0123456789abcdefABCDEF" for c in body):
        raise error(f"{option}: expected a 0x-prefixed 20-byte hex address, got {text!r}")
    if body != body.lower() and body != body.upper() and not is_checksum_address(text):
        raise error(f"{option}: mixed-case address fails its EIP-55 checksum: {text!r}")
    return bytes.fromhex(body)


__all__ = ["parse_address"]
