"""In-process nodes for p2p tests: each with its own database, chain, pool, backend and
P2PService on a free loopback port, all in the test's event loop."""
from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, Sequence

import rlp
from eth.db.atomic import AtomicDB

from chain.chain import Chain
from chain.db import LevelDB
from chain.sealing import NoProofEngine
from chain.txpool import TxPool
from p2p.config import P2PConfig, PeerAddress
from p2p.service import P2PService
from pouw.blobstore import MemoryBlobStore
from rpc.backend import ChainBackend
from tests.chain.helpers import MINER, FixedClock, dev_genesis

GENESIS = dev_genesis()
CLOCK = FixedClock(GENESIS.timestamp + 10**7)

FAST = dict(
    reconnect_min_s=0.05, reconnect_max_s=0.5, gossip_delay_s=0.01, handshake_timeout_s=3.0,
    request_timeout_s=10.0, heartbeat_s=5.0, prefetch_delay_s=0.05,
)


class TestNode:
    """A node without RPC: chain + pool + backend (event hub) + p2p service."""

    __test__ = False

    def __init__(self, name: str, *, path: Optional[Path] = None, genesis: Any = GENESIS, node_id: Optional[bytes] = None,
                 seal_engine: Any = NoProofEngine, blobs: Optional[Callable[[Any], Any]] = None) -> None:
        """``blobs``: a factory of the blob store from the database (the pouw engine's
        LevelDBBlobStore for pouw nodes); default a MemoryBlobStore."""
        self.name = name
        self.path = path
        self.genesis = genesis
        self.node_id = node_id
        self.seal_engine = seal_engine
        self.blobs_factory = blobs
        self.db: Any = LevelDB(path) if path is not None else AtomicDB()
        clock = FixedClock(genesis.timestamp + 10**7)
        self.chain = Chain.open(self.db, genesis, seal_engine=seal_engine, clock=clock)
        self.chain.txpool = TxPool(genesis.chain_id, self.chain.state_view())
        self.backend = ChainBackend(self.chain)
        self.blobs = blobs(self.db) if blobs is not None else MemoryBlobStore()
        self.service: Optional[P2PService] = None

    async def start(self, peers: Iterable["TestNode | PeerAddress"] = (), **config: Any) -> "TestNode":
        addresses = tuple(p if isinstance(p, PeerAddress) else p.address for p in peers)
        cfg = P2PConfig(listen_port=0, static_peers=addresses, **{**FAST, **config})
        self.service = await P2PService(self.backend, cfg, self.blobs, node_id=self.node_id).start()
        return self

    async def stop(self) -> None:
        if self.service is not None:
            await self.service.stop()
            self.service = None

    def close(self) -> None:
        if hasattr(self.db, "close"):
            self.db.close()

    @property
    def p2p(self) -> P2PService:
        assert self.service is not None
        return self.service

    @property
    def address(self) -> PeerAddress:
        assert self.service is not None and self.service.port
        return PeerAddress("127.0.0.1", self.service.port)

    def head(self) -> Any:
        return self.chain.head()

    @property
    def number(self) -> int:
        return int(self.chain.head().block_number)

    def work(self) -> int:
        return int(self.chain.score(self.chain.head().hash))

    # --- producing blocks, like a miner/automine of the node would ---------------------

    def build_blocks(self, count: int, *, txs_per_block: Callable[[int], Sequence[Any]] = lambda i: (),
                     dt: int = 5, coinbase: bytes = MINER, extra: bytes = b"") -> list[Any]:
        """Build and import ``count`` blocks on our head (blocking; call via ``mine``)."""
        blocks = []
        for i in range(count):
            with self.chain.write_lock:
                parent = self.chain.head()
                block, payload = self.chain.build_block(
                    coinbase, timestamp=parent.timestamp + dt, transactions=list(txs_per_block(i)),
                    extra_data=extra, parent_hash=parent.hash,
                )
                self.chain.import_block(block, payload)
            blocks.append(block)
        return blocks

    async def mine(self, count: int = 1, **kw: Any) -> list[Any]:
        blocks = await asyncio.to_thread(self.build_blocks, count, **kw)
        if blocks:
            self.backend.notify_new_head(blocks[-1].hash)
        return blocks


