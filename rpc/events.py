"""The event hub: how the node tells the RPC layer about new heads and new pool transactions.

The node's import path (any thread) calls :meth:`EventHub.notify_new_head` after the
canonical head changes and :meth:`EventHub.notify_new_transaction` after the pool accepts
a transaction. Each running RPC app listens with its own event loop; delivery goes through
``loop.call_soon_threadsafe``, so callers never touch asyncio. The app works out what a
head change means (blocks added, blocks removed by a reorg) itself, on its own worker.
"""
from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass
from typing import Callable

from eth.abc import BlockAPI, ReceiptAPI, SignedTransactionAPI


@dataclass(frozen=True)
class NewHead:
    """The canonical head is now ``block_hash``."""

    block_hash: bytes


@dataclass(frozen=True)
class NewTransaction:
    """The pool accepted ``tx`` (a py-evm signed transaction)."""

    tx: SignedTransactionAPI


Event = NewHead | NewTransaction


@dataclass(frozen=True)
class ChainChange:
    """What one head change did: blocks removed from (by a reorg) and added to the
    canonical chain, each with its receipts; ``added`` in ascending block order."""

    removed: list[tuple[BlockAPI, list[ReceiptAPI]]]
    added: list[tuple[BlockAPI, list[ReceiptAPI]]]


class EventHub:
    """Fan-out of node events to listeners on event loops; safe to call from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._listeners: list[tuple[asyncio.AbstractEventLoop, Callable[[Event], None]]] = []

    def listen(self, loop: asyncio.AbstractEventLoop, callback: Callable[[Event], None]) -> Callable[[], None]:
        """Call ``callback(event)`` on ``loop`` for every event; returns the unlisten function."""
        entry = (loop, callback)
        with self._lock:
            self._listeners.append(entry)

        def unlisten() -> None:
            with self._lock:
                if entry in self._listeners:
                    self._listeners.remove(entry)

        return unlisten

    def notify_new_head(self, block_hash: bytes) -> None:
        """The canonical head changed (import or reorg); call from any thread."""
        self._publish(NewHead(bytes(block_hash)))

    def notify_new_transaction(self, tx: SignedTransactionAPI) -> None:
        """The pool accepted ``tx``; call from any thread."""
        self._publish(NewTransaction(tx))

    def _publish(self, event: Event) -> None:
        with self._lock:
            listeners = list(self._listeners)
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:  # not on an event loop's thread (the block builder, an RPC thread)
            running = None
        for loop, callback in listeners:
            if loop is running:  # already on that loop (eth_sendRawTransaction): no wake-up write
                loop.call_soon(callback, event)
                continue
            try:
                loop.call_soon_threadsafe(callback, event)
            except RuntimeError:  # that loop is closed: its app has shut down
                pass
