"""Errors of the genesis package."""
from __future__ import annotations

from common.errors import PouwNodeError


class GenesisError(PouwNodeError):
    """The genesis file is malformed; ``field`` names the offending field."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(f"{field}: {message}")


__all__ = ["GenesisError"]
