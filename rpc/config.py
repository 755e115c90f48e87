"""Configuration of the RPC server: where it listens and the limits it enforces."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RpcConfig:
    """Listening address and the limits that keep one client from exhausting the node.

    CORS is off unless ``cors_origins`` names origins (``("*",)`` allows any).
    """

    host: str = "127.0.0.1"
    port: int = 8545
    cors_origins: tuple[str, ...] = ()
    #: Largest HTTP body or WebSocket message accepted, in bytes (geth: 5 MiB).
    max_body_bytes: int = 5 * 1024 * 1024
    #: Most requests in one batch (geth: 1000).
    max_batch: int = 1000
    #: Most blocks one eth_getLogs / eth_getFilterLogs may scan.
    max_log_range: int = 10_000
    #: Most logs one query may return (geth's 10000-result cap).
    max_log_results: int = 10_000
    #: Most installed filters, over all clients.
    max_filters: int = 10_000
    #: A filter not polled for this long is removed (geth: 5 minutes).
    filter_timeout_s: float = 300.0
    #: Most subscriptions one WebSocket connection may hold.
    max_subscriptions_per_conn: int = 128
    #: Most WebSocket connections open at once from one client address (``--ws-max-per-client``);
    #: one more is refused with HTTP 429 before the upgrade.
    max_ws_per_client: int = 32
    #: Requests one WebSocket connection may have in flight (further messages wait).
    max_inflight_per_conn: int = 64
    #: Bytes of answers and notifications that may wait behind the message being written
    #: to one WebSocket client; a client that lets more pile up (it does not read) is
    #: disconnected at once and its backlog freed.
    ws_max_queued_bytes: int = 4 * 1024 * 1024
    #: Largest JSON answer to one batch (geth's --rpc.batch-response-max-size: 25 MB): the
    #: requests past it are answered -32003 "response too large" and not run.
    max_batch_response_bytes: int = 25_000_000
    #: Bytes of request bodies being received at once, over all HTTP clients: a body
    #: waits for room (then 503), so unfinished bodies cannot fill the node's memory.
    max_pending_body_bytes: int = 32 * 1024 * 1024
    #: Seconds a client has to send a whole request body once the node reads it (408 after).
    body_timeout_s: float = 30.0
    #: An idle keep-alive HTTP connection is closed after this many seconds (geth: 120).
    idle_timeout_s: float = 120.0
    #: Gas cap for eth_call / eth_estimateGas / eth_simulateV1 (geth's --rpc.gascap: 50M).
    gas_cap: int = 50_000_000
    #: Wall-clock limit of one eth_call / eth_estimateGas / eth_createAccessList /
    #: eth_simulateV1, in seconds (geth's --rpc.evmtimeout: 5 s); 0 = no limit.
    evm_timeout_s: float = 5.0
    #: Bytes of eth_call answers kept by block hash and call (rpc/call_cache.py,
    #: ``--rpc-call-cache``); 0: none kept, every call runs.
    call_cache_bytes: int = 32 * 1024 * 1024
    #: Threads that run chain reads (blocks, receipts, state, log scans).
    executor_threads: int = 4
    #: Threads that run EVM simulations, apart from the reads above, so that heavy calls
    #: queue behind each other and never in front of a cheap read.
    evm_threads: int = 4
    #: Namespaces served (``--rpc-api``): a method of another namespace is -32601.
    apis: tuple[str, ...] = ("eth", "net", "web3", "txpool", "pouw")
    #: JSON nesting deeper than this is refused before decoding.
    max_json_depth: int = 64
    #: Serve the dashboard (rpc/dashboard/) at GET / for a browser (``--no-dashboard``).
    dashboard: bool = True
    #: Serve Prometheus metrics at GET /metrics (rpc/metrics.py; ``--no-metrics``).
    metrics: bool = True
    #: Dataset uploads (``POST /pouw/datasets``) received at once; more wait up to
    #: ``upload_wait_s`` for a turn, then get 503. Each is spooled to disk, and checked
    #: and stored one at a time, so memory holds one dataset at most (rpc/uploads.py).
    max_concurrent_uploads: int = 2
    upload_wait_s: float = 60.0
    #: Most bytes of uploaded datasets that no posted job names (``--dataset-quota``).
    dataset_quota_bytes: int = 1 << 30
    #: Where uploads are spooled (the node: DATADIR/uploads); None: the system's temp dir.
    upload_dir: str | None = None
