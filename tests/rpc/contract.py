"""A tiny hand-assembled contract for RPC tests (no solc needed).

Runtime behaviour:
- empty calldata: return the uint256 in storage slot 0;
- 32 bytes of calldata ``v``: if ``v == 0`` revert with ``Error("zero")``; else store
  ``v`` in slot 0 and emit ``Set(uint256)`` (topic0 = keccak("Set(uint256)"), data = v).
"""
from __future__ import annotations

from eth_utils import keccak

SET_TOPIC = keccak(b"Set(uint256)")


def _assemble(program: list[object]) -> bytes:
    """Items: bytes (raw code), ("label", name) marks a JUMPDEST, ("push", name) pushes its offset."""
    offsets: dict[str, int] = {}
    position = 0
    for item in program:
        if isinstance(item, tuple) and item[0] == "label":
            offsets[item[1]] = position
            position += 1
        elif isinstance(item, tuple):
            position += 2
        else:
            position += len(item)  # type: ignore[arg-type]
    code = b""
    for item in program:
        if isinstance(item, tuple) and item[0] == "label":
            code += b"\x5b"
        elif isinstance(item, tuple):
            code += b"\x60" + bytes([offsets[item[1]]])
        else:
            code += item  # type: ignore[operator]
    return code


REVERT_REASON = b"zero".ljust(32, b"\x00")

RUNTIME = _assemble([
    b"\x36\x15", ("push", "get"), b"\x57",                  # CALLDATASIZE ISZERO -> get
    b"\x60\x00\x35",                                        # v = CALLDATALOAD(0)
    b"\x80\x15", ("push", "revert"), b"\x57",               # v == 0 -> revert
    b"\x80\x60\x00\x55",                                    # SSTORE(0, v)
    b"\x60\x00\x52",                                        # MSTORE(0, v)
    b"\x7f" + SET_TOPIC, b"\x60\x20\x60\x00\xa1",           # LOG1(0, 32, topic)
    b"\x00",                                                # STOP
    ("label", "get"), b"\x60\x00\x54\x60\x00\x52\x60\x20\x60\x00\xf3",  # RETURN SLOAD(0)
    ("label", "revert"),
    b"\x63\x08\xc3\x79\xa0\x60\xe0\x1b\x60\x00\x52",         # MSTORE(0, selector << 224)
    b"\x60\x20\x60\x04\x52",                                # MSTORE(4, 0x20)
    b"\x60\x04\x60\x24\x52",                                # MSTORE(36, 4)
    b"\x7f" + REVERT_REASON, b"\x60\x44\x52",               # MSTORE(68, "zero")
    b"\x60\x64\x60\x00\xfd",                                # REVERT(0, 100)
])

INIT = (
    b"\x61" + len(RUNTIME).to_bytes(2, "big") + b"\x80"
    + b"\x61" + (13).to_bytes(2, "big") + b"\x60\x00\x39\x60\x00\xf3"
) + RUNTIME


def encode_uint(value: int) -> bytes:
    return value.to_bytes(32, "big")
