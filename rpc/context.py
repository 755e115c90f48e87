"""What a method handler gets: the node's services and, over WebSocket, its connection."""
from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Protocol

from rpc.config import RpcConfig

if TYPE_CHECKING:
    from rpc.backend import Backend
    from rpc.events import EventHub
    from rpc.filters import FilterManager
    from rpc.subscriptions import SubscriptionSet


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
    uploads: Any = None
    """rpc.uploads.DatasetUploads: dataset uploads under the quota (set by create_app)."""

    async def run_blocking(self, func: Callable[..., Any], *args: Any) -> Any:
        """Run ``func(*args)`` in the thread executor and await its result."""
        return await self.loop.run_in_executor(self.executor, lambda: func(*args))


@dataclass
class CallContext:
    """Passed as the first argument of every handler."""

    services: Services
    connection: Connection | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def backend(self) -> "Backend":
        return self.services.backend

    @property
    def config(self) -> RpcConfig:
        return self.services.config
