"""The p2p service: listen, dial static peers, admit connections, hand each message to
the part that deals with it.

``P2PService(backend, config, blobstore=None)`` attaches to a node from the outside:
``backend`` is what the node offers p2p (:class:`p2p.interfaces.NodeBackend`: its chain,
its pool, its event hub). The service learns about local blocks and transactions from
the event hub (the same events the RPC layer gets) and tells it about blocks that arrive
from peers, so RPC subscriptions see them too. ``await start()`` / ``await stop()``.

What happens, in order of a connection's life:

1. handshake (``hello`` both ways): refuse another protocol version, chain id or
   genesis, ourselves, a banned peer, a duplicate, too many peers (here);
2. if the peer's chain holds more work than ours, sync from it (``sync.py``):
   locator, segments of blocks with payloads, imported in order on one import thread
   (``importer.py``);
3. gossip (``gossip.py``): new heads are announced (hash, number, total work) and
   fetched by whoever lacks them; transactions are pushed to peers that have not seen
   them;
4. every violation costs score (``peerset.py``); invalid blocks ban at once; the
   connection is the only thing a misbehaving peer can cost us.

Besides, after new heads (debounced) and new peers, the datasets and checkpoint states
of open posted jobs that this node lacks are prefetched from peers (``blobs.py``), so
that a job posted with its dataset on another node can be mined here.

Each part gets what it uses (the chain, the peer set, the read pool, the config, a
callable or two), not this service; the service builds them and routes between them.
"""
from __future__ import annotations

import asyncio
import logging
import os
import random
from typing import Any, Callable, Coroutine, Optional

import aiohttp
from aiohttp import web

from chain.chain import ImportResult
from p2p import messages as m
from p2p.blobs import BlobFetcher, BlobServer, Prefetcher
from p2p.config import CLIENT_NAME, PROTOCOL_VERSION, WS_PATH, P2PConfig, PeerAddress
from p2p.errors import HandshakeRefused, ProtocolViolation
from p2p.gossip import Gossip
from p2p.importer import BlockImporter
from p2p.interfaces import EventSource, HeadInfo, NodeBackend, ReadPool, SyncStats, head_info
from p2p.peer import Hello, Peer, WebSocket, exchange_hello
from p2p.peerset import PeerSet
from p2p.sync import SyncProgress, Syncer
from pouw.blobstore import BlobStore

log = logging.getLogger("p2p")

__all__ = ["P2PService"]


