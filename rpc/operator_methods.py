"""What an operator's tools read of a node: its identity, its imports, a job's history.

Three ``pouw_`` methods (docs/rpc-pouw.md) behind the dashboard (rpc/dashboard/) and
``pouw-node job watch``:

* ``pouw_nodeInfo()``: version, chain, seal engine (does this chain train jobs at all?),
  whether it mines, its peers;
* ``pouw_blockImports(limit?)``: the last blocks this node imported, with how long their
  verification and import took and which peer sent them (node/imports.py);
* ``pouw_getJobHistory(jobId, options?)``: the job's checkpoints block by block (steps,
  time, miner) with the exact held-out accuracy at each (an accuracy curve), its recent
  training rate and the time left.

The job history comes from :class:`CheckpointIndex`: one incremental scan of the canonical
headers (each block's job, step count and final state), truncated back to the fork point
when a reorg replaces scanned blocks. Accuracies are computed by the exact evaluation
(``pouw.evaluate.evaluate``) on the checkpoint states that validators keep in the blob
store, and cached per checkpoint.
"""
from __future__ import annotations

import collections
import threading
import weakref
from dataclasses import dataclass
from typing import Optional, TypedDict, TypeVar

from eth_typing import Hash32
from eth_utils import to_checksum_address

from chain.chain import Chain
from chain.header import PouwBlockHeader
from consensus.registry import JobRecord
from rpc.context import CallContext
from rpc.errors import ServerError
from rpc.hexcodec import data, quantity
from rpc.jsontypes import Json
from rpc.pouw_methods import _bool, option_items, parse_uint
from rpc.pouw_view import PouwView
from rpc.registry import Param, Registry
from rpc.sources import ImportedBlock

operator = Registry()

IMPORTS_DEFAULT = 64
HISTORY_POINTS_DEFAULT = 50
HISTORY_POINTS_MAX = 200
RATE_BLOCKS = 8
"""A job's training rate is measured over its last this many blocks."""
NETWORK_RATE_BLOCKS = 100
ACCURACY_CACHE = 4096


# --- the checkpoint index ------------------------------------------------------------------


@dataclass(frozen=True)
class JobBlock:
    """One canonical block that trained a job."""

    number: int
    hash: bytes
    steps: int
    final_state: bytes
    timestamp: int
    parent_timestamp: int
    miner: bytes


class CheckpointIndex:
    """Job id -> the canonical blocks that trained it, in order (thread-safe)."""

    def __init__(self, chain: Chain) -> None:
        self.chain = chain
        self._lock = threading.Lock()
        self._hashes: list[bytes] = []  # canonical hash by number, as scanned (index 0 = genesis)
        self._timestamps: list[int] = []
        self._jobs: dict[int, list[JobBlock]] = collections.defaultdict(list)

    def blocks(self, job_id: int) -> list[JobBlock]:
        with self._lock:
            self._update()
            return list(self._jobs.get(job_id, ()))

    def _canonical(self, number: int) -> Optional[bytes]:
        try:
            return bytes(self.chain.get_canonical_hash(number))
        except Exception:  # noqa: BLE001 - HeaderNotFound above the head
            return None

    def _update(self) -> None:
        head = self.chain.head()
        top = len(self._hashes) - 1
        keep = min(top, int(head.block_number))
        while keep >= 0 and self._canonical(keep) != self._hashes[keep]:
            keep -= 1  # walk back to the fork point
        if keep < top:
            self._truncate(keep)
        for number in range(keep + 1, int(head.block_number) + 1):
            block_hash = self._canonical(number)
            if block_hash is None:
                break
            header = self.chain.get_header_by_hash(Hash32(block_hash))
            self._hashes.append(block_hash)
            self._timestamps.append(int(header.timestamp))
            job_id = int.from_bytes(bytes(header.job_id or b""), "big") if isinstance(header, PouwBlockHeader) else 0
            if number > 0 and job_id and isinstance(header, PouwBlockHeader):
                self._jobs[job_id].append(JobBlock(
                    number, block_hash, int(header.step_count), bytes(header.final_state), int(header.timestamp),
                    self._timestamps[number - 1], bytes(header.coinbase),
                ))

    def _truncate(self, keep: int) -> None:
        del self._hashes[keep + 1:]
        del self._timestamps[keep + 1:]
        for job_id in list(self._jobs):
            entries = self._jobs[job_id]
            while entries and entries[-1].number > keep:
                entries.pop()
            if not entries:
                del self._jobs[job_id]