async def wait_for(predicate: Callable[[], bool], timeout: float = 20.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        await asyncio.sleep(0.02)


async def converged(nodes: Sequence[TestNode], timeout: float = 20.0) -> bytes:
    """Wait until every node has the same head; return it."""
    await wait_for(lambda: len({bytes(n.head().hash) for n in nodes}) == 1, timeout,
                   "heads to converge: " + ", ".join(f"{n.name}#{n.number}" for n in nodes))
    return bytes(nodes[0].head().hash)


def block_rlp(block: Any) -> bytes:
    return rlp.encode(block)


# --- a hand-driven peer (raw WebSocket) for abuse tests --------------------------------

import os

import aiohttp
from aiohttp import WSMsgType

from p2p import messages as m
from p2p.config import PROTOCOL_VERSION, WS_PATH
from p2p.peer import Hello


class FakePeer:
    """A raw WebSocket client that speaks (or breaks) the protocol on purpose."""

    def __init__(self, node: TestNode) -> None:
        self.node = node
        self.session: Optional[aiohttp.ClientSession] = None
        self.ws: Any = None
        self.node_id = os.urandom(16)
        self.their_hello: Optional[Hello] = None

    def hello(self, **overrides: Any) -> Hello:
        chain = self.node.chain
        head = chain.head()
        fields = dict(
            protocol=PROTOCOL_VERSION, chain_id=chain.genesis.chain_id, genesis=bytes(chain.genesis_hash),
            head=bytes(head.hash), number=int(head.block_number), total_work=int(chain.score(head.hash)),
            node_id=self.node_id, listen_port=0, client="fake",
        )
        fields.update(overrides)
        return Hello(**fields)

    async def connect(self, *, handshake: bool = True, max_msg_size: int = 64 * 1024 * 1024, **hello: Any) -> "FakePeer":
        self.session = aiohttp.ClientSession()
        self.ws = await self.session.ws_connect(f"ws://127.0.0.1:{self.node.p2p.port}{WS_PATH}", max_msg_size=max_msg_size)
        if handshake:
            await self.ws.send_str(self.hello(**hello).encode())
            msg = await self.ws.receive(timeout=5)
            assert msg.type == WSMsgType.TEXT, msg
            decoded = m.decode(msg.data, 1 << 20)
            if decoded.type == "hello":
                self.their_hello = Hello.parse(decoded.body)
        return self

    async def send(self, frame: str) -> None:
        await self.ws.send_str(frame)

    async def receive(self, timeout: float = 10.0) -> Optional[m.Message]:
        """Next message; None once the connection is closed."""
        msg = await self.ws.receive(timeout=timeout)
        if msg.type != WSMsgType.TEXT:
            return None
        return m.decode(msg.data, 64 * 1024 * 1024)

    async def receive_next(self, type_: str, timeout: float = 10.0) -> m.Message:
        """The next message of ``type_``, skipping gossip (a ``new_block`` the node may
        announce to a new peer at any moment)."""
        deadline = time.monotonic() + timeout
        while True:
            msg = await self.receive(timeout=max(0.1, deadline - time.monotonic()))
            assert msg is not None, f"closed while waiting for {type_}"
            if msg.type == type_:
                return msg
            assert msg.type in ("new_block", "txs"), f"expected {type_}, got {msg.type}"

    async def closed_reason(self, timeout: float = 10.0) -> str:
        """Read until the node closes the connection; the reason it gave."""
        reason = ""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                msg = await self.ws.receive(timeout=deadline - time.monotonic())
            except asyncio.TimeoutError:
                break
            if msg.type == WSMsgType.TEXT:
                if msg.data.startswith("disconnect "):
                    reason = m.decode(msg.data, 1 << 20).body.get("reason", "")
                continue
            if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSED, WSMsgType.CLOSING, WSMsgType.ERROR):
                return reason or "closed"
        raise AssertionError("the node did not close the connection")

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self.session is not None:
            await self.session.close()
