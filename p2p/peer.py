"""One connection to a peer: handshake, sending, requests with ids, the reader loop.

Both directions look the same once the WebSocket is open: each side sends ``hello`` at
once and reads the other's within ``handshake_timeout_s``; then messages flow both ways.
The reader never does slow work itself: requests go to a bounded per-peer queue served
by one task, notices to the service's handlers (which queue their own work), responses
to the futures waiting for them. Any violation raised while handling a message is
scored here, and closes the connection when it says so.

A peer sees its owner only through :class:`PeerHost` (the service implements it).
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Optional, Protocol, Union

import aiohttp
from aiohttp import WSMsgType, web

from p2p import messages as m
from p2p.config import P2PConfig
from p2p.errors import HandshakeRefused, MalformedMessage, P2PError, PeerUnavailable, ProtocolViolation
from p2p.scoring import PENALTY_RATE, PENALTY_TIMEOUT, TokenBucket

log = logging.getLogger("p2p.peer")

CLOSE_PROTOCOL = 4000
"""WebSocket close code for protocol violations and refusals (reason in the message)."""

WebSocket = Union[web.WebSocketResponse, aiohttp.ClientWebSocketResponse]
"""A connection's socket: accepted (inbound) or dialed (outbound); both speak alike."""


class PeerHost(Protocol):
    """What a connection needs from whoever owns it (the service): its limits, a way to
    score the peer, handlers for what arrives, and word when the connection ends."""

    @property
    def config(self) -> P2PConfig: ...

    async def penalise(self, peer: "Peer", penalty: int, reason: str) -> None:
        """Take ``penalty`` off the peer's score (banning and closing at the threshold)."""
        ...

    async def on_notice(self, peer: "Peer", msg: m.Message) -> None:
        """A notice (``new_block``, ``txs``) arrived."""
        ...

    async def serve_request(self, peer: "Peer", msg: m.Message) -> tuple[str, dict[str, Any]]:
        """The response ``(type, body)`` to a request; ProtocolViolation for a bad one."""
        ...

    def peer_closed(self, peer: "Peer") -> None:
        """The connection ended (called once, synchronously, from the reader's end)."""
        ...


@dataclass(frozen=True)
class Hello:
    """The handshake: who the peer is and how much work its chain holds."""

    protocol: int
    chain_id: int
    genesis: bytes
    head: bytes
    number: int
    total_work: int
    node_id: bytes
    listen_port: int
    """0 when the peer does not accept connections."""
    client: str

    def encode(self) -> str:
        return m.encode(
            "hello", protocol=self.protocol, chain_id=self.chain_id, genesis=m.hx(self.genesis),
            head=m.hx(self.head), number=self.number, total_work=m.qty(self.total_work),
            node_id=m.hx(self.node_id), listen_port=self.listen_port, client=self.client,
        )

    @classmethod
    def parse(cls, body: dict[str, Any]) -> "Hello":
        return cls(
            protocol=m.field_int(body, "protocol", high=2**16),
            chain_id=m.field_int(body, "chain_id"),
            genesis=m.field_hash(body, "genesis"),
            head=m.field_hash(body, "head"),
            number=m.field_int(body, "number"),
            total_work=m.field_qty(body, "total_work"),
            node_id=m.field_bytes(body, "node_id", size=16),
            listen_port=m.field_int(body, "listen_port", high=65535),
            client=m.field_str(body, "client", max_len=64),
        )


