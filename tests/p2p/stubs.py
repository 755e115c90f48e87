"""A stand-in for ``p2p.peer.Peer`` in unit tests of the service's parts (peer set,
gossip, blob fetch, import): it records what is sent to it, the violations scored
against it and its closing, and answers requests from a script, with no socket."""
from __future__ import annotations

import asyncio
import os
from types import SimpleNamespace
from typing import Any, Callable, Optional, Union

from p2p import messages as m
from p2p.errors import PeerUnavailable, ProtocolViolation
from p2p.peer import BoundedSet, Peer

Answer = Union[m.Message, BaseException]
Script = Callable[[str, dict[str, Any]], Answer]
"""``answer(type, body)``: the stub's reply to a request, or the error it raises."""


class StubPeer:
    """Looks like a connected peer to the parts; ``answer(type, body)`` scripts replies."""

    def __init__(
        self, name: str, *, host: str = "10.0.0.1", listen_port: int = 0, total_work: int = 0,
        answer: Optional[Script] = None,
    ) -> None:
        self.name = name
        self.node_id = os.urandom(16)
        self.remote_host = host
        self.hello = SimpleNamespace(listen_port=listen_port, client="stub")
        self.outbound = True
        self.connected_at = 0.0
        self.head, self.head_number, self.total_work = b"\x00" * 32, 0, total_work
        self.known_blocks = BoundedSet(4096)
        self.known_txs = BoundedSet(32768)
        self.closed = asyncio.Event()
        self.close_reason: Optional[str] = None
        self.sent: list[tuple[str, dict[str, Any]]] = []
        self.requests: list[tuple[str, dict[str, Any]]] = []
        self.violations: list[ProtocolViolation] = []
        self._answer = answer

    keys = Peer.keys
    """The real peer's identity keys (node id, dialable address), not a copy of the rule:
    bans by identity are what the peer-set tests are about."""

    async def send(self, type_: str, **body: Any) -> None:
        if self.closed.is_set():
            raise PeerUnavailable(f"peer {self.name} is disconnected")
        self.sent.append((type_, body))

    async def request(self, type_: str, expect: tuple[str, ...], **body: Any) -> m.Message:
        self.requests.append((type_, body))
        assert self._answer is not None, f"{self.name} was not expected to be asked {type_}"
        reply = self._answer(type_, body)
        if isinstance(reply, BaseException):
            raise reply
        assert reply.type in expect
        return reply

    async def violation(self, exc: ProtocolViolation) -> None:
        self.violations.append(exc)
        if exc.disconnect:
            await self.close(str(exc))

    async def close(self, reason: str, *, notify: bool = True) -> None:
        if not self.closed.is_set():
            self.close_reason = reason
            self.closed.set()
