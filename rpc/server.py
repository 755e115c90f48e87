"""The aiohttp application: JSON-RPC 2.0 over HTTP POST and WebSocket on ``/``.

``create_app(backend, config)`` builds the app; its services (thread executor, filter
table, event worker, filter sweeper) start and stop with ``cleanup_ctx``. ``serve`` runs
it for the CLI; ``running_server`` is the same as an async context manager for tests and
benchmarks.

Request path: body size check -> Dispatcher (parse, batch, registry, params, handler,
error mapping) -> response. Event path: EventHub -> event worker (computes added and
removed blocks) -> filters and each connection's subscriptions.
"""
from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import AsyncIterator, Awaitable, Callable

from aiohttp import WSMsgType, web

from rpc.backend import Backend
from rpc.call_cache import CallCache
from rpc.config import RpcConfig
from rpc.context import CallContext, Services
from rpc.dispatch import Dispatcher, encode_json, error_response
from rpc.errors import InvalidRequest, LimitExceeded, RpcLayerError
from rpc.events import Event, NewHead, NewTransaction
from rpc.filters import FilterManager
from rpc.metrics import CONTENT_TYPE_LATEST, NodeMetrics
from rpc.registry import Registry
from rpc.subscriptions import SubscriptionSet
from rpc.uploads import DatasetUploads, UploadError

log = logging.getLogger("rpc")

CONFIG = web.AppKey("rpc_config", RpcConfig)
BACKEND = web.AppKey("rpc_backend", Backend)
REGISTRY = web.AppKey("rpc_registry", Registry)
SERVICES = web.AppKey("rpc_services", Services)
CALL_CACHE = web.AppKey("rpc_call_cache", CallCache)
DISPATCHER = web.AppKey("rpc_dispatcher", Dispatcher)
METRICS = web.AppKey("rpc_metrics", NodeMetrics)


class Connections:
    """The open WebSocket connections of one app (event fan-out goes to each), and how
    many each client address holds (``max_ws_per_client``)."""

    def __init__(self) -> None:
        self.live: set["WsConnection"] = set()
        self.per_address: collections.Counter[str] = collections.Counter()


CONNECTIONS = web.AppKey("rpc_connections", Connections)


class BudgetFull(RpcLayerError):
    """No room in the body budget within the wait (answered 503)."""


class BodyBudget:
    """Bytes of HTTP request bodies being received at once, over all clients. A body
    larger than ``SMALL_BODY`` reserves its announced length (or the body limit) before
    it is read; without room within ``wait_s``, :class:`BudgetFull` (a 503). Unfinished
    bodies then hold at most ``total`` bytes of the node's memory, however many
    connections send them (aiohttp stops reading a socket whose body is not read)."""

    SMALL_BODY = 64 * 1024

    def __init__(self, total: int) -> None:
        self.total = total
        self.used = 0
        self._changed = asyncio.Condition()

    @contextlib.asynccontextmanager
    async def reserve(self, size: int, wait_s: float) -> AsyncIterator[None]:
        size = 0 if size <= self.SMALL_BODY else min(size, self.total)
        if size:
            async with self._changed:
                try:
                    await asyncio.wait_for(self._changed.wait_for(lambda: self.used + size <= self.total), wait_s)
                except asyncio.TimeoutError:
                    raise BudgetFull() from None
                self.used += size
        try:
            yield
        finally:
            if size:
                async with self._changed:
                    self.used -= size
                    self._changed.notify_all()


BODY_BUDGET = web.AppKey("rpc_body_budget", BodyBudget)
#: How long a large body waits for room in the body budget before a 503.
BODY_WAIT_S = 5.0

#: How often idle filters are swept.
FILTER_SWEEP_S = 15.0


def build_registry(*extra: Registry) -> Registry:
    """Every namespace the node can serve: ``eth_``/``net_``/``web3_``, ``txpool_``,
    ``admin_`` and ``pouw_`` (with the operator's methods of rpc/operator_methods.py);
    ``RpcConfig.apis`` chooses among them."""
    from rpc.eth_methods import eth
    from rpc.node_methods import node
    from rpc.operator_methods import operator
    from rpc.accounts import signing
    from rpc.audit_methods import audits
    from rpc.pouw_methods import pouw

    return eth.merge(signing, node, pouw, operator, audits, *extra)


