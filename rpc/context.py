"""What a method handler gets: the node's services and, over WebSocket, its connection."""
from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Protocol, TypeVar, TypeVarTuple, Unpack

from rpc.config import RpcConfig

from rpc.errors import ServerError
from rpc.evm_deadline import CallTimeout, LeaveTheLoop, TimeShare, deadline, on_the_loop

if TYPE_CHECKING:
    from rpc.backend import Backend
    from rpc.call_cache import CallCache
    from rpc.events import EventHub
    from rpc.filters import FilterManager
    from rpc.subscriptions import SubscriptionSet
    from rpc.uploads import DatasetUploads

T = TypeVar("T")
Args = TypeVarTuple("Args")


class Connection(Protocol):
    """A client connection that can carry notifications (a WebSocket)."""

    subscriptions: "SubscriptionSet"


@dataclass
class Services:
    """Everything the methods share: built once per app by ``create_app``."""

    backend: "Backend"
    config: RpcConfig
    hub: "EventHub"
    filters: "FilterManager"
    executor: ThreadPoolExecutor
    loop: asyncio.AbstractEventLoop
    #: Runs EVM simulations (eth_call, ...); defaults to ``executor``.
    evm_executor: ThreadPoolExecutor | None = None
    uploads: "DatasetUploads | None" = None
    """Dataset uploads under the quota (set by create_app)."""
    #: eth_call answers by block hash (rpc/call_cache.py); None: every call runs.
    call_cache: "CallCache | None" = None
    #: The share of the loop's time EVM calls tried on it may take (rpc/evm_deadline.py).
    loop_share: "TimeShare" = field(default_factory=TimeShare)

    async def run_blocking(self, func: Callable[[Unpack[Args]], T], *args: Unpack[Args]) -> T:
        """Run ``func(*args)`` in the thread executor and await its result."""
        return await self.loop.run_in_executor(self.executor, lambda: func(*args))

    async def run_evm(self, func: Callable[[Unpack[Args]], T], *args: Unpack[Args], try_inline: bool = False) -> T:
        """Run an EVM simulation ``func(*args)`` in the EVM executor under the configured
        wall-clock limit (rpc/evm_deadline.py); a call past it is -32000
        ``execution aborted (timeout = 5s)``, as in geth.

        ``try_inline``: first try it right here on the event loop within a small budget
        (``evm_deadline.on_the_loop``: 2 ms, no large gas charge, no precompile), while
        such tries have taken less than a quarter of the loop's time (``TimeShare``).
        Most view calls finish well inside it, and handing a call to a thread and back
        costs about as much as running it; a call that does not fit stops at once and
        runs in the executor from the start, within what is left of the limit."""
        started = time.monotonic()
        if try_inline and self.loop_share.allows(started):
            try:
                with deadline(self.config.evm_timeout_s, start=started), on_the_loop():
                    return func(*args)
            except LeaveTheLoop:
                pass
            except CallTimeout as exc:
                raise ServerError(str(exc)) from None
            finally:
                self.loop_share.spend(time.monotonic() - started)

        def limited() -> T:
            try:
                with deadline(self.config.evm_timeout_s, start=started):
                    return func(*args)
            except CallTimeout as exc:
                raise ServerError(str(exc)) from None

        return await self.loop.run_in_executor(self.evm_executor or self.executor, limited)


@dataclass
class CallContext:
    """Passed as the first argument of every handler."""

    services: Services
    connection: Connection | None = None
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def backend(self) -> "Backend":
        return self.services.backend

    @property
    def config(self) -> RpcConfig:
        return self.services.config
