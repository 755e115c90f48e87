"""A tiny storage contract assembled by hand, so that nothing here needs a compiler.

Runtime behaviour:

- empty calldata: return the uint256 in storage slot 0;
- 32 bytes of calldata ``v``: if ``v == 0`` revert with ``Error("zero")``; else store
  ``v`` in slot 0 and emit ``Set(uint256)`` (topic0 = keccak("Set(uint256)"), data = v).

It exercises what a client reads back from a node: return data, a revert reason,
storage, a log and a contract address.
"""
from __future__ import annotations

from typing import Literal, Sequence, Union

from eth_utils import keccak

SET_TOPIC = keccak(b"Set(uint256)")
REVERT_REASON = b"zero".ljust(32, b"\x00")

Item = Union[bytes, tuple[Literal["label", "push"], str]]
"""Raw code, a ``("label", name)`` that marks a JUMPDEST, or a ``("push", name)`` that
pushes that label's offset (one byte: programs stay under 256 bytes)."""


def assemble(program: Sequence[Item]) -> bytes:
    """The bytecode of ``program``, its labels resolved."""
    offsets: dict[str, int] = {}
    position = 0
    for item in program:
        if isinstance(item, bytes):
            position += len(item)
        elif item[0] == "label":
            offsets[item[1]] = position
            position += 1
        else:
            position += 2
    code = b""
    for item in program:
        if isinstance(item, bytes):
            code += item
        elif item[0] == "label":
            code += b"\x5b"
        else:
            code += b"\x60" + bytes([offsets[item[1]]])
    return code


RUNTIME = assemble([
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
"""Creation code: CODECOPY the runtime that follows these 13 bytes, RETURN it."""


def encode_uint(value: int) -> bytes:
    """``value`` as the contract's 32-byte calldata."""
    return value.to_bytes(32, "big")


__all__ = ["INIT", "REVERT_REASON", "RUNTIME", "SET_TOPIC", "assemble", "encode_uint"]