def create_app(backend: Backend, config: RpcConfig | None = None, registry: Registry | None = None) -> web.Application:
    """The JSON-RPC application for ``backend``."""
    config = config or RpcConfig()
    # CORS is off unless configured: no middleware at all then (each one wraps every
    # request; an OPTIONS preflight gets aiohttp's 405, as the middleware answered it)
    middlewares = [_cors_middleware(config)] if config.cors_origins else []
    app = web.Application(client_max_size=config.max_body_bytes, middlewares=middlewares)
    app[CONFIG] = config
    app[BACKEND] = backend
    app[REGISTRY] = (registry or build_registry()).only(config.apis)
    app[CALL_CACHE] = CallCache(config.call_cache_bytes)
    if config.metrics:  # GET /metrics; every method counted and timed (rpc/metrics.py)
        metrics = app[METRICS] = NodeMetrics(backend)
        metrics.watch_call_cache(app[CALL_CACHE])
        app[REGISTRY] = metrics.instrument(app[REGISTRY])
        app.cleanup_ctx.append(metrics.lifecycle)
        app.router.add_get(METRICS_PATH, handle_metrics)
    app[DISPATCHER] = Dispatcher(app[REGISTRY], config.max_batch, config.max_json_depth, config.max_batch_response_bytes)
    app[CONNECTIONS] = Connections()
    app[BODY_BUDGET] = BodyBudget(config.max_pending_body_bytes)
    app.cleanup_ctx.append(_services)
    app.router.add_post("/", handle_http)
    app.router.add_get("/", handle_websocket)  # a browser's plain GET gets the dashboard
    app.router.add_post(DATASET_UPLOAD_PATH, handle_dataset_upload)
    if config.dashboard:
        from rpc.dashboard import add_dashboard_routes

        add_dashboard_routes(app)
    return app


