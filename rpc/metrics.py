"""Prometheus metrics at ``GET /metrics`` on the RPC port (prometheus_client's text format).

Most figures are read from the node's state when Prometheus scrapes, by one collector
(:class:`NodeCollector`): the head, peers, the pool, the miner's rates and counts, the
open jobs' progress, this node's rewards, and GPU telemetry through NVML. Only what must
be seen as it happens is recorded as it happens, by cheap hooks outside the hot paths:

* block import and verification times: a listener on the node's import log
  (node/imports.py), one histogram observe per imported block;
* JSON-RPC requests by method: each registered method's handler is wrapped once, when
  the app is built (a counter by outcome and a histogram per method, timed from parsed
  params to answer). Only registered method names become labels, so a client cannot
  grow the label set by calling made-up methods: those (-32601) and requests refused
  before their handler runs (bad JSON, bad params) are not counted here.

Every app has its own ``CollectorRegistry`` (tests run many nodes in one process).
Scrapes run in the RPC thread executor: they read LevelDB and NVML.

Metric names (all prefixed ``pouw_``) are listed in README.md ("Metrics").
"""
from __future__ import annotations

import collections
import dataclasses
import threading
import time
from typing import TYPE_CHECKING, AsyncIterator, Iterator, Optional

from aiohttp import web

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from rpc.context import CallContext
from rpc.registry import Method, Registry, await_handler
from rpc.sources import ImportedBlock

if TYPE_CHECKING:
    from rpc.backend import Backend
    from rpc.call_cache import CallCache
    from rpc.pouw_view import PouwView

__all__ = ["NodeMetrics", "NodeCollector", "RewardTally", "CONTENT_TYPE_LATEST", "MAX_JOB_SERIES"]

disable_created_metrics()  # no *_created series: they double the output and say nothing to an operator

IMPORT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
RPC_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
MAX_JOB_SERIES = 64
"""Most jobs given their own progress series (the open ones with the lowest ids, then the
standing jobs): anyone may post jobs, so the label set is bounded."""


class RewardTally:
    """What one coinbase earned in the canonical chain, kept up to date incrementally.

    Each scrape extends the tally from the last block counted to the head (our blocks
    only cost a reward and a fee lookup); a reorg below the last block counted starts it
    over. Immature = what the last ``maturity`` blocks credited."""

    def __init__(self, view: PouwView, address: bytes) -> None:
        self.view = view
        self.address = bytes(address)
        self._lock = threading.Lock()
        self._reset()

    def _reset(self) -> None:
        self.last: Optional[tuple[int, bytes]] = None
        self.blocks = 0
        self.total = 0
        self._recent: "collections.deque[tuple[int, int]]" = collections.deque()

    def update(self) -> tuple[int, int, int]:
        """(blocks mined, mature wei, immature wei) at the current head."""
        view = self.view
        with self._lock:
            head = view.chain.head()
            if self.last is not None:
                number, block_hash = self.last
                canonical = view.header(number)
                if number > head.block_number or canonical is None or bytes(canonical.hash) != block_hash:
                    self._reset()
            start = 1 if self.last is None else self.last[0] + 1
            for number in range(start, head.block_number + 1):
                header = view.header(number)
                if header is None:
                    break
                self.last = (number, bytes(header.hash))
                if bytes(header.coinbase) != self.address:
                    continue
                amount = view.block_reward(number) + view.block_fee(header)
                self.blocks += 1
                self.total += amount
                self._recent.append((number, amount))
            maturity = view.maturity
            while self._recent and self._recent[0][0] + maturity <= head.block_number:
                self._recent.popleft()
            immature = sum(amount for _, amount in self._recent) if maturity else 0
            return self.blocks, self.total - immature, immature


