"""Automine for dev and test chains (no-proof seal engine only), like anvil's automine.

A daemon thread that, whenever the pool holds transactions, builds a block on the head,
imports it, and announces the new head to the RPC layer. The CLI may use it for a
``--dev`` chain; tests and ``bench/bench_rpc.py`` use it to produce blocks.

When it mines: as soon as a transaction enters the pool through this backend (it is
woken), else when it looks at the pool, every ``interval_s`` (50 ms: for transactions
that reach the pool another way, such as a reorg's). A transaction sent on its own (a
test suite sending one, then waiting for its receipt) is mined at once. Under
load, when the last block held more than one transaction, the next block starts no
sooner than ``busy_period_s`` (20 ms) after the last one started: every block costs the
same fixed work (state root, system calls, import, about 1.2 ms here) whatever it holds,
and it holds the GIL the RPC needs to take the next transactions in. Measured with
bench/bench_rpc.py's transfer workload (2 cores): a 5 ms pause after every block gave
~1,150-1,330 tx/s from five senders; this rule ~1,400-1,450 (see rpc/README.md).
"""
from __future__ import annotations

import logging
import threading
import time
from eth.abc import BlockAPI
from eth_typing import Address

from rpc.backend import ChainBackend

log = logging.getLogger("rpc.automine")

DEV_COINBASE = Address(b"\x00" * 19 + b"\xc0")


class Automine:
    """Mine a block whenever the pool is non-empty; ``mine_now()`` mines one at once."""

    def __init__(
        self,
        backend: ChainBackend,
        *,
        interval_s: float = 0.05,
        busy_period_s: float = 0.02,
        coinbase: bytes = DEV_COINBASE,
    ) -> None:
        self.backend = backend
        self.interval_s = interval_s
        self.busy_period_s = busy_period_s
        self.coinbase = Address(coinbase)
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self.blocks_mined = 0

    def start(self) -> "Automine":
        self.backend.transaction_listeners.append(self._on_transaction)
        self._thread = threading.Thread(target=self._run, name="automine", daemon=True)
        self._thread.start()
        return self

    def _on_transaction(self, _tx: object) -> None:
        self._wake.set()  # a transaction sent on its own is mined without waiting for the poll

    def stop(self) -> None:
        if self._on_transaction in self.backend.transaction_listeners:
            self.backend.transaction_listeners.remove(self._on_transaction)
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
        last_start = float("-inf")
        last_size = 0
        while not self._stop.is_set():
            pool = self.backend.pool
            if pool is None or not len(pool):
                self._idle()
                continue
            if last_size > 1:  # busy: let the next block fill (see the module docstring)
                pause = last_start + self.busy_period_s - time.monotonic()
                if pause > 0 and self._stop.wait(pause):
                    break
            last_start = time.monotonic()
            try:
                block = self.mine_now(allow_empty=False)
            except Exception:  # noqa: BLE001 - keep mining; a test will notice the missing block
                log.exception("automine failed")
                block = None
            if block is None:  # nothing in the pool could be included (a nonce gap): wait
                last_size = 0
                self._idle()
            else:
                last_size = len(block.transactions)

    def _idle(self) -> None:
        """Until a transaction is admitted, or ``interval_s``."""
        self._wake.wait(self.interval_s)
        self._wake.clear()
