"""An in-process node: database, chain, pool, event hub and P2P service, no JSON-RPC.

Several of them share one event loop and talk over real loopback WebSockets, so a
test or benchmark sees the protocol exactly as separate processes would, while it can
read each node's chain directly and build blocks on it without a miner.
"""
from __future__ import annotations

import asyncio
import dataclasses
import time
from pathlib import Path
from typing import Callable, Iterable, Optional, Self, Sequence

from eth.abc import AtomicDatabaseAPI, BlockAPI, BlockHeaderAPI, SignedTransactionAPI
from eth.db.atomic import AtomicDB
from eth_typing import Address

from chain.chain import Chain
from chain.db import LevelDB
from chain.sealing import NoProofEngine, SealEngine
from chain.txpool import TxPool
from devnet.errors import WaitTimeout
from devnet.kit.accounts import MINER
from devnet.kit.chains import BLOCK_TIME, FAR_AHEAD, FixedClock
from devnet.kit.genesis import noproof_genesis
from genesis.format import GenesisConfig
from p2p.config import P2PConfig, PeerAddress
from p2p.service import P2PService
from pouw.blobstore import BlobStore, MemoryBlobStore
from rpc.backend import ChainBackend

BlobStoreFactory = Callable[[AtomicDatabaseAPI], BlobStore]
"""Makes a node's blob store from its database (``consensus.blobs.LevelDBBlobStore``
for pouw nodes, whose datasets and checkpoints live beside the chain)."""


def fast_p2p_config() -> P2PConfig:
    """P2P settings for nodes on one machine: a free loopback port, and timers cut from
    seconds to tens of milliseconds so that reconnects, gossip and prefetch happen within
    a test's patience. Limits and scoring are the defaults."""
    return P2PConfig(
        listen_port=0, reconnect_min_s=0.05, reconnect_max_s=0.5, gossip_delay_s=0.01, handshake_timeout_s=3.0,
        request_timeout_s=10.0, heartbeat_s=5.0, prefetch_delay_s=0.05, sync_recheck_s=0.5,
    )


class TestNode:
    """A node without RPC: chain + pool + backend (event hub) + P2P service.

    On LevelDB under ``path`` (or in memory), on a clock far past the genesis (blocks
    are stamped by their builder, never by the wall clock); the P2P service runs from
    :meth:`start` to :meth:`stop`, then :meth:`close` releases the database.
    """

    __test__ = False  # pytest: a helper class, not a test case

    def __init__(
        self,
        name: str,
        *,
        path: Optional[Path] = None,
        genesis: Optional[GenesisConfig] = None,
        node_id: Optional[bytes] = None,
        seal_engine: type[SealEngine] = NoProofEngine,
        blobs: Optional[BlobStoreFactory] = None,
    ) -> None:
        """``genesis``: default :func:`~devnet.kit.genesis.noproof_genesis`; ``blobs``:
        default an in-memory store."""
        self.name = name
        self.path = path
        self.genesis = genesis if genesis is not None else noproof_genesis()
        self.node_id = node_id
        self.seal_engine = seal_engine
        self.blobs_factory = blobs
        self.db: AtomicDatabaseAPI = LevelDB(path) if path is not None else AtomicDB()
        clock = FixedClock(self.genesis.timestamp + FAR_AHEAD)
        self.chain = Chain.open(self.db, self.genesis, seal_engine=seal_engine, clock=clock)
        self.chain.txpool = TxPool(self.genesis.chain_id, self.chain.state_view(),
                                   missing_blobs=self.chain.engine.missing_transaction_blobs)
        self.backend = ChainBackend(self.chain)
        self.blobs: BlobStore = blobs(self.db) if blobs is not None else MemoryBlobStore()
        self.service: Optional[P2PService] = None

    async def start(self, peers: Iterable["TestNode | PeerAddress"] = (), config: Optional[P2PConfig] = None) -> Self:
        """Start the P2P service with ``config`` (default :func:`fast_p2p_config`) and
        ``peers`` (nodes or addresses) added to its static peers."""
        config = config if config is not None else fast_p2p_config()
        addresses = tuple(p if isinstance(p, PeerAddress) else p.address for p in peers)
        config = dataclasses.replace(config, static_peers=config.static_peers + addresses)
        self.service = await P2PService(self.backend, config, self.blobs, node_id=self.node_id).start()
        self.backend.peers = self.service  # as the node wires it: net_peerCount, eth_syncing, admin_peers
        return self

    async def stop(self) -> None:
        if self.service is not None:
            self.backend.peers = None
            await self.service.stop()
            self.service = None

    def close(self) -> None:
        """Release the database (and a LevelDB datadir's lock)."""
        if isinstance(self.db, LevelDB):
            self.db.close()

    @property
    def p2p(self) -> P2PService:
        """The running P2P service (asserts that :meth:`start` ran)."""
        assert self.service is not None, f"{self.name} is not started"
        return self.service

    @property
    def address(self) -> PeerAddress:
        """Where peers reach this node (once started)."""
        assert self.service is not None and self.service.port, f"{self.name} is not listening"
        return PeerAddress("127.0.0.1", self.service.port)

    def head(self) -> BlockHeaderAPI:
        return self.chain.head()

    @property
    def number(self) -> int:
        return int(self.chain.head().block_number)

    def work(self) -> int:
        """The head's cumulative difficulty (fork choice's score)."""
        return int(self.chain.score(self.chain.head().hash))

    # --- producing blocks, like the node's automine -------------------------------------

    def build_blocks(
        self,
        count: int,
        *,
        txs_per_block: Callable[[int], Sequence[SignedTransactionAPI]] = lambda i: (),
        dt: int = BLOCK_TIME,
        coinbase: Address = MINER,
        extra: bytes = b"",
    ) -> list[BlockAPI]:
        """Build and import ``count`` blocks on our head, block ``i`` with exactly
        ``txs_per_block(i)`` (blocking: from async code use :meth:`mine`)."""
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

    async def mine(
        self,
        count: int = 1,
        *,
        txs_per_block: Callable[[int], Sequence[SignedTransactionAPI]] = lambda i: (),
        dt: int = BLOCK_TIME,
        coinbase: Address = MINER,
        extra: bytes = b"",
    ) -> list[BlockAPI]:
        """:meth:`build_blocks` in a worker thread, then announce the new head (gossip)."""
        blocks = await asyncio.to_thread(
            self.build_blocks, count, txs_per_block=txs_per_block, dt=dt, coinbase=coinbase, extra=extra
        )
        if blocks:
            self.backend.notify_new_head(blocks[-1].hash)
        return blocks


async def wait_for(
    predicate: Callable[[], bool], timeout: float = 20.0, what: "str | Callable[[], str]" = "condition"
) -> None:
    """Poll ``predicate`` every 20 ms; :class:`WaitTimeout` naming ``what`` after ``timeout`` s
    (a callable ``what`` is asked at the timeout, so the message says how things ended)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise WaitTimeout(f"timed out after {timeout:.0f} s waiting for {what() if callable(what) else what}")
        await asyncio.sleep(0.02)


async def converged(nodes: Sequence[TestNode], timeout: float = 20.0) -> bytes:
    """Wait until every node has the same head; return its hash."""
    await wait_for(lambda: len({bytes(n.head().hash) for n in nodes}) == 1, timeout,
                   lambda: "heads to converge: " + ", ".join(f"{n.name}#{n.number}" for n in nodes))
    return bytes(nodes[0].head().hash)


__all__ = ["BlobStoreFactory", "TestNode", "converged", "fast_p2p_config", "wait_for"]
