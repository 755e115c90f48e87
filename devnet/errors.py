"""The devnet package's errors: one root, :class:`DevnetError`, and the kit's failures.

Every message is meant for the user as is (``pouw-devnet`` prints it on one line; a
benchmark or test shows it as the reason it stopped).
"""
from __future__ import annotations

from common.errors import PouwNodeError


class DevnetError(PouwNodeError):
    """A devnet command (or a development-kit helper) cannot proceed."""


class NodeStartError(DevnetError):
    """A node process started by the kit exited, or did not answer JSON-RPC in time."""


class UnknownBlockMode(DevnetError):
    """A block-production mode other than ``automine`` and ``interval`` was asked for."""


class WaitTimeout(DevnetError, TimeoutError):
    """A condition a kit helper waits for (nodes converging, a peer connecting) did not
    come true in time; the message names the condition."""


class NoTicket(DevnetError):
    """Honest mining found no winning ticket within its step budget (the genesis
    difficulty is too high for the kit's tiny job)."""


__all__ = ["DevnetError", "NoTicket", "NodeStartError", "UnknownBlockMode", "WaitTimeout"]
