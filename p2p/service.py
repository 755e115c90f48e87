"""The p2p service: listen, dial static peers, gossip, sync, serve blocks and blobs.

``P2PService(backend, config, blobstore=None)`` attaches to a node from the outside:
``backend`` is the node's :class:`rpc.backend.ChainBackend` (its chain, pool lock and
event hub). The service learns about local blocks and transactions from the event hub
(the same events the RPC layer gets) and tells it about blocks and transactions that
arrive from peers, so RPC subscriptions see them too. ``await start()`` / ``await stop()``.

What happens, in order of a connection's life:

1. handshake (``hello`` both ways): refuse another protocol version, chain id or
   genesis, ourselves, a banned peer, a duplicate, too many peers;
2. if the peer's chain holds more work than ours, sync from it (``_sync_from``):
   locator, batches of blocks with payloads, imported in order on one worker thread;
3. gossip: new heads are announced (hash, number, total work) and fetched by whoever
   lacks them; transactions are pushed to peers that have not seen them;
4. every violation costs score; invalid blocks ban at once; the connection is the only
   thing a misbehaving peer can cost us.

Besides, after new heads (debounced) the service prefetches from peers the datasets and
checkpoint states of open posted jobs that this node lacks (``prefetch_job_blobs``), so
that a job posted with its dataset on another node can be mined here.

All imports go through one single-thread executor (``_import_executor``), holding the
backend's pool lock as the node's own block producers do.
"""
from __future__ import annotations

import asyncio
import logging
import os
import random
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, NoReturn, Optional

import aiohttp
from aiohttp import web
from eth_hash.auto import keccak

from chain.errors import ChainError, InvalidBlock, InvalidTimestamp, UnknownParent, WorkBlobMissing
from p2p import messages as m
from pouw.blobstore import blob_matches, put_named
from p2p import sync
from p2p.sync import SyncProgress
from p2p.config import CLIENT_NAME, PROTOCOL_VERSION, WS_PATH, P2PConfig, PeerAddress
from p2p.errors import BlobUnavailable, HandshakeRefused, P2PError, PeerUnavailable, ProtocolViolation
from p2p.peer import Hello, Peer, exchange_hello
from p2p.scoring import (
    PENALTY_BAD_RESPONSE,
    PENALTY_BAD_TX,
    PENALTY_INVALID_BLOCK,
    PENALTY_LYING_HEAD,
    AddressStrikes,
    PeerBook,
)

log = logging.getLogger("p2p")


@dataclass(frozen=True)
class HeadInfo:
    hash: bytes
    number: int
    total_work: int


@dataclass
class SyncStats:
    """Counters for status output and benchmarks."""

    blocks_imported: int = 0
    batches: int = 0
    invalid_blocks: int = 0
    blobs_prefetched: int = 0
    prefetch_rounds: int = 0
    syncing: bool = False
    last_sync_seconds: float = 0.0


class SyncAborted(P2PError):
    """The current sync round with a peer ends (it misbehaved or went away)."""


