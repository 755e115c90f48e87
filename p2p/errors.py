"""Errors of the p2p package: one root, and the reasons a connection is dropped."""
from __future__ import annotations

from typing import Any

from common.errors import PouwNodeError


class P2PError(PouwNodeError):
    """Root of every error raised by the p2p package."""


class HandshakeRefused(P2PError):
    """The other side is not a peer of ours (wrong chain id, genesis or protocol version,
    banned, a duplicate, ourselves). ``reason`` is sent to it before closing."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class ProtocolViolation(P2PError):
    """A peer broke the protocol. ``penalty`` is taken from its score; the connection is
    closed when ``disconnect`` is true (always, for malformed or oversized messages)."""

    def __init__(
        self, message: str, *, penalty: int, disconnect: bool = True, expected: Any = None, got: Any = None
    ) -> None:
        self.penalty = penalty
        self.disconnect = disconnect
        if expected is not None or got is not None:  # p2p shows values as they are (hex strings)
            message = f"{message} (expected {expected}, got {got})"
        super().__init__(message)
        self.expected = expected
        self.got = got


class MalformedMessage(ProtocolViolation):
    """The frame is not a message of the protocol (bad type, bad JSON, bad field)."""


class OversizedMessage(ProtocolViolation):
    """The frame is larger than its type allows."""


class PeerUnavailable(P2PError):
    """No connected peer could answer (timeout, disconnect, nobody has the data)."""


class BlobUnavailable(PeerUnavailable):
    """No peer served a blob whose bytes match the requested hash."""


class SyncAborted(P2PError):
    """The current sync round or block fetch from a peer ends: it sent an invalid block
    (and is banned), or the block cannot be imported now (a transient failure)."""


class SyncYielded(SyncAborted):
    """A sync round ends without blame: its peer serves slowly (a segment took over half
    the request timeout) and another heavier peer is connected. The peer goes behind the
    others for the next rounds, as after a failure, so one that serves a valid block per
    request just under the timeout cannot hold the syncer."""
