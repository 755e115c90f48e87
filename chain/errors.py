"""Errors of the chain package.

Every error the chain raises derives from :class:`ChainError`. Rules of validation have
their own subclass that carries what was expected and what was found, so callers (the
CLI, the RPC, peers) can report precisely what was wrong without parsing messages.
"""
from __future__ import annotations

from typing import Any


class ChainError(Exception):
    """Root of every error raised by the chain package."""


class ValidationError(ChainError):
    """Something offered to the chain (a block, a transaction, a file) breaks a rule.

    ``expected`` and ``got`` are kept on the exception for callers; the message says both.
    """

    def __init__(self, message: str, *, expected: Any = None, got: Any = None) -> None:
        self.expected = expected
        self.got = got
        if expected is not None or got is not None:
            message = f"{message} (expected {_show(expected)}, got {_show(got)})"
        super().__init__(message)


def _show(value: Any) -> str:
    if isinstance(value, (bytes, bytearray)):
        return "0x" + bytes(value).hex()
    return repr(value)