class P2PService:
    """See the module docstring."""

    def __init__(self, backend: Any, config: P2PConfig, blobstore: Any = None, *, node_id: Optional[bytes] = None) -> None:
        self.backend = backend
        self.chain = backend.chain
        self.config = config
        self.blobstore = blobstore
        self.node_id = node_id or os.urandom(16)
        self._sync_start: Optional[int] = None  # our head when we last fell behind (eth_syncing)
        self.peers: dict[bytes, Peer] = {}
        self.book = PeerBook(config.ban_score, config.ban_seconds)
        self.addresses = AddressStrikes(
            config.address_strikes, config.address_window_s, config.ban_seconds,
            exempt={p.host for p in config.static_peers},
        )
        """Invalid blocks per remote IP, whatever node id (scoring.py); static peers exempt."""
        self.stats = SyncStats()
        self.port: Optional[int] = None
        self._import_executor = ThreadPoolExecutor(1, thread_name_prefix="p2p-import")
        self._read_executor = ThreadPoolExecutor(2, thread_name_prefix="p2p-read")
        self._runner: Optional[web.AppRunner] = None
        self._session: Optional[aiohttp.ClientSession] = None
        self._tasks: list[asyncio.Task[Any]] = []
        self._peer_tasks: set[asyncio.Task[Any]] = set()
        self._unlisten: Optional[Callable[[], None]] = None
        self._sync_wanted = asyncio.Event()
        self._announced: asyncio.Queue[tuple[Peer, bytes]] = asyncio.Queue(1024)
        self._pending_txs: list[Any] = []
        self._pending_head: Optional[bytes] = None
        self._flush_handle: Optional[asyncio.TimerHandle] = None
        self._notify_handle: Optional[asyncio.TimerHandle] = None
        self._notify_head: Optional[bytes] = None
        self._dial_node_ids: dict[PeerAddress, bytes] = {}
        self._paused: set[PeerAddress] = set()
        self._running = False
        self._blob_cache: Optional[tuple[bytes, bytes]] = None
        self._prefetch_handle: Optional[asyncio.TimerHandle] = None
        self._prefetch_task: Optional[asyncio.Task[Any]] = None
        self._prefetch_again = False
        self._blob_failures: dict[bytes, float] = {}
        """Blobs no peer served: hash -> monotonic time before which we do not ask again."""
        self.on_new_head: list[Callable[[bytes], None]] = []
        """Called (on the event loop) with the new head's hash after each import from a
        peer that moved our head, e.g. ``Miner.notify_new_head`` to abandon stale work."""
        self.on_blobs_prefetched: list[Callable[[list[bytes]], None]] = []
        """Called (on the event loop) with the hashes a prefetch round stored, e.g.
        ``Miner.notify_new_head``: a job the miner could not take up may be minable now
        (its lottery is per step, so restarting a round loses nothing)."""

    # --- lifecycle ------------------------------------------------------------------------

    async def start(self) -> "P2PService":
        """Listen (unless ``config.listen`` is off), dial static peers, start the workers."""
        loop = asyncio.get_running_loop()
        self._running = True
        self._session = aiohttp.ClientSession()
        for peer_address in self.config.static_peers:  # exempt by IP too, as inbound peers show up
            try:
                infos = await loop.getaddrinfo(peer_address.host, peer_address.port)
            except OSError:
                continue
            self.addresses.exempt.update(str(info[4][0]) for info in infos)
        if self.config.listen:
            app = web.Application()
            app.router.add_get(WS_PATH, self._handle_inbound)
            self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
            await self._runner.setup()
            site = web.TCPSite(self._runner, self.config.listen_host, self.config.listen_port)
            await site.start()
            self.port = int(self._runner.addresses[0][1])
            log.info("p2p listening on ws://%s:%d%s", self.config.listen_host, self.port, WS_PATH)
        events = getattr(self.backend, "events", None)
        if events is not None:
            self._unlisten = events.listen(loop, self._on_local_event)
        self._tasks = [
            asyncio.create_task(self._sync_loop(), name="p2p-sync"),
            asyncio.create_task(self._fetch_announced(), name="p2p-fetch"),
        ]
        for address in self.config.static_peers:
            self.add_peer(address)
        return self

    async def stop(self) -> None:
        """Close every connection and worker; waits for an import in progress."""
        self._running = False
        if self._unlisten is not None:
            self._unlisten()
        for handle in (self._flush_handle, self._notify_handle, self._prefetch_handle):
            if handle is not None:
                handle.cancel()
        tasks = self._tasks + ([self._prefetch_task] if self._prefetch_task is not None else [])
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for peer in list(self.peers.values()):
            await peer.close("node shutting down")
        for task in list(self._peer_tasks):
            task.cancel()
        await asyncio.gather(*self._peer_tasks, return_exceptions=True)
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self._import_executor.shutdown, True)
        self._read_executor.shutdown(wait=False, cancel_futures=True)

    async def __aenter__(self) -> "P2PService":
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # --- peers: dialing, admission ------------------------------------------------------

    def add_peer(self, address: PeerAddress) -> None:
        """Dial ``address`` and keep redialing it with backoff while the service runs."""
        self._paused.discard(address)
        self._spawn(self._dial_loop(address), f"p2p-dial-{address}")

    async def disconnect_address(self, address: PeerAddress) -> None:
        """Stop dialing ``address`` and drop the connection to it (partition tests)."""
        self._paused.add(address)
        node_id = self._dial_node_ids.get(address)
        for peer in list(self.peers.values()):
            same_address = peer.remote_host == address.host and peer.hello.listen_port == address.port
            if peer.node_id == node_id or same_address:
                await peer.close("disconnected by operator")

    def _spawn(self, coro: Any, name: str) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro, name=name)
        self._peer_tasks.add(task)
        task.add_done_callback(self._peer_tasks.discard)
        return task

    async def _dial_loop(self, address: PeerAddress) -> None:
        delay = self.config.reconnect_min_s
        while self._running and address not in self._paused:
            node_id = self._dial_node_ids.get(address)
            existing = self.peers.get(node_id) if node_id else None
            if existing is not None and not existing.closed.is_set():
                await existing.closed.wait()
                await asyncio.sleep(self.config.reconnect_min_s * random.uniform(0.8, 1.2))
                delay = self.config.reconnect_min_s
                continue
            try:
                peer = await self._connect(address)
                self._dial_node_ids[address] = peer.node_id
                await peer.closed.wait()
                await asyncio.sleep(self.config.reconnect_min_s * random.uniform(0.8, 1.2))
                delay = self.config.reconnect_min_s
                continue
            except HandshakeRefused as exc:
                if "duplicate" in exc.reason:
                    log.debug("peer %s: %s", address, exc.reason)
                    delay = self.config.reconnect_min_s
                else:
                    log.info("peer %s refused: %s", address, exc.reason)
            except (OSError, aiohttp.ClientError, asyncio.TimeoutError) as exc:
                log.debug("cannot reach %s: %s", address, exc)
            await asyncio.sleep(delay * random.uniform(0.8, 1.2))
            delay = min(delay * 2, self.config.reconnect_max_s)

    async def _connect(self, address: PeerAddress) -> Peer:
        assert self._session is not None
        url = f"ws://{address.host}:{address.port}{WS_PATH}"
        ws = await self._session.ws_connect(
            url, max_msg_size=self.config.max_message_bytes, heartbeat=self.config.heartbeat_s,
            timeout=aiohttp.ClientWSTimeout(ws_close=2.0), autoclose=True,
        )
        try:
            hello = await exchange_hello(ws, self._hello(), self.config.handshake_timeout_s, self.config.max_message_bytes)
            self._dial_node_ids[address] = hello.node_id  # so an inbound duplicate counts as connected
            peer = self._admit(ws, hello, outbound=True, remote_host=address.host)
        except HandshakeRefused as exc:
            await _refuse(ws, exc.reason)
            raise
        except BaseException:
            await ws.close()
            raise
        self._spawn(peer.run(), f"p2p-peer-{peer.name}")
        return peer

    async def _handle_inbound(self, request: web.Request) -> web.StreamResponse:
        remote = request.remote or "?"
        banned = self.addresses.banned(remote)
        if banned is not None:  # refused before the upgrade: costs no handshake
            return web.Response(status=403, text=f"banned: {banned}")
        ws = web.WebSocketResponse(max_msg_size=self.config.max_message_bytes, heartbeat=self.config.heartbeat_s)
        await ws.prepare(request)
        try:
            hello = await exchange_hello(ws, self._hello(), self.config.handshake_timeout_s, self.config.max_message_bytes)
            peer = self._admit(ws, hello, outbound=False, remote_host=remote)
        except HandshakeRefused as exc:
            level = logging.DEBUG if "duplicate" in exc.reason else logging.INFO
            log.log(level, "inbound from %s refused: %s", remote, exc.reason)
            await _refuse(ws, exc.reason)
            return ws
        except (ConnectionError, RuntimeError) as exc:
            log.debug("inbound from %s failed: %s", remote, exc)
            return ws
        await peer.run()
        return ws

    def _hello(self) -> Hello:
        head = self.head_info()
        return Hello(
            protocol=PROTOCOL_VERSION, chain_id=int(self.chain.genesis.chain_id),
            genesis=bytes(self.chain.genesis_hash), head=head.hash, number=head.number,
            total_work=head.total_work, node_id=self.node_id,
            listen_port=self.port or 0, client=CLIENT_NAME,
        )

    def _admit(self, ws: Any, hello: Hello, *, outbound: bool, remote_host: str) -> Peer:
        """Check the peer's hello and register it. No await: check and register are one step."""
        if hello.protocol != PROTOCOL_VERSION:
            raise HandshakeRefused(f"protocol version {hello.protocol} != ours {PROTOCOL_VERSION}")
        if hello.chain_id != self.chain.genesis.chain_id:
            raise HandshakeRefused(f"chain id {hello.chain_id} != ours {self.chain.genesis.chain_id}")
        if hello.genesis != bytes(self.chain.genesis_hash):
            raise HandshakeRefused(f"genesis {m.hx(hello.genesis)} != ours {m.hx(self.chain.genesis_hash)}")
        if hello.node_id == self.node_id:
            raise HandshakeRefused("connected to ourselves")
        if hello.listen_port and PeerAddress(remote_host, hello.listen_port) in self._paused:
            raise HandshakeRefused("not peering with this address")
        peer = Peer(self, ws, hello, outbound=outbound, remote_host=remote_host)
        reason = self.book.banned(peer.keys) or self.addresses.banned(remote_host)
        if reason is not None:
            raise HandshakeRefused(f"banned: {reason}")
        existing = self.peers.get(hello.node_id)
        if existing is not None and not existing.closed.is_set():
            # Both sides dialed each other: keep the connection dialed by the smaller
            # node id. Both ends compute the same answer, so exactly one survives.
            dialer_new = self.node_id if outbound else hello.node_id
            dialer_old = self.node_id if existing.outbound else hello.node_id
            if dialer_old <= dialer_new:
                raise HandshakeRefused("duplicate connection")
            asyncio.ensure_future(existing.close("duplicate connection (replaced)"))
        elif len(self.peers) >= self.config.max_peers:
            raise HandshakeRefused("too many peers")
        self.peers[hello.node_id] = peer
        self._peers_changed()
        log.info(
            "peer %s connected (%s): head #%d, total work %d",
            peer.name, "outbound" if outbound else "inbound", hello.number, hello.total_work,
        )
        if hello.total_work > self.head_info().total_work:
            self._sync_wanted.set()
        self._schedule_prefetch()  # the new peer may hold blobs we lack
        return peer

    def _unregister(self, peer: Peer) -> None:
        if self.peers.get(peer.node_id) is peer:
            del self.peers[peer.node_id]
            self._peers_changed()

    def _peers_changed(self) -> None:
        """Hook for the peer set changing (nothing to push: readers ask, :attr:`peer_count`)."""

    async def penalise(self, peer: Peer, penalty: int, reason: str) -> None:
        """Take ``penalty`` from the peer's score; ban and disconnect at the threshold.
        Invalid data (a penalty of an invalid block or more) also strikes its address."""
        if self.book.penalise(peer.keys, penalty, reason):
            log.warning("peer %s banned for %.0f s: %s", peer.name, self.config.ban_seconds, reason)
            await peer.close(f"banned: {reason}")
        if penalty >= PENALTY_INVALID_BLOCK:
            await self._strike_address(peer, reason)

    async def ban(self, peer: Peer, reason: str) -> None:
        """Ban the peer's identity (an invalid block), and strike its address."""
        self.book.ban(peer.keys, reason)
        log.warning("peer %s banned for %.0f s: %s", peer.name, self.config.ban_seconds, reason)
        await peer.close(f"banned: {reason}")
        await self._strike_address(peer, reason)

    async def _strike_address(self, peer: Peer, reason: str) -> None:
        """Count an expensive offence against the peer's IP address; when that bans the
        address, every connection from it goes (a new node id does not shed the ban)."""
        length = self.addresses.strike(peer.remote_host, reason)
        if length is None:
            return
        log.warning("address %s banned for %.0f s: %s", peer.remote_host, length, self.addresses.banned(peer.remote_host))
        for other in list(self.peers.values()):
            if other.remote_host == peer.remote_host:
                await other.close(f"banned: {self.addresses.banned(peer.remote_host)}")

    # --- chain access -------------------------------------------------------------------

    def head_info(self) -> HeadInfo:
        head = self.chain.head()
        return HeadInfo(bytes(head.hash), int(head.block_number), int(self.chain.score(head.hash)))

    def has_block(self, block_hash: bytes) -> bool:
        return bool(self.chain.chaindb.header_exists(block_hash))

    async def _read(self, func: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._read_executor, func, *args)

    def _import_blocking(self, block_rlp: bytes, payload: Optional[bytes]) -> Any:
        return self.chain.import_block(block_rlp, payload)  # the chain's own write lock serialises

    async def import_from(self, peer: Peer, block_rlp: bytes, payload: Optional[bytes]) -> Optional[Any]:
        """Import a block a peer sent. Returns the ImportResult, or None for a transient
        failure. UnknownParent propagates (the caller fetches ancestors). An invalid
        block bans the peer and raises SyncAborted."""
        loop = asyncio.get_running_loop()
        try:
            result = await loop.run_in_executor(self._import_executor, self._import_blocking, block_rlp, payload)
        except UnknownParent:
            raise
        except InvalidTimestamp as exc:
            if isinstance(exc.got, int) and exc.got > time.time():
                # Too far in the future for our clock: may become valid; not a lie.
                log.info("block from %s is ahead of our clock: %s", peer.name, exc)
                raise SyncAborted(str(exc)) from None
            await self._invalid(peer, exc)
        except InvalidBlock as exc:
            await self._invalid(peer, exc)
        except ChainError as exc:  # WorkVerificationUnavailable and other transient errors
            result = await self._retry_with_missing_blob(peer, exc, block_rlp, payload)
            if result is None:
                log.warning("block from %s not imported (transient): %s", peer.name, exc)
                raise SyncAborted(str(exc)) from None
        block_hash = bytes(result.imported.hash)
        peer.known_blocks.add(block_hash)
        if result.new_canonical:
            head = bytes(result.new_canonical[-1])
            self._head_moved(head)
            _notify(self.on_new_head, head, "on_new_head")
        return result

    async def _retry_with_missing_blob(self, peer: Peer, exc: ChainError, block_rlp: bytes, payload: Optional[bytes]) -> Any:
        """Verification needs a blob we lack (``WorkBlobMissing`` names it): fetch it from
        peers, then import once more (a block may need its checkpoint state and its
        dataset). None if that is not the trouble, or it fails."""
        loop = asyncio.get_running_loop()
        for _ in range(3):
            if self.blobstore is None or not isinstance(exc, WorkBlobMissing):
                return None
            try:
                await self.fetch_blob(exc.blob_hash)
            except P2PError as fetch_error:
                log.info("blob %s for a block from %s: %s", m.hx(exc.blob_hash), peer.name, fetch_error)
                return None
            try:
                return await loop.run_in_executor(self._import_executor, self._import_blocking, block_rlp, payload)
            except InvalidBlock as again:
                await self._invalid(peer, again)
            except ChainError as still:
                exc = still
        return None

    async def _invalid(self, peer: Peer, exc: InvalidBlock) -> NoReturn:
        self.stats.invalid_blocks += 1
        log.warning("invalid block from %s: %s: %s", peer.name, type(exc).__name__, exc)
        await self.ban(peer, f"invalid block: {type(exc).__name__}: {exc}")
        raise SyncAborted(str(exc))

    def _head_moved(self, head_hash: bytes) -> None:
        """Tell the node (RPC subscribers, and through the hub, our own announcer) about
        a new head, coalescing bursts (a sync moves the head once per block)."""
        self._notify_head = head_hash
        if self._notify_handle is None:
            loop = asyncio.get_running_loop()
            self._notify_handle = loop.call_later(self.config.gossip_delay_s, self._notify_now)

    def _notify_now(self) -> None:
        self._notify_handle = None
        head, self._notify_head = self._notify_head, None
        if head is None:
            return
        events = getattr(self.backend, "events", None)
        if events is not None:
            events.notify_new_head(head)
        else:
            self._on_local_event(_NewHead(head))

    # --- local events -> gossip ------------------------------------------------------------

    def _on_local_event(self, event: Any) -> None:
        """From the node's event hub (on our loop): a new head or a new pool transaction."""
        if hasattr(event, "block_hash"):
            self._pending_head = bytes(event.block_hash)
            self._schedule_prefetch()
        elif hasattr(event, "tx"):
            self._pending_txs.append(event.tx)
        else:
            return
        if self._flush_handle is None and self._running:
            loop = asyncio.get_running_loop()
            self._flush_handle = loop.call_later(self.config.gossip_delay_s, self._schedule_flush)

    def _schedule_flush(self) -> None:
        self._flush_handle = None
        asyncio.ensure_future(self._flush_gossip())

    async def _flush_gossip(self) -> None:
        head_hash, self._pending_head = self._pending_head, None
        txs, self._pending_txs = self._pending_txs, []
        if head_hash is not None:
            head = self.head_info()
            if head.hash == head_hash:
                for peer in list(self.peers.values()):
                    if head.hash not in peer.known_blocks:
                        peer.known_blocks.add(head.hash)
                        await self._send_quietly(
                            peer, "new_block", hash=m.hx(head.hash), number=head.number, total_work=m.qty(head.total_work)
                        )
        if txs:
            raws = [(bytes(tx.hash), _raw_tx(tx)) for tx in txs]
            for peer in list(self.peers.values()):
                batch: list[str] = []
                size = 0
                for tx_hash, raw in raws:
                    if tx_hash in peer.known_txs:
                        continue
                    peer.known_txs.add(tx_hash)
                    if batch and (len(batch) >= m.MAX_TXS or size + 2 * len(raw) > 400 * 1024):
                        await self._send_quietly(peer, "txs", txs=batch)
                        batch, size = [], 0
                    batch.append(m.hx(raw))
                    size += 2 * len(raw)
                if batch:
                    await self._send_quietly(peer, "txs", txs=batch)

    async def _send_quietly(self, peer: Peer, type_: str, **body: Any) -> None:
        try:
            await peer.send(type_, **body)
        except PeerUnavailable:
            pass

    # --- notices from peers ---------------------------------------------------------------

    async def on_notice(self, peer: Peer, msg: m.Message) -> None:
        if msg.type == "new_block":
            block_hash = m.field_hash(msg.body, "hash")
            number = m.field_int(msg.body, "number")
            total_work = m.field_qty(msg.body, "total_work")
            peer.known_blocks.add(block_hash)
            if total_work > peer.total_work:
                peer.head, peer.head_number, peer.total_work = block_hash, number, total_work
            if total_work > self.head_info().total_work and not self.has_block(block_hash):
                try:
                    self._announced.put_nowait((peer, block_hash))
                except asyncio.QueueFull:
                    self._sync_wanted.set()
        elif msg.type == "txs":
            raws = [m.parse_hex(v, "txs", max_size=self.chain.genesis.max_transaction_bytes)
                    for v in m.field_list(msg.body, "txs", max_len=m.MAX_TXS)]
            for raw in raws:
                peer.known_txs.add(keccak(raw))
            asyncio.ensure_future(self._add_txs(peer, raws))

    async def _add_txs(self, peer: Peer, raws: list[bytes]) -> None:
        from chain.transactions import decode_raw_transaction

        def add_all() -> int:
            bad = 0
            for raw in raws:
                try:
                    decode_raw_transaction(raw, max_size=self.chain.genesis.max_transaction_bytes)
                except Exception:  # noqa: BLE001 - typed InvalidTransaction or rlp errors
                    bad += 1
                    continue
                try:
                    self.backend.submit_raw_transaction(raw)
                except Exception as exc:  # noqa: BLE001 - rejections (known, nonce) are normal in gossip
                    log.debug("tx from %s not added: %s", peer.name, exc)
            return bad

        try:
            bad = await self._read(add_all)
        except RuntimeError:  # executor shut down
            return
        if bad:
            await self.penalise(peer, PENALTY_BAD_TX * bad, f"{bad} undecodable transactions")

    async def _fetch_announced(self) -> None:
        """Fetch announced blocks we lack; an unknown parent starts a sync."""
        while True:
            peer, block_hash = await self._announced.get()
            if peer.closed.is_set() or self.has_block(block_hash):
                continue
            try:
                reply = await peer.request("get_blocks", ("blocks",), hashes=[m.hx(block_hash)])
                entries = self._parse_entries(reply, max_len=1)
                if not entries:
                    # Reorged away on the peer, or never there: a sync round settles
                    # which (a peer that cannot back its claimed work is penalised).
                    self._sync_wanted.set()
                    continue
                block_rlp, payload = entries[0]
                if sync.header_hash_of(block_rlp) != block_hash:
                    raise ProtocolViolation("get_blocks answered with another block", penalty=PENALTY_BAD_RESPONSE)
                await self.import_from(peer, block_rlp, payload)
            except UnknownParent:
                self._sync_wanted.set()
            except ProtocolViolation as exc:
                await peer._violation(exc)
            except ValueError as exc:
                await peer._violation(ProtocolViolation(f"bad block bytes: {exc}", penalty=PENALTY_INVALID_BLOCK))
            except (SyncAborted, PeerUnavailable):
                pass
            except Exception:  # noqa: BLE001 - keep fetching
                log.exception("fetching announced block failed")

    def _parse_entries(self, reply: m.Message, max_len: int) -> list[tuple[bytes, Optional[bytes]]]:
        genesis = self.chain.genesis
        return m.parse_block_entries(
            reply.body, max_len=max_len, max_block=genesis.max_block_bytes,
            max_payload=self.chain.engine.max_payload_bytes(),
        )

    # --- requests from peers ------------------------------------------------------------

    async def serve_request(self, peer: Peer, msg: m.Message) -> tuple[str, dict[str, Any]]:
        request_id = m.field_request_id(msg.body)
        budget = self.config.response_budget_bytes
        if msg.type == "get_blocks":
            hashes = m.field_hashes(msg.body, "hashes")
            entries = await self._read(_entries_by_hash, self.chain, hashes, budget)
            return "blocks", {"id": request_id, "blocks": _encode_entries(entries)}
        if msg.type == "get_chain":
            locator = m.field_hashes(msg.body, "locator")
            count = m.field_int(msg.body, "max", low=1, high=m.MAX_BATCH)
            entries = await self._read(sync.read_segment, self.chain, locator, count, budget)
            head = self.head_info()
            return "blocks", {
                "id": request_id, "blocks": _encode_entries(entries),
                "head": m.hx(head.hash), "number": head.number, "total_work": m.qty(head.total_work),
            }
        if msg.type == "get_blob":
            blob_hash = m.field_hash(msg.body, "hash")
            offset = m.field_int(msg.body, "offset")
            length = m.field_int(msg.body, "length", low=1, high=m.BLOB_CHUNK)
            data = await self._read(self._blob_chunk, blob_hash, offset, length)
            if data is None:
                return "blob", {"id": request_id, "hash": m.hx(blob_hash), "size": 0, "data": None}
            size, chunk = data
            return "blob", {"id": request_id, "hash": m.hx(blob_hash), "size": size, "data": m.hx(chunk)}
        raise ProtocolViolation(f"{msg.type} is not a request", penalty=m.PENALTY_MALFORMED)

    def _blob_chunk(self, blob_hash: bytes, offset: int, length: int) -> Optional[tuple[int, bytes]]:
        if self.blobstore is None:
            return None
        cached = self._blob_cache
        if cached is not None and cached[0] == blob_hash:
            blob = cached[1]
        else:
            try:
                blob = bytes(self.blobstore.get(blob_hash))
            except Exception:  # noqa: BLE001 - BlobNotFound, CorruptBlob: we do not have it
                return None
            self._blob_cache = (blob_hash, blob)  # a chunked fetch reads the same blob again
        return len(blob), blob[offset : offset + length]

    # --- sync ---------------------------------------------------------------------------------

    def best_peer(self) -> Optional[Peer]:
        ours = self.head_info().total_work
        candidates = [p for p in self.peers.values() if p.total_work > ours and not p.closed.is_set()]
        return max(candidates, key=lambda p: p.total_work, default=None)

    async def _sync_loop(self) -> None:
        while True:
            await self._sync_wanted.wait()
            self._sync_wanted.clear()
            while self._running:
                peer = self.best_peer()
                if peer is None:
                    break
                started = time.monotonic()
                self.stats.syncing = True
                try:
                    await self._sync_from(peer)
                except (SyncAborted, PeerUnavailable) as exc:
                    log.info("sync from %s stopped: %s", peer.name, exc)
                    await asyncio.sleep(1.0)
                except ProtocolViolation as exc:
                    await peer._violation(exc)
                except Exception:  # noqa: BLE001 - the sync loop must survive
                    log.exception("sync from %s failed", peer.name)
                    await asyncio.sleep(1.0)
                finally:
                    self.stats.syncing = False
                    self.stats.last_sync_seconds = time.monotonic() - started

    async def _sync_from(self, peer: Peer) -> None:
        """Download and import the peer's heavier chain, batch by batch (see sync.py).

        The next batch is requested before the current one is imported, so download
        and validation overlap. Ends when our chain holds as much work as the peer says
        its has; a peer that claims more work than it can show is penalised."""
        tip: Optional[bytes] = None
        log.info("syncing from %s: its head #%d (work %d), ours #%d",
                 peer.name, peer.head_number, peer.total_work, self.chain.head().block_number)
        request = asyncio.ensure_future(self._request_segment(peer, tip))
        try:
            while True:
                reply = await request
                entries = self._parse_entries(reply, max_len=m.MAX_BATCH)
                if "total_work" in reply.body:
                    peer.total_work = max(peer.total_work, m.field_qty(reply.body, "total_work"))
                if not entries:
                    # The empty reply may be stale: it was requested (pipelined) before the
                    # previous segment was imported, and the peer may have announced a new
                    # block since. Ask once more, fresh, and judge by the work that reply states.
                    fresh = await self._request_segment(peer, None)
                    entries = self._parse_entries(fresh, max_len=m.MAX_BATCH)
                    if not entries:
                        claimed = m.field_qty(fresh.body, "total_work") if "total_work" in fresh.body else peer.total_work
                        if claimed > self.head_info().total_work:
                            await peer._violation(ProtocolViolation(
                                "claims more total work than it serves", penalty=PENALTY_LYING_HEAD,
                                expected=claimed, got=self.head_info().total_work,
                            ))
                        return
                hashes = [sync.header_hash_of(block_rlp) for block_rlp, _ in entries]
                more = len(entries) > 0
                if more:  # pipeline: ask for the next segment now
                    request = asyncio.ensure_future(self._request_segment(peer, hashes[-1]))
                for (block_rlp, payload), block_hash in zip(entries, hashes):
                    if self.has_block(block_hash):
                        continue
                    try:
                        result = await self.import_from(peer, block_rlp, payload)
                    except UnknownParent:
                        raise ProtocolViolation("sync segment does not connect", penalty=PENALTY_BAD_RESPONSE) from None
                    if result is not None:
                        self.stats.blocks_imported += 1
                self.stats.batches += 1
                tip = hashes[-1]
                if peer.total_work <= self.head_info().total_work:
                    return
        except ValueError as exc:
            raise ProtocolViolation(f"bad block bytes in sync: {exc}", penalty=PENALTY_INVALID_BLOCK) from None
        finally:
            if not request.done():
                request.cancel()
            await asyncio.gather(request, return_exceptions=True)

    async def _request_segment(self, peer: Peer, tip: Optional[bytes]) -> m.Message:
        locator = await self._read(sync.build_locator, self.chain, tip)
        return await peer.request(
            "get_chain", ("blocks",), locator=[m.hx(h) for h in locator], max=self.config.sync_batch
        )

    # --- blobs --------------------------------------------------------------------------------

    async def fetch_blob(self, blob_hash: bytes, *, max_bytes: Optional[int] = None) -> bytes:
        """The blob named ``blob_hash`` (a dataset's keccak256 or a state's state hash): from our store, else from peers
        (chunked, best score first), verified against the hash and stored."""
        if self.blobstore is not None:
            local = await self._read(self._stored_blob, blob_hash)
            if local is not None:
                return local
        limit: int = max_bytes if max_bytes is not None else int(getattr(self.blobstore, "max_bytes", 256 * 1024 * 1024))
        peers = sorted(self.peers.values(), key=lambda p: -self.book.score(p.keys[0]))
        for peer in peers:
            try:
                data = await self._fetch_blob_from(peer, blob_hash, limit)
            except PeerUnavailable:
                continue
            except ProtocolViolation as exc:
                await peer._violation(exc)
                continue
            if data is None:
                continue
            if self.blobstore is not None:
                await self._read(put_named, self.blobstore, blob_hash, data)
            return data
        raise BlobUnavailable(f"no peer served blob {m.hx(blob_hash)}")

    def _stored_blob(self, blob_hash: bytes) -> Optional[bytes]:
        if not self.blobstore.has(blob_hash):
            return None
        try:
            return bytes(self.blobstore.get(blob_hash))
        except Exception:  # noqa: BLE001 - CorruptBlob: fetch a good copy
            return None

    # --- blob prefetch for open jobs ------------------------------------------------------

    def _schedule_prefetch(self) -> None:
        """Start a prefetch round ``prefetch_delay_s`` from now (one round for a burst of
        heads; a head during a round asks for one more round after it)."""
        if not self.config.prefetch or self.blobstore is None or not self._running:
            return
        if self._prefetch_task is not None and not self._prefetch_task.done():
            self._prefetch_again = True
            return
        if self._prefetch_handle is None:
            loop = asyncio.get_running_loop()
            self._prefetch_handle = loop.call_later(self.config.prefetch_delay_s, self._start_prefetch)

    def _start_prefetch(self) -> None:
        self._prefetch_handle = None
        if not self._running:
            return
        self._prefetch_again = False
        self._prefetch_task = asyncio.create_task(self.prefetch_job_blobs(), name="p2p-prefetch")
        self._prefetch_task.add_done_callback(self._prefetch_done)

    def _prefetch_done(self, task: "asyncio.Task[Any]") -> None:
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            log.warning("blob prefetch failed: %s: %s", type(exc).__name__, exc)
        if self._prefetch_again and self._running:
            self._prefetch_again = False
            self._schedule_prefetch()

    async def prefetch_job_blobs(self) -> int:
        """One prefetch round: fetch from peers the datasets and checkpoint states of
        open, funded posted jobs (the newest ``prefetch_max_jobs``) that our blob store
        lacks, at most ``prefetch_max_blobs`` of them. A blob no peer serves is not asked
        for again for ``prefetch_retry_s``. Chain state and the blob store are read on
        the read executor, never on the event loop. Returns the number fetched."""
        if self.blobstore is None or not self.peers:
            return 0
        self.stats.prefetch_rounds += 1
        now = time.monotonic()
        self._blob_failures = {h: t for h, t in self._blob_failures.items() if t > now}
        try:
            wanted = await self._read(self._wanted_job_blobs)
        except RuntimeError:  # executor shut down: the service is stopping
            return 0
        fetched = asked = 0
        stored: list[bytes] = []
        for blob_hash, limit, what in wanted:
            if asked >= self.config.prefetch_max_blobs:
                self._prefetch_again = True  # more to do: the next round goes on
                break
            if blob_hash in self._blob_failures or not self.peers:
                continue
            asked += 1
            store_limit = getattr(self.blobstore, "max_bytes", None)
            try:
                await self.fetch_blob(blob_hash, max_bytes=min(limit, store_limit) if store_limit else limit)
            except Exception as exc:  # noqa: BLE001 - BlobUnavailable, BlobTooLarge, ...
                if not self._running:
                    return fetched
                self._blob_failures[blob_hash] = time.monotonic() + self.config.prefetch_retry_s
                log.info("prefetch: %s %s: %s (not asked again for %.0f s)",
                         what, m.hx(blob_hash), exc, self.config.prefetch_retry_s)
                continue
            fetched += 1
            stored.append(blob_hash)
            self.stats.blobs_prefetched += 1
            log.info("prefetched %s %s from peers", what, m.hx(blob_hash))
        if stored:
            _notify(self.on_blobs_prefetched, stored, "on_blobs_prefetched")
        return fetched

    def _wanted_job_blobs(self) -> list[tuple[bytes, int, str]]:
        """(hash, size limit, description) of the blobs open jobs need and we lack, at
        the head state, newest jobs first. Empty where the job registry is not built in."""
        from consensus.market import funded_jobs, job_blobs
        from consensus.params import config_of

        config = config_of(self.chain.engine_class, int(self.chain.genesis.chain_id))
        limits = config.limits
        wanted: list[tuple[bytes, int, str]] = []
        seen: set[bytes] = set()
        for job in funded_jobs(self.chain.state_at(), config, newest=self.config.prefetch_max_jobs):
            for blob_hash, kind in job_blobs(job):  # the blobs a miner of the job needs
                if blob_hash in seen or blob_hash in self._blob_failures:
                    continue
                seen.add(blob_hash)
                if not self.blobstore.has(blob_hash):
                    limit = limits.max_dataset_bytes if kind == "dataset" else limits.max_state_bytes
                    wanted.append((blob_hash, limit, f"{kind} of job {job.job_id}"))
        return wanted

    async def _fetch_blob_from(self, peer: Peer, blob_hash: bytes, limit: int) -> Optional[bytes]:
        parts: list[bytes] = []
        offset, size = 0, None
        while size is None or offset < size:
            reply = await peer.request("get_blob", ("blob",), hash=m.hx(blob_hash), offset=offset, length=m.BLOB_CHUNK)
            if reply.body.get("data") is None:
                return None
            got_size = m.field_int(reply.body, "size", high=limit)
            chunk = m.field_bytes(reply.body, "data", max_size=m.BLOB_CHUNK)
            if size is None:
                size = got_size
            if got_size != size or not chunk and offset < size:
                raise ProtocolViolation("inconsistent blob chunks", penalty=PENALTY_BAD_RESPONSE)
            parts.append(chunk)
            offset += len(chunk)
        data = b"".join(parts)
        if not blob_matches(blob_hash, data):
            raise ProtocolViolation("blob does not match its hash", penalty=PENALTY_INVALID_BLOCK,
                                    expected=m.hx(blob_hash), got=m.hx(keccak(data)))
        return data

    # --- introspection ----------------------------------------------------------------------

    # --- what the RPC reads (rpc.sources.PeerSource) ------------------------------------

    @property
    def peer_count(self) -> int:
        return len(self.peers)

    def peer_summaries(self) -> list[dict[str, Any]]:
        return [
            {"id": p.node_id.hex(), "address": p.name, "outbound": p.outbound, "head": m.hx(p.head),
             "number": p.head_number, "total_work": p.total_work, "score": self.book.score(p.keys[0]),
             "client": str(p.hello.client), "remote_host": p.remote_host, "listen_port": int(p.hello.listen_port)}
            for p in list(self.peers.values())
        ]

    def node_summary(self) -> dict[str, Any]:
        return {"id": self.node_id.hex(), "listen_host": self.config.listen_host,
                "port": int(self.port or self.config.listen_port), "client": CLIENT_NAME}

    def sync_status(self) -> Optional[SyncProgress]:
        """Behind the best peer: where we are and where it is (``eth_syncing``)."""
        head = self.head_info()
        best = max(self.peers.values(), key=lambda p: p.total_work, default=None)
        if best is None or best.total_work <= head.total_work or best.head_number <= head.number:
            self._sync_start = None
            return None
        if self._sync_start is None:
            self._sync_start = head.number
        return SyncProgress(self._sync_start, head.number, best.head_number)


