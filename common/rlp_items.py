"""Where an RLP item starts and ends, read from its prefix, without decoding it.

For the places that walk an encoding they already trust in shape and only need its
items' boundaries: the block files of ``pouw-node import`` (node/node.py) and the signing
message of a typed transaction (chain/transactions.py). Non-canonical length prefixes
raise ``ValueError``; what the items hold is not checked.
"""
from __future__ import annotations


def item_prefix(data: bytes, pos: int) -> tuple[bool, int, int]:
    """(is_list, prefix length, payload length) of the RLP item at ``data[pos:]``."""
    if pos >= len(data):
        raise ValueError("missing item")
    b = data[pos]
    if b < 0x80:
        return False, 0, 1
    if b < 0xB8:
        return False, 1, b - 0x80
    if b < 0xC0:
        n = b - 0xB7
        return False, 1 + n, _long_length(data, pos, n)
    if b < 0xF8:
        return True, 1, b - 0xC0
    n = b - 0xF7
    return True, 1 + n, _long_length(data, pos, n)


def _long_length(data: bytes, pos: int, n: int) -> int:
    size = data[pos + 1 : pos + 1 + n]
    if len(size) < n:
        raise ValueError("truncated length prefix")
    if size[0] == 0:
        raise ValueError("non-canonical length prefix (leading zero)")
    length = int.from_bytes(size, "big")
    if length < 56:
        raise ValueError("non-canonical length prefix (long form for a short item)")
    return length