class NodeCollector(Collector):
    """Reads the node's state at scrape time (see the module doc)."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self._tally: Optional[RewardTally] = None

    def collect(self) -> Iterator[Metric]:
        yield from self._node()
        yield from self._chain()
        yield from self._pool()
        yield from self._miner()
        yield from self._jobs()
        yield from self._gpus()

    # --- pieces ---------------------------------------------------------------------------

    def _view(self) -> PouwView | None:
        return getattr(self.backend, "pouw", None)

    def _node(self) -> Iterator[Metric]:
        from importlib.metadata import PackageNotFoundError, version

        try:
            package = version("pouw-node")
        except PackageNotFoundError:
            package = "unknown"
        info = InfoMetricFamily("pouw_node", "This node: version, chain id and seal engine.")
        chain = getattr(self.backend, "chain", None)
        genesis = getattr(chain, "genesis", None)
        info.add_metric([], {
            "version": package,
            "chain_id": str(getattr(self.backend, "chain_id", "")),
            "seal_engine": str(getattr(genesis, "seal_engine", "")),
        })
        yield info
        yield GaugeMetricFamily("pouw_p2p_peers", "Connected p2p peers.", value=self.backend.peers.peer_count if self.backend.peers is not None else 0)

    def _chain(self) -> Iterator[Metric]:
        head = self.backend.head_header()
        yield GaugeMetricFamily("pouw_chain_head_block", "Number of the canonical head block.", value=int(head.block_number))
        yield GaugeMetricFamily("pouw_chain_head_timestamp_seconds", "Timestamp of the head block.", value=int(head.timestamp))
        yield GaugeMetricFamily("pouw_chain_head_difficulty", "Difficulty of the head block (work units per expected block).",
                                value=int(head.difficulty))

    def _pool(self) -> Iterator[Metric]:
        pool = getattr(self.backend, "pool", None)
        stats = pool.stats() if pool is not None and hasattr(pool, "stats") else None
        family = GaugeMetricFamily("pouw_txpool_transactions", "Transactions in the pool.", labels=["state"])
        family.add_metric(["pending"], 0 if stats is None else stats.pending)
        family.add_metric(["queued"], 0 if stats is None else stats.queued)
        yield family

    def _miner(self) -> Iterator[Metric]:
        miner = self.backend.miner
        status = miner.status() if miner is not None else None
        yield GaugeMetricFamily("pouw_miner_running", "1 while this node's miner runs.",
                                value=1 if status and status.get("mining") else 0)
        yield GaugeMetricFamily("pouw_miner_steps_per_second", "Training steps per second of this node's miner (30 s average).",
                                value=float(status["steps_per_second"]) if status else 0.0)
        yield GaugeMetricFamily("pouw_miner_work_units_per_second",
                                "Useful work units per second of this node's miner (30 s average).",
                                value=float(status["work_units_per_second"]) if status else 0.0)
        yield CounterMetricFamily("pouw_miner_blocks_mined", "Blocks this node's miner sealed and imported since it started.",
                                  value=int(status["blocks_mined"]) if status else 0)
        current = status.get("current") if status else None
        yield GaugeMetricFamily("pouw_miner_current_step", "Step reached in the miner's current trajectory.",
                                value=int(current["step"]) if current else 0)
        view = self._view()
        if miner is None or view is None:
            return
        if self._tally is None or self._tally.address != bytes(miner.coinbase):
            self._tally = RewardTally(view, bytes(miner.coinbase))
        blocks, mature, immature = self._tally.update()
        yield GaugeMetricFamily("pouw_miner_canonical_blocks", "Canonical blocks whose coinbase is this miner's.", value=blocks)
        rewards = GaugeMetricFamily("pouw_miner_rewards_eth", "Block rewards and job fees earned by this miner's coinbase "
                                    "in the canonical chain, in ETH (immature: not yet credited).", labels=["maturity"])
        rewards.add_metric(["mature"], mature / 10**18)
        rewards.add_metric(["immature"], immature / 10**18)
        yield rewards

    def _jobs(self) -> Iterator[Metric]:
        view = self._view()
        if view is None:
            return
        from rpc.pouw_view import STATUS_CODES

        jobs = view.jobs(statuses={STATUS_CODES["open"], STATUS_CODES["standing"]}, limit=MAX_JOB_SERIES)
        done = GaugeMetricFamily("pouw_job_steps_done", "Steps trained of each open job (and standing job).", labels=["job"])
        budget = GaugeMetricFamily("pouw_job_step_budget", "Step budget of each open job (and standing job).", labels=["job"])
        progress = GaugeMetricFamily("pouw_job_progress_ratio", "stepsDone / stepBudget of each open job, capped at 1.",
                                     labels=["job"])
        for job in jobs:
            label = _job_label(job.job_id)
            done.add_metric([label], job.steps_done)
            budget.add_metric([label], job.budget)
            progress.add_metric([label], min(1.0, job.steps_done / job.budget) if job.budget else 0.0)
        yield done
        yield budget
        yield progress
        open_jobs = GaugeMetricFamily("pouw_jobs_open", "Posted jobs open (capped at the series limit).",
                                      value=sum(1 for j in jobs if not j.is_standing))
        yield open_jobs

    def _gpus(self) -> Iterator[Metric]:
        from pouw.telemetry import NoGpu, gpu_snapshot

        snapshot = gpu_snapshot()
        available = not isinstance(snapshot, NoGpu)
        yield GaugeMetricFamily("pouw_gpu_available", "1 when NVML reports at least one GPU.", value=1 if available else 0)
        if isinstance(snapshot, NoGpu):
            return
        labels = ["gpu", "name"]
        util = GaugeMetricFamily("pouw_gpu_utilization_percent", "GPU utilisation (NVML).", labels=labels)
        used = GaugeMetricFamily("pouw_gpu_memory_used_bytes", "GPU memory in use (NVML).", labels=labels)
        total = GaugeMetricFamily("pouw_gpu_memory_total_bytes", "GPU memory (NVML).", labels=labels)
        temp = GaugeMetricFamily("pouw_gpu_temperature_celsius", "GPU temperature (NVML).", labels=labels)
        power = GaugeMetricFamily("pouw_gpu_power_watts", "GPU power draw (NVML).", labels=labels)
        for gpu in snapshot:
            key = [str(gpu.index), gpu.name]
            for family, value in ((util, gpu.utilization_gpu), (used, gpu.memory_used), (total, gpu.memory_total),
                                  (temp, gpu.temperature_c), (power, gpu.power_w)):
                if value is not None:
                    family.add_metric(key, float(value))
        yield from (util, used, total, temp, power)


def _job_label(job_id: int) -> str:
    from consensus.params import job_label

    return job_label(job_id)


class CallCacheCollector(Collector):
    """The eth_call cache's counts, read at scrape time."""

    def __init__(self, cache: "CallCache") -> None:
        self.cache = cache

    def collect(self) -> Iterator[Metric]:
        cache = self.cache
        calls = CounterMetricFamily(
            "pouw_rpc_call_cache_requests", "eth_call requests the cache saw, by how they were answered: hit (kept "
            "answer), shared (waited for the same call running), miss (ran the EVM).", labels=["result"])
        for result, count in (("hit", cache.hits), ("shared", cache.shared), ("miss", cache.misses)):
            calls.add_metric([result], count)
        yield calls
        yield GaugeMetricFamily("pouw_rpc_call_cache_bytes", "Bytes the kept eth_call answers count for.", value=cache.bytes)
        yield GaugeMetricFamily("pouw_rpc_call_cache_entries", "eth_call answers kept.", value=len(cache))


