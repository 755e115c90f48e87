"""Automine for dev and test chains (no-proof seal engine only), like anvil's automine.

A daemon thread that, whenever the pool holds transactions, builds a block on the head,
imports it, and announces the new head to the RPC layer. The CLI may use it for a
``--dev`` chain; tests and ``bench/bench_rpc.py`` use it to produce blocks.
"""
from __future__ import annotations

import logging
import threading
from eth.abc import BlockAPI
from eth_typing import Address

from rpc.backend import ChainBackend

log = logging.getLogger("rpc.automine")

DEV_COINBASE = Address(b"\x00" * 19 + b"\xc0")


class Automine:
    """Mine a block whenever the pool is non-empty; ``mine_now()`` mines one at once."""

    def __init__(self, backend: ChainBackend, *, interval_s: float = 0.005, coinbase: bytes = DEV_COINBASE) -> None:
        self.backend = backend
        self.interval_s = interval_s
        self.coinbase = Address(coinbase)
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self.blocks_mined = 0

    def start(self) -> "Automine":
        self._thread = threading.Thread(target=self._run, name="automine", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> "Automine":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def mine_now(self, *, allow_empty: bool = True) -> BlockAPI | None:
        """Build, import and announce one block; returns it (None if nothing to mine)."""
        backend = self.backend
        chain = backend.chain
        with chain.write_lock:  # build on the head and import, nothing in between
            pending = backend.pending_transactions()
            if not pending and not allow_empty:
                return None
            head = chain.head()
            block, payload = chain.build_block(self.coinbase, timestamp=head.timestamp + 1)
            if not block.transactions and not allow_empty:
                return None  # nothing in the pool can be included yet
            chain.import_block(block, payload)
        self.blocks_mined += 1
        backend.notify_new_head(block.hash)
        return block

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.mine_now(allow_empty=False)
            except Exception:  # noqa: BLE001 - keep mining; a test will notice the missing block
                log.exception("automine failed")
            self._wake.wait(self.interval_s)
            self._wake.clear()
