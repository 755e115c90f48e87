"""Answers of eth_call kept by block hash, and identical calls in flight run once.

An ``eth_call`` without state overrides is a function of the block it runs on (its
state and the child block context: number, timestamp, coinbase, ancestors' hashes, all
fixed by the block's hash), of the call object and of the node's gas cap. So its answer
(the output, the revert data, or the error message) can be kept under ``(block hash,
call)`` and given again without running the EVM: dApps poll the same view functions
(balances, reserves, prices) from many clients between two blocks. A new head is a new
hash, so nothing is ever invalidated, and old entries simply age out.

Only outcomes of a finished execution are kept: a call stopped by the wall-clock limit
(``--rpc-evmtimeout``), or that failed in the node, is not. Calls with state overrides
are not kept (they are rare and their key would be large). Calls whose data or output
is large are answered but not kept.

Identical calls that arrive while the first is still running wait for its answer
instead of running again ("single flight"); the run belongs to no single client, so a
client that hangs up does not cancel it for the others.

The cache is bounded in bytes (``RpcConfig.call_cache_bytes``, ``--rpc-call-cache``);
least recently used entries go first. 0 turns it off.
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Awaitable, Callable, Hashable

from common.lru import SizedLRU
from rpc.backend import CallRequest

#: Calls with more data than this, or answers larger than this, are not kept.
MAX_ENTRY_BYTES = 64 * 1024
#: What an entry holds beyond its data and output, in CPython: the key tuple, the
#: parsed call (addresses, integers), the outcome and its string, the dict's node.
#: Measured with tracemalloc over 5,000 small distinct calls: about 690 bytes
#: (tests/rpc/test_call_attacks.py).
ENTRY_OVERHEAD = 800
#: An access-list address (bytes object, its tuple, the pointer) and a storage key.
ACCESS_ADDRESS_BYTES = 128
ACCESS_SLOT_BYTES = 72


def request_bytes(request: CallRequest) -> int:
    """What a call's data and access list hold in memory as part of a key."""
    slots = sum(len(keys) for _, keys in request.access_list)
    return len(request.data) + ACCESS_ADDRESS_BYTES * len(request.access_list) + ACCESS_SLOT_BYTES * slots


@dataclass(frozen=True, slots=True)
class CallOutcome:
    """How a finished call ended: ``output`` (hex) when it succeeded, else the revert
    data (``reverted``) or the error message."""

    output: str | None = None
    reverted: bytes | None = None
    error: str | None = None

    @property
    def size(self) -> int:
        return len(self.output or "") + len(self.reverted or b"") + len(self.error or "")


class CallCache:
    """``key -> CallOutcome``, least recently used first out, at most ``max_bytes``."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._entries: SizedLRU[Hashable, CallOutcome] = SizedLRU(max_bytes)
        self._running: dict[Hashable, asyncio.Future[CallOutcome]] = {}
        self.hits = 0
        self.misses = 0
        self.shared = 0

    @property
    def bytes(self) -> int:
        return self._entries.bytes

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: Hashable) -> CallOutcome | None:
        return self._entries.get(key)

    def put(self, key: Hashable, outcome: CallOutcome, key_bytes: int) -> None:
        cost = outcome.size + key_bytes + ENTRY_OVERHEAD
        if cost <= MAX_ENTRY_BYTES + ENTRY_OVERHEAD:
            self._entries.put(key, outcome, cost)

    async def run(self, key: Hashable, key_bytes: int, compute: Callable[[], Awaitable[CallOutcome]]) -> CallOutcome:
        """The kept outcome for ``key``, else the one of the identical call in flight,
        else ``compute()``'s (kept if it returns; an exception is raised to every
        caller waiting for it and nothing is kept)."""
        if self.max_bytes <= 0 or key_bytes > MAX_ENTRY_BYTES:
            return await compute()
        outcome = self.get(key)
        if outcome is not None:
            self.hits += 1
            return outcome
        running = self._running.get(key)
        if running is not None:
            self.shared += 1
            return await asyncio.shield(running)
        self.misses += 1
        task = asyncio.ensure_future(compute())
        self._running[key] = task

        def finished(done: "asyncio.Future[CallOutcome]") -> None:
            self._running.pop(key, None)
            if not done.cancelled() and done.exception() is None:
                self.put(key, done.result(), key_bytes)

        task.add_done_callback(finished)
        return await asyncio.shield(task)