class _Accuracies:
    """Exact held-out metrics per (spec hash, checkpoint), computed once each."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cache: "collections.OrderedDict[tuple[bytes, bytes], Optional[tuple[float, float]]]" = \
            collections.OrderedDict()

    def get(self, view: PouwView, job: JobRecord, checkpoint: bytes, state_bytes: Optional[bytes]) -> Optional[tuple[float, float]]:
        key = (bytes(job.spec_hash), checkpoint)
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        value = self._compute(view, job, state_bytes)
        with self._lock:
            self._cache[key] = value
            while len(self._cache) > ACCURACY_CACHE:
                self._cache.popitem(last=False)
        return value

    @staticmethod
    def _compute(view: PouwView, job: JobRecord, state_bytes: Optional[bytes]) -> Optional[tuple[float, float]]:
        from consensus.jobs import load_dataset
        from pouw.arith import select_backend
        from pouw.evaluate import evaluate
        from pouw.state import deserialize_state

        spec = job.spec
        if state_bytes is None or spec is None:
            return None
        try:
            dataset = load_dataset(spec, view.blobs, view.max_dataset_bytes)
            if int(dataset.y_test.shape[0]) == 0:
                return None
            metrics = evaluate(spec, deserialize_state(spec, state_bytes), dataset.x_test, dataset.y_test,
                               select_backend("cpu"))
        except Exception:  # noqa: BLE001 - no dataset here, a corrupt blob: no point on the curve
            return None
        return metrics.accuracy, metrics.loss


_indexes: "weakref.WeakKeyDictionary[PouwView, CheckpointIndex]" = weakref.WeakKeyDictionary()
_indexes_lock = threading.Lock()
_accuracies = _Accuracies()


def checkpoint_index(view: PouwView) -> CheckpointIndex:
    with _indexes_lock:
        index = _indexes.get(view)
        if index is None:
            index = _indexes[view] = CheckpointIndex(view.chain)
        return index


def _view(ctx: CallContext) -> PouwView:
    view = getattr(ctx.backend, "pouw", None)
    if view is None:
        raise ServerError("this node does not serve the pouw_ namespace")
    return view


# --- methods -----------------------------------------------------------------------------


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("pouw-node")
    except PackageNotFoundError:
        return "unknown"


class NodeInfoJson(TypedDict):
    clientVersion: str
    version: str
    chainId: str
    genesisHash: str
    sealEngine: str
    trainsJobs: bool
    targetBlockTime: int
    coinbaseMaturity: str
    mining: bool
    coinbase: str | None
    peers: str
    dashboard: bool
    metrics: bool


@operator.method("pouw_nodeInfo", blocking=True)
def node_info(ctx: CallContext) -> NodeInfoJson:
    backend = ctx.backend
    view = _view(ctx)
    genesis = view.chain.genesis
    miner = backend.miner
    return {
        "clientVersion": backend.client_version,
        "version": _version(),
        "chainId": quantity(int(genesis.chain_id)),
        "genesisHash": data(bytes(view.chain.genesis_hash)),
        "sealEngine": str(genesis.seal_engine),
        "trainsJobs": bool(view.is_pouw),
        "targetBlockTime": int(genesis.target_block_time),
        "coinbaseMaturity": quantity(view.maturity),
        "mining": bool(miner is not None and miner.running),
        "coinbase": None if miner is None else to_checksum_address(bytes(miner.coinbase)),
        "peers": quantity(backend.peers.peer_count if backend.peers is not None else 0),
        "dashboard": bool(ctx.config.dashboard),
        "metrics": bool(ctx.config.metrics),
    }


def parse_limit(value: Json) -> int:
    limit = parse_uint(value)
    if not 1 <= limit <= 1024:
        raise ValueError("limit must be between 1 and 1024")
    return limit


class ImportJson(TypedDict):
    number: str
    hash: str
    jobId: str
    steps: str
    transactions: str
    verifySeconds: float | None
    importSeconds: float
    source: str
    time: float
    reorg: bool


def import_json(record: ImportedBlock) -> ImportJson:
    return {
        "number": quantity(record.number),
        "hash": data(record.hash),
        "jobId": quantity(record.job_id),
        "steps": quantity(record.steps),
        "transactions": quantity(record.transactions),
        "verifySeconds": None if record.verify_seconds is None else round(record.verify_seconds, 6),
        "importSeconds": round(record.import_seconds, 6),
        "source": record.source,
        "time": round(record.time, 3),
        "reorg": record.reorg,
    }


@operator.method("pouw_blockImports", Param("limit", parse_limit, default=IMPORTS_DEFAULT), blocking=True)
def block_imports(ctx: CallContext, limit: int) -> list[ImportJson]:
    imports = ctx.backend.imports
    if imports is None:
        return []
    return [import_json(record) for record in imports.recent(limit)]


class HistoryOptions(TypedDict, total=False):
    points: int
    metrics: bool


def parse_history_options(value: Json) -> HistoryOptions:
    options: HistoryOptions = {}
    for key, item in option_items(value, ("points", "metrics")):
        if key == "points":
            n = parse_uint(item)
            if not 1 <= n <= HISTORY_POINTS_MAX:
                raise ValueError(f"points must be between 1 and {HISTORY_POINTS_MAX}")
            options["points"] = n
        else:
            options["metrics"] = _bool(item)
    return options


T = TypeVar("T")


def _sample(items: list[T], points: int) -> list[T]:
    """At most ``points`` items, evenly spread, always keeping the last one."""
    if len(items) <= points:
        return items
    step = (len(items) - 1) / (points - 1) if points > 1 else 0
    picked = sorted({round(i * step) for i in range(points - 1)} | {len(items) - 1})
    return [items[i] for i in picked]


def _state_bytes(view: PouwView, job: JobRecord, checkpoint: Optional[bytes]) -> Optional[bytes]:
    from consensus.jobs import initial_state_bytes

    if checkpoint is None:
        return None if job.spec is None else initial_state_bytes(job.job_id, job.spec)
    try:
        return bytes(view.blobs.get(checkpoint))
    except Exception:  # noqa: BLE001 - BlobNotFound: this node lacks that state
        return None


class CheckpointJson(TypedDict):
    blockNumber: str | None
    blockHash: str | None
    timestamp: str | None
    miner: str | None
    steps: str
    stepsDone: str
    checkpoint: str | None
    accuracy: float | None
    loss: float | None


class JobHistoryJson(TypedDict):
    jobId: str
    status: str
    stepsDone: str
    stepBudget: str
    blocks: str
    checkpoints: list[CheckpointJson]
    stepsPerSecond: float | None
    etaSeconds: float | None
    etaBasis: str | None


@operator.method(
    "pouw_getJobHistory", Param("jobId", parse_uint),
    Param("options", parse_history_options, default=None), blocking=True,
)
def job_history(ctx: CallContext, job_id: int, options: Optional[HistoryOptions]) -> Optional[JobHistoryJson]:
    from consensus.jobs import initial_checkpoint
    from rpc.pouw_view import STATUS_NAMES

    view = _view(ctx)
    options = options or {}
    job = view.job(job_id)
    if job is None:
        return None
    with_metrics = options.get("metrics", True) and job.spec is not None
    blocks = checkpoint_index(view).blocks(job_id)
    done = 0
    rows: list[CheckpointJson] = []
    initial = None if job.spec is None else initial_checkpoint(job_id, job.spec)
    points: list[tuple[Optional[JobBlock], int]] = [(None, 0)]
    for trained in blocks:
        done += trained.steps
        points.append((trained, done))
    for block, steps_done in _sample(points, options.get("points", HISTORY_POINTS_DEFAULT)):
        checkpoint = initial if block is None else block.final_state
        metrics = None
        if with_metrics and checkpoint is not None:
            metrics = _accuracies.get(view, job, checkpoint, _state_bytes(view, job, None if block is None else checkpoint))
        rows.append({
            "blockNumber": None if block is None else quantity(block.number),
            "blockHash": None if block is None else data(block.hash),
            "timestamp": None if block is None else quantity(block.timestamp),
            "miner": None if block is None else to_checksum_address(block.miner),
            "steps": quantity(0 if block is None else block.steps),
            "stepsDone": quantity(steps_done),
            "checkpoint": None if checkpoint is None else data(checkpoint),
            "accuracy": None if metrics is None else metrics[0],
            "loss": None if metrics is None else metrics[1],
        })
    rate, basis, eta = _eta(view, job, blocks)
    return {
        "jobId": quantity(job_id),
        "status": STATUS_NAMES.get(job.status, str(job.status)),
        "stepsDone": quantity(job.steps_done),
        "stepBudget": quantity(job.budget),
        "blocks": quantity(len(blocks)),
        "checkpoints": rows,
        "stepsPerSecond": rate,
        "etaSeconds": eta,
        "etaBasis": basis,
    }


def _eta(view: PouwView, job: JobRecord, blocks: list[JobBlock]) -> tuple[Optional[float], Optional[str], Optional[float]]:
    """(the job's recent steps per second, what the ETA is based on, seconds left).

    Measured on the job's own last blocks (steps over the time from the parent of the
    first to the last: blocks that trained other jobs in between count as time, as they
    should); before its first block, from the network's measured work rate, as if the
    miners took it up now. No ETA for a job that is not open."""
    from rpc.pouw_view import STATUS_NAMES

    if STATUS_NAMES.get(job.status) == "completed":
        return None, None, 0.0
    # block 1's parent is the genesis block, whose timestamp is fixed in the genesis file
    recent = [b for b in blocks[-RATE_BLOCKS:] if b.number > 1]
    rate: Optional[float] = None
    if recent:
        span = recent[-1].timestamp - recent[0].parent_timestamp
        if span > 0:
            rate = sum(b.steps for b in recent) / span
    if STATUS_NAMES.get(job.status) != "open":
        return rate, None, None
    remaining = max(0, job.budget - job.steps_done)
    if rate:
        return rate, "job", remaining / rate
    if job.spec is None or not view.is_pouw:
        return None, None, None
    measured = view.work_rate(NETWORK_RATE_BLOCKS).per_second
    if not measured:
        return None, None, None
    w = view.work_units(job.spec)
    return None, "network", remaining * w / measured


__all__ = ["operator", "CheckpointIndex", "checkpoint_index", "import_json"]