class BoundedSet:
    """The most recent ``size`` items (hashes a peer is known to have)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[bytes, None] = OrderedDict()

    def add(self, item: bytes) -> None:
        self._items[item] = None
        self._items.move_to_end(item)
        if len(self._items) > self.size:
            self._items.popitem(last=False)

    def __contains__(self, item: object) -> bool:
        return item in self._items


class Peer:
    """A live, handshaken connection."""

    def __init__(
        self,
        service: PeerHost,
        ws: WebSocket,
        hello: Hello,
        *,
        outbound: bool,
        remote_host: str,
    ) -> None:
        cfg = service.config
        self.service = service
        self.ws = ws
        self.hello = hello
        self.outbound = outbound
        self.remote_host = remote_host
        self.node_id = hello.node_id
        self.head = hello.head
        self.head_number = hello.number
        self.total_work = hello.total_work
        self.known_blocks = BoundedSet(4096)
        self.known_txs = BoundedSet(32768)
        self.known_blocks.add(hello.head)
        self.connected_at = time.monotonic()
        self._pending: dict[int, tuple[tuple[str, ...], asyncio.Future[m.Message]]] = {}
        self._next_id = 1
        self._messages = TokenBucket(cfg.messages_per_second, cfg.message_burst)
        self._requests_bucket = TokenBucket(cfg.requests_per_second, cfg.request_burst)
        self._requests: asyncio.Queue[m.Message] = asyncio.Queue(cfg.max_pending_requests)
        self._send_lock = asyncio.Lock()
        self.close_reason: Optional[str] = None
        self._reader_task: Optional[asyncio.Task[Any]] = None
        self._woken_by_close = False
        self.closed = asyncio.Event()

    # --- identity -------------------------------------------------------------------

    @property
    def keys(self) -> tuple[str, ...]:
        """Identity keys for scores and bans: node id, and dialable address if any."""
        keys = [f"node:{self.node_id.hex()}"]
        if self.hello.listen_port:
            keys.append(f"addr:{self.remote_host}:{self.hello.listen_port}")
        return tuple(keys)

    @property
    def name(self) -> str:
        port = self.hello.listen_port or "-"
        return f"{self.remote_host}:{port}/{self.node_id.hex()[:8]}"

    def __repr__(self) -> str:
        return f"<Peer {self.name} #{self.head_number}>"

    # --- sending ------------------------------------------------------------------------

    async def send(self, type_: str, **body: Any) -> None:
        if self.closed.is_set():
            raise PeerUnavailable(f"peer {self.name} is disconnected")
        frame = m.encode(type_, **body)
        try:
            async with self._send_lock:
                await self.ws.send_str(frame)
        except (ConnectionError, RuntimeError, aiohttp.ClientError) as exc:
            await self.close(f"send failed: {exc}")
            raise PeerUnavailable(f"peer {self.name}: send failed") from None

    async def request(self, type_: str, expect: tuple[str, ...], **body: Any) -> m.Message:
        """Send a request and wait for its response (``expect``: allowed response types)."""
        request_id = self._next_id
        self._next_id += 1
        future: asyncio.Future[m.Message] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = (expect, future)
        try:
            await self.send(type_, id=request_id, **body)
            closed: asyncio.Future[Any] = asyncio.ensure_future(self.closed.wait())
            try:
                waiters: set[asyncio.Future[Any]] = {future, closed}
                done, _ = await asyncio.wait(
                    waiters, timeout=self.service.config.request_timeout_s,
                    return_when=asyncio.FIRST_COMPLETED,
                )
            finally:
                closed.cancel()
            if future in done:
                return future.result()
            if self.closed.is_set():
                raise PeerUnavailable(f"peer {self.name} disconnected during {type_}")
            await self.service.penalise(self, PENALTY_TIMEOUT, f"{type_} timed out")
            raise PeerUnavailable(f"peer {self.name}: {type_} timed out")
        finally:
            self._pending.pop(request_id, None)

    # --- the reader loop ------------------------------------------------------------------

    async def run(self) -> None:
        """Read until the connection ends; always unregisters the peer at the end."""
        self._reader_task = asyncio.current_task()
        server = asyncio.create_task(self._serve_requests())
        try:
            while not self.closed.is_set():
                msg = await self.ws.receive()
                if msg.type == WSMsgType.TEXT:
                    await self._on_frame(msg.data)
                elif msg.type == WSMsgType.BINARY:
                    await self.violation(MalformedMessage("binary frames are not part of the protocol", penalty=m.PENALTY_MALFORMED))
                elif msg.type == WSMsgType.ERROR:
                    exc = self.ws.exception()
                    if "too big" in str(exc).lower() or "message size" in str(exc).lower():
                        await self.violation(
                            ProtocolViolation(f"frame over the connection limit: {exc}", penalty=m.PENALTY_OVERSIZED)
                        )
                    else:
                        await self.close(f"connection error: {exc}")
                else:  # CLOSE, CLOSING, CLOSED
                    await self.close("closed by peer")
        except asyncio.CancelledError:
            if self._woken_by_close:  # close() from another task ended the pending receive
                task = asyncio.current_task()
                if task is not None:
                    task.uncancel()
                return
            await self.close("service stopping")
            raise
        except Exception as exc:  # noqa: BLE001 - a bug in a handler must not kill the node
            log.exception("peer %s: reader failed", self.name)
            await self.close(f"internal error: {type(exc).__name__}")
        finally:
            # Synchronous on purpose: a second cancellation must not skip any of it.
            self.closed.set()
            self.service.peer_closed(self)
            for _, future in self._pending.values():
                if not future.done():
                    future.set_exception(PeerUnavailable(f"peer {self.name} disconnected"))
            if server is not asyncio.current_task():
                server.cancel()

    async def _on_frame(self, frame: str) -> None:
        try:
            if not self._messages.take():
                await self.service.penalise(self, PENALTY_RATE, "message rate exceeded")
                return
            msg = m.decode(frame, self.service.config.max_message_bytes)
            kind = msg.kind
            if kind == "response":
                self._on_response(msg)
            elif kind == "request":
                if not self._requests_bucket.take():
                    await self.service.penalise(self, PENALTY_RATE, "request rate exceeded")
                    return
                try:
                    self._requests.put_nowait(msg)
                except asyncio.QueueFull:
                    raise ProtocolViolation(
                        "too many requests in flight", penalty=m.PENALTY_UNSOLICITED,
                        expected=f"<= {self._requests.maxsize}", got="more",
                    ) from None
            elif kind == "handshake":
                raise ProtocolViolation("hello after the handshake", penalty=m.PENALTY_UNSOLICITED)
            elif msg.type == "disconnect":
                reason = m.field_str(msg.body, "reason", max_len=512)
                await self.close(f"peer disconnected: {reason}", notify=False)
            else:
                await self.service.on_notice(self, msg)
        except ProtocolViolation as exc:
            await self.violation(exc)

    def _on_response(self, msg: m.Message) -> None:
        request_id = m.field_request_id(msg.body)
        entry = self._pending.get(request_id)
        if entry is None and 0 < request_id < self._next_id:
            return  # a late answer to a request we gave up on (timeout, cancelled prefetch)
        if entry is None or msg.type not in entry[0] or entry[1].done():
            raise ProtocolViolation(f"unsolicited {msg.type} response", penalty=m.PENALTY_UNSOLICITED, got=request_id)
        entry[1].set_result(msg)

    async def _serve_requests(self) -> None:
        while True:
            msg = await self._requests.get()
            try:
                type_, body = await self.service.serve_request(self, msg)
                await self.send(type_, **body)
            except ProtocolViolation as exc:
                await self.violation(exc)
            except PeerUnavailable:
                return
            except Exception:  # noqa: BLE001 - a bug serving one request must not stop serving
                log.exception("peer %s: serving %s failed", self.name, msg.type)

    async def violation(self, exc: ProtocolViolation) -> None:
        """Score ``exc`` against this peer; close the connection when it says so."""
        log.info("peer %s: %s", self.name, exc)
        await self.service.penalise(self, exc.penalty, str(exc))
        if exc.disconnect:
            await self.close(str(exc))

    async def close(self, reason: str, *, notify: bool = True) -> None:
        """Send ``disconnect`` (best effort) and close the socket; idempotent."""
        if self.closed.is_set():
            return
        self.close_reason = reason
        self.closed.set()
        log.info("peer %s disconnected: %s", self.name, reason)
        try:
            if notify and not self.ws.closed:
                await asyncio.wait_for(self.ws.send_str(m.encode("disconnect", reason=reason[:500])), 1.0)
        except (Exception, asyncio.TimeoutError):  # noqa: BLE001 - the socket may be gone
            pass
        try:
            await asyncio.wait_for(self.ws.close(code=CLOSE_PROTOCOL, message=reason[:120].encode()), 2.0)
        except (Exception, asyncio.TimeoutError):  # noqa: BLE001
            pass
        reader = self._reader_task
        if reader is not None and reader is not asyncio.current_task() and not reader.done():
            # The reader may still wait in receive() (aiohttp does not always wake it).
            self._woken_by_close = True
            reader.cancel()


async def exchange_hello(ws: WebSocket, ours: Hello, timeout: float, max_bytes: int) -> Hello:
    """Send our hello and read theirs; HandshakeRefused if they refuse or send junk."""
    await ws.send_str(ours.encode())
    try:
        msg = await asyncio.wait_for(ws.receive(), timeout)
    except asyncio.TimeoutError:
        raise HandshakeRefused("no hello within the handshake timeout") from None
    if msg.type != WSMsgType.TEXT:
        raise HandshakeRefused(f"expected hello, got a {msg.type.name} frame")
    try:
        decoded = m.decode(msg.data, max_bytes)
        if decoded.type == "disconnect":
            raise HandshakeRefused("refused by peer: " + m.field_str(decoded.body, "reason", max_len=512))
        if decoded.type != "hello":
            raise HandshakeRefused(f"expected hello, got {decoded.type}")
        return Hello.parse(decoded.body)
    except P2PError as exc:
        if isinstance(exc, HandshakeRefused):
            raise
        raise HandshakeRefused(f"bad hello: {exc}") from None
