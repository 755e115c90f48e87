"""Errors of the useful-work engine.

Every error raised by ``pouw`` derives from :class:`PouwError`; the subclasses name what
was refused (a spec field, a state blob, a dataset) and carry the expected and found
values, so a node can answer a bad job or a lying peer with a clear message.
"""
from __future__ import annotations

from typing import Any

from common.errors import PouwNodeError


class PouwError(PouwNodeError):
    """Root of every error raised by the pouw package (expected/got: common.errors)."""


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
    """A content-addressed blob is not in the store; ``blob_hash`` names it."""

    def __init__(self, message: str, *, blob_hash: bytes | None = None, expected: Any = None, got: Any = None) -> None:
        self.blob_hash = bytes(blob_hash) if blob_hash is not None else (
            bytes(expected) if isinstance(expected, (bytes, bytearray)) else None)
        super().__init__(message, expected=expected, got=got)


class DeviceError(PouwError):
    """A requested compute device is not available (e.g. ``cuda:1`` on a CPU-only machine)."""
