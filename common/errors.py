"""The root of every error the node raises, and how errors carry what was expected.

Each package has one root error class (``PouwError``, ``ChainError``, ``P2PError``, ...),
derived from :class:`PouwNodeError`, so that a caller at the top (the CLI, the RPC
server) can turn any of them into one clear line, and a caller in between can catch one
package's errors without catching everything. A rule's error carries the expected and
the found values as attributes, and says both in its message.
"""
from __future__ import annotations

from typing import Any


def show(value: Any) -> str:
    """A value for an error message: bytes as 0x-hex, everything else as its repr."""
    if isinstance(value, (bytes, bytearray)):
        return "0x" + bytes(value).hex()
    return repr(value)


class PouwNodeError(Exception):
    """Root of every error raised by the node's packages.

    ``expected`` and ``got`` are kept on the exception for callers; when either is given,
    the message says both.
    """

    def __init__(self, message: str = "", *, expected: Any = None, got: Any = None) -> None:
        self.expected = expected
        self.got = got
        if expected is not None or got is not None:
            message = f"{message} (expected {show(expected)}, got {show(got)})"
        super().__init__(message)


__all__ = ["PouwNodeError", "show"]