@dataclass(frozen=True)
class _NewHead:
    block_hash: bytes


def _raw_tx(tx: Any) -> bytes:
    import rlp

    return bytes(tx.encode()) if hasattr(tx, "encode") else rlp.encode(tx)


def _entries_by_hash(chain: Any, hashes: list[bytes], budget: int) -> list[tuple[bytes, Optional[bytes]]]:
    entries = []
    size = 0
    for block_hash in hashes:
        entry = sync.block_entry(chain, block_hash)
        if entry is None:
            continue
        entries.append(entry)
        size += len(entry[0]) + len(entry[1] or b"")
        if size >= budget:
            break
    return entries


def _encode_entries(entries: list[tuple[bytes, Optional[bytes]]]) -> list[list[Optional[str]]]:
    return [[m.hx(block), None if payload is None else m.hx(payload)] for block, payload in entries]


async def _refuse(ws: Any, reason: str) -> None:
    try:
        await ws.send_str(m.encode("disconnect", reason=reason[:500]))
        await ws.close(code=4000, message=reason[:120].encode())
    except Exception:  # noqa: BLE001 - best effort
        pass


def _notify(callbacks: list[Callable[[Any], None]], arg: Any, what: str) -> None:
    """Call each listener with ``arg``; a listener's bug is logged and must not stop the
    service (sync, prefetch) that calls it."""
    for callback in callbacks:
        try:
            callback(arg)
        except Exception:  # noqa: BLE001
            log.exception("%s callback failed", what)