async def _services(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    backend = app[BACKEND]
    loop = asyncio.get_running_loop()
    executor = ThreadPoolExecutor(config.executor_threads, thread_name_prefix="rpc")
    evm_executor = ThreadPoolExecutor(config.evm_threads, thread_name_prefix="rpc-evm")
    filters = FilterManager(config.max_filters, config.filter_timeout_s)
    services = Services(backend, config, backend.events, filters, executor, loop, evm_executor)
    services.uploads = DatasetUploads(backend, config)
    services.call_cache = app[CALL_CACHE]
    app[SERVICES] = services
    queue: asyncio.Queue[Event] = asyncio.Queue()
    unlisten = backend.events.listen(loop, queue.put_nowait)
    tasks = [
        asyncio.create_task(_event_worker(app, queue)),
        asyncio.create_task(_sweep_filters(filters)),
    ]
    try:
        yield
    finally:
        unlisten()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for connection in list(app[CONNECTIONS].live):
            await connection.ws.close()
        services.uploads.close()
        # Wait for running chain reads: the node closes its database right after we stop,
        # and a LevelDB read still running in a thread would then crash the process.
        await loop.run_in_executor(None, lambda: executor.shutdown(wait=True, cancel_futures=True))
        await loop.run_in_executor(None, lambda: evm_executor.shutdown(wait=True, cancel_futures=True))


async def _event_worker(app: web.Application, queue: "asyncio.Queue[Event]") -> None:
    """Turn node events into filter entries and subscription notifications, in order."""
    services = app[SERVICES]
    backend = services.backend
    last_head: bytes = (await services.run_blocking(backend.head)).hash
    while True:
        event = await queue.get()
        try:
            if isinstance(event, NewHead):
                if event.block_hash == last_head:
                    continue
                listening = _listening(app)
                if not listening:  # nothing to tell: skip reading the new blocks
                    last_head = event.block_hash
                    continue
                change = await services.run_blocking(
                    functools.partial(backend.head_change, receipts="logs" in listening), last_head, event.block_hash)
                last_head = event.block_hash
                services.filters.on_chain_change(change)
                for connection in list(app[CONNECTIONS].live):
                    connection.subscriptions.on_chain_change(change)
            elif isinstance(event, NewTransaction):
                services.filters.on_new_transaction(event.tx.hash)
                for connection in list(app[CONNECTIONS].live):
                    connection.subscriptions.on_new_transaction(event.tx)
        except Exception:  # noqa: BLE001 - one bad event must not stop the worker
            log.exception("rpc event worker failed on %r", event)


def _listening(app: web.Application) -> set[str]:
    """What installed filters and WebSocket subscriptions want of chain changes: "blocks"
    (block filters, newHeads) and "logs" (log filters and subscriptions)."""
    kinds = {"logs" if f.kind == "logs" else "blocks" for f in app[SERVICES].filters.filters.values() if f.kind != "pending"}
    for connection in app[CONNECTIONS].live:
        for sub in connection.subscriptions.active.values():
            if sub.kind != "newPendingTransactions":
                kinds.add("logs" if sub.kind == "logs" else "blocks")
    return kinds


async def _sweep_filters(filters: FilterManager) -> None:
    while True:
        await asyncio.sleep(min(FILTER_SWEEP_S, filters.timeout_s))
        filters.expire()


# -- HTTP --------------------------------------------------------------------

def _too_large(config: RpcConfig) -> web.Response:
    error = InvalidRequest(f"request body too large (limit {config.max_body_bytes} bytes)")
    return web.Response(status=413, text=encode_json(error_response(error)), content_type="application/json")


def _closing_error(status: int, message: str) -> web.Response:
    """An error answer after which the connection is closed (its body is left unread)."""
    response = web.Response(status=status, text=encode_json(error_response(LimitExceeded(message))),
                            content_type="application/json")
    response.force_close()
    return response


async def handle_http(request: web.Request) -> web.StreamResponse:
    app = request.app
    config = app[CONFIG]
    if request.content_length is not None and request.content_length > config.max_body_bytes:
        return _too_large(config)
    announced = config.max_body_bytes if request.content_length is None else request.content_length
    try:
        if announced <= BodyBudget.SMALL_BODY:  # most requests: no reservation to make
            async with asyncio.timeout(config.body_timeout_s):
                body = await request.read()
        else:
            async with app[BODY_BUDGET].reserve(announced, BODY_WAIT_S), asyncio.timeout(config.body_timeout_s):
                body = await request.read()
    except web.HTTPRequestEntityTooLarge:
        return _too_large(config)
    except BudgetFull:
        return _closing_error(503, "busy receiving other large request bodies; retry later")
    except asyncio.TimeoutError:
        return _closing_error(408, f"request body not received within {config.body_timeout_s:g} s")
    ctx = CallContext(app[SERVICES])
    answer = await app[DISPATCHER].handle_text(body, ctx)
    if answer is None:
        return web.Response(status=200, text="", content_type="application/json")
    return web.Response(text=answer, content_type="application/json")


# -- metrics -------------------------------------------------------------------

METRICS_PATH = "/metrics"


async def handle_metrics(request: web.Request) -> web.StreamResponse:
    """Prometheus' text format; the scrape reads the chain, so it runs in the executor."""
    body = await request.app[SERVICES].run_blocking(request.app[METRICS].render)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


# -- dataset upload ------------------------------------------------------------

#: Raw dataset files larger than a JSON-RPC body allows are POSTed here (docs/rpc-pouw.md).
DATASET_UPLOAD_PATH = "/pouw/datasets"
_UPLOAD_CHUNK = 1 << 20


def _json_answer(status: int, body: object) -> web.Response:
    return web.Response(status=status, text=encode_json(body), content_type="application/json")


async def handle_dataset_upload(request: web.Request) -> web.StreamResponse:
    """``POST /pouw/datasets`` with the file as the body: pouw_putDataset without hex and
    without the JSON-RPC body limit; the chain's maxDatasetBytes bounds it instead. The body
    is streamed to disk and refused as soon as it passes the limit; uploads take turns and
    are kept under the node's dataset quota (rpc/uploads.py)."""
    from rpc.pouw_methods import dataset_json
    from rpc.pouw_view import PouwViewError

    services = request.app[SERVICES]
    view = getattr(services.backend, "pouw", None)
    if view is None:
        return _json_answer(404, {"error": "this node does not serve the pouw_ namespace"})
    limit = view.max_dataset_bytes
    if request.content_length is not None and request.content_length > limit:
        return _json_answer(413, {"error": f"dataset refused: larger than this chain's limit of {limit} bytes"})
    uploads = services.uploads
    assert uploads is not None, "create_app's services carry the uploads"
    try:
        async with uploads.turn():
            spooled = await uploads.receive(request.content.iter_chunked(_UPLOAD_CHUNK), limit)
            try:
                info = await services.run_blocking(uploads.store_file, spooled)
            finally:
                spooled.remove()
    except UploadError as exc:
        headers = {"Retry-After": "10"} if exc.status == 503 else None
        response = _json_answer(exc.status, {"error": str(exc)})
        if headers:
            response.headers.update(headers)
        return response
    except PouwViewError as exc:
        return _json_answer(400, {"error": str(exc)})
    return _json_answer(200, dataset_json(info))


# -- WebSocket -----------------------------------------------------------------

class WsConnection:
    """One WebSocket client: its subscriptions and an ordered outgoing queue, bounded in
    bytes: a client that does not read is disconnected, not buffered for."""

    def __init__(self, ws: web.WebSocketResponse, config: RpcConfig, transport: asyncio.Transport | None = None) -> None:
        self.ws = ws
        self.transport = transport
        self.outgoing: asyncio.Queue[str | None] = asyncio.Queue()
        self.queued_bytes = 0
        """Bytes waiting behind the message being written (which no longer counts)."""
        self.max_queued_bytes = config.ws_max_queued_bytes
        self.dropped = False
        self.subscriptions = SubscriptionSet(config.max_subscriptions_per_conn, self._notify)

    def _notify(self, subscription_id: str, result: object) -> None:
        message = {"jsonrpc": "2.0", "method": "eth_subscription", "params": {"subscription": subscription_id, "result": result}}
        self.send(encode_json(message))

    def send(self, text: str) -> None:
        """Queue ``text``; past the byte bound (with something already waiting) the client
        is too slow and is dropped."""
        if self.dropped:
            return
        if self.queued_bytes and self.queued_bytes + len(text) > self.max_queued_bytes:
            self.drop()
            return
        self.queued_bytes += len(text)
        self.outgoing.put_nowait(text)

    def drop(self) -> None:
        """Disconnect at once (nothing more is written) and free the backlog."""
        log.warning("websocket client not reading (over %d bytes waiting); disconnecting", self.max_queued_bytes)
        self.dropped = True
        self.subscriptions.active.clear()
        while not self.outgoing.empty():
            self.outgoing.get_nowait()
        self.queued_bytes = 0
        if self.transport is not None:
            self.transport.abort()
        self.outgoing.put_nowait(None)

    async def writer(self) -> None:
        while True:
            text = await self.outgoing.get()
            if text is None or self.ws.closed:
                if not self.dropped:
                    await self.ws.close()
                return
            self.queued_bytes -= len(text)
            await self.ws.send_str(text)


async def handle_websocket(request: web.Request) -> web.StreamResponse:
    app = request.app
    config = app[CONFIG]
    # aiohttp refuses a message of max_msg_size bytes or more: + 1 so that the limit is
    # the same as over HTTP (a message of exactly max_body_bytes is served)
    ws = web.WebSocketResponse(max_msg_size=config.max_body_bytes + 1, heartbeat=60)
    if not ws.can_prepare(request).ok:
        if config.dashboard:
            from rpc.dashboard import dashboard_page

            return dashboard_page()
        return web.Response(status=405, text="use POST for JSON-RPC over HTTP, or upgrade to WebSocket")
    remote = request.remote or "unknown"
    per_address = app[CONNECTIONS].per_address
    if per_address[remote] >= config.max_ws_per_client:
        error = LimitExceeded(
            f"too many WebSocket connections from {remote}: at most {config.max_ws_per_client} "
            "per client address (close one, or use HTTP)"
        )
        return web.Response(status=429, text=encode_json(error_response(error)), content_type="application/json")
    per_address[remote] += 1  # counted before any await: a burst of upgrades cannot slip past
    try:
        return await _serve_websocket(request, ws)
    finally:
        per_address[remote] -= 1
        if per_address[remote] <= 0:
            del per_address[remote]


async def _serve_websocket(request: web.Request, ws: web.WebSocketResponse) -> web.StreamResponse:
    app = request.app
    config = app[CONFIG]
    await ws.prepare(request)
    connection = WsConnection(ws, config, request.transport)
    ctx = CallContext(app[SERVICES], connection=connection)
    dispatcher = app[DISPATCHER]
    writer = asyncio.create_task(connection.writer())
    pending: set[asyncio.Task[None]] = set()
    inflight = asyncio.Semaphore(config.max_inflight_per_conn)

    async def answer(text: str | bytes, weight: int) -> None:
        try:
            reply = await dispatcher.handle_text(text, ctx)
            if reply is not None:
                connection.send(reply)
        finally:
            for _ in range(weight):
                inflight.release()

    app[CONNECTIONS].live.add(connection)
    try:
        async for message in ws:
            if message.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                # backpressure: stop reading while the client has too many in flight; a
                # batch (up to max_batch requests) takes them all, so one runs at a time
                weight = config.max_inflight_per_conn if _is_batch(message.data) else 1
                for _ in range(weight):
                    await inflight.acquire()
                task = asyncio.create_task(answer(message.data, weight))
                pending.add(task)
                task.add_done_callback(pending.discard)
            elif message.type == WSMsgType.ERROR:
                break
    finally:
        app[CONNECTIONS].live.discard(connection)
        connection.subscriptions.active.clear()
        for task in list(pending):
            task.cancel()
        writer.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await writer
    return ws


def _is_batch(data: str | bytes) -> bool:
    head = data.lstrip()[:1]
    return head in ("[", b"[")


# -- CORS ----------------------------------------------------------------------

def _cors_middleware(config: RpcConfig) -> Callable[..., Awaitable[web.StreamResponse]]:
    allowed = set(config.cors_origins)

    @web.middleware
    async def cors(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
        origin = request.headers.get("Origin")
        permitted = bool(allowed) and origin is not None and ("*" in allowed or origin in allowed)
        if request.method == "OPTIONS":
            if not permitted:
                return web.Response(status=403 if allowed else 405)
            response: web.StreamResponse = web.Response(status=204)
        else:
            response = await handler(request)
        if permitted and not response.prepared:
            response.headers["Access-Control-Allow-Origin"] = "*" if "*" in allowed else origin  # type: ignore[assignment]
            response.headers["Access-Control-Allow-Methods"] = "POST, GET, OPTIONS"
            response.headers["Access-Control-Allow-Headers"] = "Content-Type"
            response.headers["Vary"] = "Origin"
        return response

    return cors


# -- running -------------------------------------------------------------------

@contextlib.asynccontextmanager
async def running_server(backend: Backend, config: RpcConfig | None = None) -> AsyncIterator[str]:
    """Serve on config.host:config.port (port 0 = any free port); yields the base URL."""
    config = config or RpcConfig()
    runner = web.AppRunner(create_app(backend, config), access_log=None, keepalive_timeout=config.idle_timeout_s)
    await runner.setup()
    site = web.TCPSite(runner, config.host, config.port)
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()  # stop the app's services before the caller sees the error
        raise
    try:
        port = runner.addresses[0][1] if runner.addresses else config.port
        yield f"http://{config.host}:{port}"
    finally:
        await runner.cleanup()


async def serve(backend: Backend, config: RpcConfig | None = None) -> None:
    """Serve until cancelled (the CLI's ``run`` awaits this)."""
    config = config or RpcConfig()
    async with running_server(backend, config) as url:
        log.info("JSON-RPC listening on %s (HTTP and WebSocket)", url)
        await asyncio.Event().wait()
