"""Errors of the useful-work engine.

Every error raised by ``pouw`` derives from :class:`PouwError`; the subclasses name what
was refused (a spec field, a state blob, a dataset) and carry the expected and found
values, so a node can answer a bad job or a lying peer with a clear message.
"""
from __future__ import annotations

from typing import Any


def _show(value: Any) -> str:
    if isinstance(value, (bytes, bytearray)):
        return "0x" + bytes(value).hex()
    return repr(value)


class PouwError(Exception):
    """Root of every error raised by the pouw package."""

    def __init__(self, message: str, *, expected: Any = None, got: Any = None) -> None:
        self.expected = expected
        self.got = got
        if expected is not None or got is not None:
            message = f"{message} (expected {_show(expected)}, got {_show(got)})"
        super().__init__(message)


class SpecError(PouwError):
    """A job spec is malformed or asks for more than the limits allow.

    ``field`` names the offending field (dotted path, e.g. ``"hidden[1]"``).
    """

    def __init__(self, field: str, message: str, *, expected: Any = None, got: Any = None) -> None:
        self.field = field
        super().__init__(f"{field}: {message}", expected=expected, got=got)


class StateError(PouwError):
    """A serialised model state is corrupt, truncated or of the wrong shape for its spec."""


class DatasetError(PouwError):
    """A dataset blob is malformed, too large, or does not match its content hash."""


class BlobNotFound(PouwError):
    """A content-addressed blob is not in the store."""


class DeviceError(PouwError):
    """A requested compute device is not available (e.g. ``cuda:1`` on a CPU-only machine)."""