class NodeMetrics:
    """The metrics of one RPC app: its registry, the node collector, the event histograms."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(NodeCollector(backend))
        self.import_seconds = Histogram(
            "pouw_block_import_seconds", "Time to import a block: decode, checks, execution, work check, write.",
            ["source"], buckets=IMPORT_BUCKETS, registry=self.registry,
        )
        self.verify_seconds = Histogram(
            "pouw_block_verification_seconds",
            "Time in a block's work check (cheap checks, then its anchored and challenged segments).",
            ["source"], buckets=IMPORT_BUCKETS, registry=self.registry,
        )
        self.rpc_seconds = Histogram(
            "pouw_rpc_request_duration_seconds", "JSON-RPC request time by method, from parsed params to answer.",
            ["method"], buckets=RPC_BUCKETS, registry=self.registry,
        )
        self.rpc_requests = Counter(
            "pouw_rpc_requests", "JSON-RPC requests by method and outcome (ok, or error: an answer with an error).",
            ["method", "outcome"], registry=self.registry,
        )

    def watch_call_cache(self, cache: "CallCache") -> None:
        """Report the eth_call cache (rpc/call_cache.py) at each scrape."""
        self.registry.register(CallCacheCollector(cache))

    # --- hooks ----------------------------------------------------------------------------

    def on_import(self, record: ImportedBlock) -> None:
        """Listener of node/imports.py's ImportLog: one observe per imported block."""
        source = "local" if record.source == "local" else "peer"
        self.import_seconds.labels(source).observe(record.import_seconds)
        if record.verify_seconds is not None:
            self.verify_seconds.labels(source).observe(record.verify_seconds)

    async def lifecycle(self, app: web.Application) -> AsyncIterator[None]:
        """cleanup_ctx: listen to the node's imports while the app runs."""
        imports = self.backend.imports
        if imports is not None:
            imports.listeners.append(self.on_import)
        try:
            yield
        finally:
            if imports is not None and self.on_import in imports.listeners:
                imports.listeners.remove(self.on_import)

    def instrument(self, registry: Registry) -> Registry:
        """A registry whose every method counts and times its requests (same handlers,
        same params; a blocking method still runs in the executor, and its time includes
        the wait for a free thread, as its caller sees it)."""
        return Registry({name: self._timed(method) for name, method in registry.methods.items()})

    def _timed(self, method: Method) -> Method:
        seconds = self.rpc_seconds.labels(method.name)
        ok = self.rpc_requests.labels(method.name, "ok")
        failed = self.rpc_requests.labels(method.name, "error")
        handler = method.handler
        blocking, evm = method.blocking, method.evm

        async def timed(ctx: CallContext, *args: object) -> object:
            started = time.perf_counter()
            try:
                if evm:  # the EVM executor, under the wall-clock limit (rpc/evm_deadline.py)
                    result = await ctx.services.run_evm(handler, ctx, *args)
                elif blocking:
                    result = await ctx.services.run_blocking(handler, ctx, *args)
                else:
                    result = await await_handler(handler, ctx, *args)
            except BaseException:
                failed.inc()
                raise
            finally:
                seconds.observe(time.perf_counter() - started)
            ok.inc()
            return result

        return dataclasses.replace(method, handler=timed, blocking=False, evm=False)

    def render(self) -> bytes:
        """The exposition text (blocking: run it in the executor)."""
        return bytes(generate_latest(self.registry))