class P2PService:
    """See the module docstring. Implements :class:`p2p.peer.PeerHost` for its peers and
    ``rpc.sources.PeerSource`` for the RPC."""

    def __init__(
        self, backend: NodeBackend, config: P2PConfig, blobstore: Optional[BlobStore] = None,
        *, node_id: Optional[bytes] = None,
    ) -> None:
        self.backend = backend
        self.chain = backend.chain
        self.config = config
        self.blobstore = blobstore
        self.node_id = node_id or os.urandom(16)
        self.port: Optional[int] = None
        self.stats = SyncStats()
        self.peerset = PeerSet(config)
        self.peers = self.peerset.peers
        """Connected peers by node id (the peer set's own dict)."""
        self.book = self.peerset.book
        self.addresses = self.peerset.addresses
        self.reads = ReadPool()
        self.blobs = BlobFetcher(blobstore, self.peerset, self.reads)
        self.blob_server = BlobServer(blobstore, self.reads)
        self.prefetcher = Prefetcher(self.chain, config, self.blobs, self.reads, self.stats)
        self.importer = BlockImporter(
            self.chain, self.stats, ban=self.peerset.ban, fetch_blob=self.blobs.fetch if blobstore is not None else None,
            publish_head=self._publish_head, coalesce_s=config.gossip_delay_s,
        )
        self.syncer = Syncer(self.chain, config, self.peerset, self.reads, self.stats, import_block=self._import_from_peer)
        self.gossip = Gossip(
            self.chain, config, self.peerset, self.reads, import_block=self._import_from_peer,
            submit_tx=backend.submit_raw_transaction, want_sync=self.syncer.want,
            fetch_blob=self.blobs.fetch if blobstore is not None else None,
        )
        self.on_new_head: list[Callable[[bytes], None]] = self.importer.on_new_head
        """Called (on the event loop) with the new head's hash after each import from a
        peer that moved our head, e.g. ``Miner.notify_new_head`` to abandon stale work."""
        self.on_blobs_prefetched: list[Callable[[list[bytes]], None]] = self.prefetcher.on_blobs_prefetched
        """Called with the hashes each prefetch round stored (``Prefetcher``)."""
        self._running = False
        self._events: Optional[EventSource] = None
        self._runner: Optional[web.AppRunner] = None
        self._session: Optional[aiohttp.ClientSession] = None
        self._peer_tasks: set[asyncio.Task[None]] = set()
        self._unlisten: Optional[Callable[[], None]] = None
        self._dial_node_ids: dict[PeerAddress, bytes] = {}
        self._paused: set[PeerAddress] = set()

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
        self._events = self.backend.events
        if self._events is not None:
            self._unlisten = self._events.listen(loop, self._on_local_event)
        self.syncer.start()
        self.gossip.start()
        self.prefetcher.start()
        for address in self.config.static_peers:
            self.add_peer(address)
        return self

    async def stop(self) -> None:
        """Close every connection and worker; waits for an import in progress."""
        self._running = False
        if self._unlisten is not None:
            self._unlisten()
        self.importer.cancel()
        tasks = [*self.gossip.cancel(), *self.syncer.cancel(), *self.prefetcher.cancel()]
        await asyncio.gather(*tasks, return_exceptions=True)
        for peer in self.peerset:
            await peer.close("node shutting down")
        for task in list(self._peer_tasks):
            task.cancel()
        await asyncio.gather(*self._peer_tasks, return_exceptions=True)
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()
        await self.importer.shutdown()
        self.reads.shutdown()

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
        for peer in self.peerset:
            same_address = peer.remote_host == address.host and peer.hello.listen_port == address.port
            if peer.node_id == node_id or same_address:
                await peer.close("disconnected by operator")

    def _spawn(self, coro: Coroutine[object, None, None], name: str) -> asyncio.Task[None]:
        task = asyncio.create_task(coro, name=name)
        self._peer_tasks.add(task)
        task.add_done_callback(self._peer_tasks.discard)
        return task

    async def _dial_loop(self, address: PeerAddress) -> None:
        delay = self.config.reconnect_min_s
        while self._running and address not in self._paused:
            node_id = self._dial_node_ids.get(address)
            existing = self.peerset.get(node_id) if node_id else None
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
            ours = self._hello()
            hello = await exchange_hello(ws, ours, self.config.handshake_timeout_s, self.config.max_message_bytes)
            self._dial_node_ids[address] = hello.node_id  # so an inbound duplicate counts as connected
            peer = self._admit(ws, hello, ours, outbound=True, remote_host=address.host)
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
            ours = self._hello()
            hello = await exchange_hello(ws, ours, self.config.handshake_timeout_s, self.config.max_message_bytes)
            peer = self._admit(ws, hello, ours, outbound=False, remote_host=remote)
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
        head = head_info(self.chain)
        return Hello(
            protocol=PROTOCOL_VERSION, chain_id=int(self.chain.genesis.chain_id),
            genesis=bytes(self.chain.genesis_hash), head=head.hash, number=head.number,
            total_work=head.total_work, node_id=self.node_id,
            listen_port=self.port or 0, client=CLIENT_NAME,
        )

    def _admit(self, ws: WebSocket, hello: Hello, ours: Hello, *, outbound: bool, remote_host: str) -> Peer:
        """Check the peer's hello and register it. No await: check and register are one step.
        ``ours`` is the hello we sent: the head it named is known to the peer."""
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
        reason = self.peerset.banned(peer)
        if reason is not None:
            raise HandshakeRefused(f"banned: {reason}")
        existing = self.peerset.get(hello.node_id)
        if existing is not None and not existing.closed.is_set():
            # Both sides dialed each other: keep the connection dialed by the smaller
            # node id. Both ends compute the same answer, so exactly one survives.
            dialer_new = self.node_id if outbound else hello.node_id
            dialer_old = self.node_id if existing.outbound else hello.node_id
            if dialer_old <= dialer_new:
                raise HandshakeRefused("duplicate connection")
            asyncio.ensure_future(existing.close("duplicate connection (replaced)"))
        elif len(self.peerset) >= self.config.max_peers:
            raise HandshakeRefused("too many peers")
        self.peerset.add(peer)
        peer.known_blocks.add(ours.head)
        log.info(
            "peer %s connected (%s): head #%d, total work %d",
            peer.name, "outbound" if outbound else "inbound", hello.number, hello.total_work,
        )
        if hello.total_work > head_info(self.chain).total_work:
            self.syncer.want()
        self.prefetcher.schedule()  # the new peer may hold blobs we lack
        self.gossip.greet(peer)  # our head if it moved since our hello, our pending transactions
        return peer

    # --- what peers call (p2p.peer.PeerHost) ----------------------------------------------

    def peer_closed(self, peer: Peer) -> None:
        self.peerset.remove(peer)

    async def penalise(self, peer: Peer, penalty: int, reason: str) -> None:
        """Take ``penalty`` from the peer's score; ban and disconnect at the threshold."""
        await self.peerset.penalise(peer, penalty, reason)

    async def ban(self, peer: Peer, reason: str) -> None:
        """Ban the peer's identity (an invalid block), and strike its address."""
        await self.peerset.ban(peer, reason)

    async def on_notice(self, peer: Peer, msg: m.Message) -> None:
        if msg.type == "new_block":
            self.gossip.on_new_block(peer, msg.body)
        elif msg.type == "txs":
            self.gossip.on_txs(peer, msg.body)

    async def serve_request(self, peer: Peer, msg: m.Message) -> tuple[str, dict[str, Any]]:
        request_id = m.field_request_id(msg.body)
        if msg.type == "get_blocks":
            return await self.syncer.serve_blocks(request_id, msg.body)
        if msg.type == "get_chain":
            return await self.syncer.serve_chain(request_id, msg.body)
        if msg.type == "get_blob":
            return await self.blob_server.serve(request_id, msg.body)
        raise ProtocolViolation(f"{msg.type} is not a request", penalty=m.PENALTY_MALFORMED)

    # --- between the parts --------------------------------------------------------------

    async def import_from(self, peer: Peer, block_rlp: bytes, payload: Optional[bytes]) -> ImportResult:
        """Import a block ``peer`` sent (``BlockImporter.import_from``)."""
        return await self.importer.import_from(peer, block_rlp, payload)

    async def _import_from_peer(self, peer: Peer, block_rlp: bytes, payload: Optional[bytes]) -> ImportResult:
        # Gossip and sync import through ``self.import_from`` looked up on each call: the
        # node may wrap it (node.imports.ImportLog.attribute_p2p names the peer in its log).
        return await self.import_from(peer, block_rlp, payload)

    def _on_local_event(self, event: object) -> None:
        """From the node's event hub (on our loop): a new head or a new pool transaction."""
        block_hash = getattr(event, "block_hash", None)
        if block_hash is not None:
            self._on_new_head(bytes(block_hash))
        elif hasattr(event, "tx"):
            self.gossip.local_tx(getattr(event, "tx"))

    def _on_new_head(self, block_hash: bytes) -> None:
        self.gossip.local_head(block_hash)
        self.prefetcher.schedule()

    def _publish_head(self, block_hash: bytes) -> None:
        """A head imported from peers: through the hub (RPC subscribers, and back to our
        own gossip), or straight to gossip on a node without one."""
        if self._events is not None:
            self._events.notify_new_head(block_hash)
        else:
            self._on_new_head(block_hash)

    # --- introspection ------------------------------------------------------------------------

    async def fetch_blob(self, blob_hash: bytes, *, max_bytes: Optional[int] = None) -> bytes:
        """The blob named ``blob_hash`` (a dataset's keccak256 or a state's state hash),
        from our store or from peers (``BlobFetcher.fetch``)."""
        return await self.blobs.fetch(blob_hash, max_bytes=max_bytes)

    async def prefetch_job_blobs(self) -> int:
        """One prefetch round now (``Prefetcher.run_round``); the number of blobs fetched."""
        return await self.prefetcher.run_round()

    def head_info(self) -> HeadInfo:
        return head_info(self.chain)

    # --- what the RPC reads (rpc.sources.PeerSource) ------------------------------------

    @property
    def peer_count(self) -> int:
        return len(self.peerset)

    def peer_summaries(self) -> list[dict[str, Any]]:
        return [
            {"id": p.node_id.hex(), "address": p.name, "outbound": p.outbound, "head": m.hx(p.head),
             "number": p.head_number, "total_work": p.total_work, "score": self.peerset.score(p),
             "client": str(p.hello.client), "remote_host": p.remote_host, "listen_port": int(p.hello.listen_port)}
            for p in self.peerset
        ]

    def node_summary(self) -> dict[str, Any]:
        return {"id": self.node_id.hex(), "listen_host": self.config.listen_host,
                "port": int(self.port or self.config.listen_port), "client": CLIENT_NAME}

    def sync_status(self) -> Optional[SyncProgress]:
        """Behind the best peer: where we are and where it is (``eth_syncing``)."""
        return self.syncer.status()


async def _refuse(ws: WebSocket, reason: str) -> None:
    try:
        await ws.send_str(m.encode("disconnect", reason=reason[:500]))
        await ws.close(code=4000, message=reason[:120].encode())
    except Exception:  # noqa: BLE001 - best effort
        pass
