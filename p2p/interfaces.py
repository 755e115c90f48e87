"""The seams of the p2p package: what it needs from the node it attaches to, and the
small pieces its parts share.

The service (``service.py``) is assembled from parts that each take only what they use
(the chain, the peer set, the read pool below, the config, a callable or two), never
the service itself. The node satisfies :class:`NodeBackend` from above
(``rpc.backend.ChainBackend`` does); p2p imports nothing of rpc or node.
"""
from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Optional, Protocol, TypeVar, TypeVarTuple, Unpack

from eth_typing import Hash32

from chain.chain import Chain

log = logging.getLogger("p2p")

T = TypeVar("T")
Ts = TypeVarTuple("Ts")


class EventSource(Protocol):
    """The node's event hub (``rpc.events.EventHub``). Local heads and pool transactions
    reach p2p through it, and heads imported from peers go back out through it, so RPC
    subscribers see them as they see local ones."""

    def listen(self, loop: asyncio.AbstractEventLoop, callback: Callable[[object], None]) -> Callable[[], None]:
        """Call ``callback(event)`` on ``loop`` for each event (an object with
        ``block_hash`` for a new head, with ``tx`` for a pool transaction); returns the
        function that stops it."""
        ...

    def notify_new_head(self, block_hash: bytes) -> None:
        """The canonical head is now ``block_hash``."""
        ...


class NodeBackend(Protocol):
    """What the p2p service needs from the node it attaches to."""

    @property
    def chain(self) -> Chain:
        """The node's chain: peers' blocks are imported into it, ours are served from it."""
        ...

    @property
    def events(self) -> Optional[EventSource]:
        """The event hub, or None (heads imported from peers are then announced directly)."""
        ...

    def submit_raw_transaction(self, raw: bytes) -> object:
        """Hand a transaction gossiped by a peer to the node's pool (its own checks);
        raises on rejection."""
        ...


@dataclass(frozen=True)
class HeadInfo:
    """Our head as peers see it in ``hello``, announcements and sync replies."""

    hash: bytes
    number: int
    total_work: int


def head_info(chain: Chain) -> HeadInfo:
    head = chain.head()
    return HeadInfo(bytes(head.hash), int(head.block_number), int(chain.score(head.hash)))


def has_block(chain: Chain, block_hash: bytes) -> bool:
    return bool(chain.chaindb.header_exists(Hash32(block_hash)))


@dataclass
class SyncStats:
    """Counters for status output and benchmarks, shared by the parts that count them."""

    blocks_imported: int = 0
    batches: int = 0
    invalid_blocks: int = 0
    blobs_prefetched: int = 0
    prefetch_rounds: int = 0
    syncing: bool = False
    last_sync_seconds: float = 0.0


class ReadPool:
    """The threads that read the database and the blob store for p2p: those reads may be
    slow on a big chain and must never run on the event loop (imports have their own
    single thread, ``importer.py``)."""

    def __init__(self, workers: int = 2) -> None:
        self._executor = ThreadPoolExecutor(workers, thread_name_prefix="p2p-read")

    async def run(self, func: Callable[[Unpack[Ts]], T], *args: Unpack[Ts]) -> T:
        """``func(*args)`` on a read thread. RuntimeError once :meth:`shutdown` ran."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, func, *args)

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


def call_listeners(callbacks: list[Callable[[T], None]], arg: T, what: str) -> None:
    """Call each listener with ``arg``; a listener's bug is logged and must not stop the
    part (sync, prefetch) that calls it."""
    for callback in callbacks:
        try:
            callback(arg)
        except Exception:  # noqa: BLE001
            log.exception("%s callback failed", what)
