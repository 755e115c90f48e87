"""Chain reads behind the ``pouw_`` namespace: jobs, datasets, results, rewards, proofs.

:class:`PouwView` is built on the node's ``chain.chain.Chain`` (like
``rpc.backend.ChainBackend``, it is allowed to touch chain and consensus internals);
``rpc/pouw_methods.py`` parses parameters and encodes JSON around it. Every method is
a plain blocking function: the RPC layer runs them in its thread executor.

What is derived, and how (docs/rpc-pouw.md has the JSON):

* a job is the registry's record (``consensus.registry.read_job``) at some state; where
  it was posted and its initial escrow come from its ``JobPosted`` log, found by one
  incremental scan of the canonical chain (header blooms first, receipts only where a
  bloom matches), dropped and redone when a reorg changes a block already scanned;
* fees a job paid and a block's fee: ``consensus.rewards.fees_paid`` and
  ``block_fee`` (the fee rule lives in consensus; a block's fee is read on the job's
  record at its parent);
* a job's result: its checkpoint state from the blob store (validators store every
  accepted block's ``s_t``), exported to a float torch model, with held-out metrics by
  the exact arithmetic (cached per checkpoint).
"""
from __future__ import annotations

import collections
import dataclasses
import json
import sys
import threading
import time
from dataclasses import dataclass
from typing import Callable, Optional, TypedDict

from eth.abc import BlockHeaderAPI, LogAPI, StateAPI
from eth_bloom import BloomFilter

from chain.chain import Chain
from chain.header import PouwBlockHeader
from chain.errors import WorkVerificationUnavailable
from consensus.blobs import LevelDBBlobStore
from consensus.rewards import billed_steps, block_fee, fees_paid, read_ring_entry
from consensus.params import (
    REGISTRY_ADDRESS,
    STANDING_JOB_BASE,
    ConsensusConfig,
    config_of,
)
from consensus.registry import (
    STATUS_CANCELLED,
    STATUS_COMPLETED,
    STATUS_OPEN,
    STATUS_STANDING,
    TOPIC_POSTED,
    JobRecord,
    next_job_id,
    read_job,
)
from consensus.jobs import (
    builtin_blob,
    builtin_dataset_ids,
    current_checkpoint,
    digits_dataset_id,
    digits_image_dataset_id,
    initial_state_bytes,
    load_dataset,
)
from pouw.datasets import Dataset, content_hash, dataset_from_bytes
from pouw.errors import BlobNotFound, PouwError
from pouw.spec import JobSpec
from rpc.errors import RpcLayerError


ZERO32 = b"\x00" * 32

STATUS_NAMES = {
    STATUS_OPEN: "open",
    STATUS_COMPLETED: "completed",
    STATUS_CANCELLED: "cancelled",
    STATUS_STANDING: "standing",
}
STATUS_CODES = {name: code for code, name in STATUS_NAMES.items()}
_POSTED = int.from_bytes(TOPIC_POSTED, "big")


class PouwViewError(RpcLayerError):
    """A request the view cannot serve; the message is fit for the user (-32000)."""


@dataclass(frozen=True)
class Posting:
    """Where a job was posted: its ``JobPosted`` log."""

    block_number: int
    block_hash: bytes
    tx_hash: bytes
    escrow: int


@dataclass(frozen=True)
class DatasetInfo:
    id: bytes
    size: int
    train_examples: int
    test_examples: int
    input_shape: tuple[int, ...]
    num_classes: int
    name: str
    builtin: bool


class MetricsJson(TypedDict):
    """A job's held-out metrics at a checkpoint (pouw_getJobResult's ``metrics``)."""

    split: str
    examples: int
    correct: int
    accuracyPpm: int
    accuracy: float
    lossMicro: int
    loss: float


class RecheckVerdict(TypedDict):
    """What recomputing a block's checked segments found."""

    verdict: str
    """``ok``, ``mismatch`` (the work is wrong) or ``unavailable`` (could not check here)."""
    error: Optional[str]
    seconds: float


@dataclass(frozen=True)
class JobResult:
    job: JobRecord
    checkpoint: bytes
    state_bytes: bytes
    model: bytes
    """safetensors of the exported float32 torch model's state_dict."""
    metrics: Optional["MetricsJson"]
    metrics_error: Optional[str]
    feature_scale: "float | tuple[float, ...] | None" = None
    """The dataset's recorded quantisation scale(s) (the model file carries them too)."""


@dataclass(frozen=True)
class BlockRewards:
    blocks_mined: int
    block_rewards: int
    job_fees: int
    immature: int


@dataclass(frozen=True)
class WorkProof:
    header: PouwBlockHeader
    job: Optional[JobRecord]
    work_units: Optional[int]
    seed: bytes
    segment_steps: int
    points: list[int]
    """p_1 .. p_n: the step of each committed point."""
    budget_point: Optional[int]
    anchored: list[int]
    challenged: list[int]
    commitments: tuple[bytes, ...]
    payload_size: int
    billed_steps: int


class PouwView:
    """Reads for the ``pouw_`` methods, on ``chain`` (thread-safe)."""

    def __init__(self, chain: Chain) -> None:
        self.chain = chain
        self.is_pouw = _is_pouw(chain)
        self.config: ConsensusConfig = (
            config_of(chain.engine_class, int(chain.genesis.chain_id))
        )
        self.blobs = LevelDBBlobStore(chain.db)
        self._lock = threading.Lock()
        self._postings: dict[int, Posting] = {}
        self._indexed: Optional[tuple[int, bytes]] = None  # (number, hash) scanned through
        self._results: "collections.OrderedDict[tuple[int, bytes], JobResult]" = collections.OrderedDict()
        self._fees: "collections.OrderedDict[bytes, int]" = collections.OrderedDict()
        self._credits: "collections.OrderedDict[bytes, tuple[int, int]]" = collections.OrderedDict()
        """Matured blocks' (reward, fee), by the hash of the block whose state held them."""
        self._datasets: dict[bytes, DatasetInfo] = {}
        self._work_units: dict[bytes, int] = {}  # spec hash -> work units per step

    # --- basics -------------------------------------------------------------------

    @property
    def maturity(self) -> int:
        """Blocks before a reward is credited (0 on a chain whose engine credits at once)."""
        return int(self.config.coinbase_maturity) if self.is_pouw else 0

    def block_reward(self, number: int) -> int:
        return int(self.chain.genesis.block_reward(number))

    def head(self) -> BlockHeaderAPI:
        return self.chain.head()

    def header(self, number: int) -> Optional[PouwBlockHeader]:
        try:
            header = self.chain.get_header_by_hash(self.chain.get_canonical_hash(number))
        except Exception:  # noqa: BLE001 - HeaderNotFound above the head
            return None
        return pouw_header(header)

    def state(self, header: Optional[BlockHeaderAPI] = None) -> StateAPI:
        return self.chain.state_at(header)

    def work_units(self, spec: JobSpec) -> int:
        from pouw.families import get_family  # imports torch

        return int(get_family(spec.family).work_units(spec))

    # --- jobs ---------------------------------------------------------------------

    def job(self, job_id: int, header: Optional[BlockHeaderAPI] = None) -> Optional[JobRecord]:
        if job_id <= 0 or job_id >= 2**256:
            return None
        return read_job(self.state(header), job_id, self.config)

    def standing_ids(self) -> range:
        return range(STANDING_JOB_BASE, STANDING_JOB_BASE + len(self.config.standing_jobs))

    def jobs(
        self,
        *,
        statuses: Optional[set[int]] = None,
        poster: Optional[bytes] = None,
        from_id: int = 1,
        limit: int = 100,
        include_standing: bool = True,
    ) -> list[JobRecord]:
        """Posted jobs from ``from_id`` in id order, then the standing jobs."""
        state = self.state()
        out: list[JobRecord] = []
        for job_id in range(max(1, from_id), next_job_id(state)):
            if len(out) >= limit:
                return out
            job = read_job(state, job_id, self.config)
            if job is None or (statuses and job.status not in statuses):
                continue
            if poster is not None and bytes(job.poster) != poster:
                continue
            out.append(job)
        if include_standing and poster is None:
            for job_id in self.standing_ids():
                if len(out) >= limit:
                    break
                if job_id < from_id and from_id > STANDING_JOB_BASE:
                    continue
                job = read_job(state, job_id, self.config)
                if job is not None and (not statuses or job.status in statuses):
                    out.append(job)
        return out

    def checkpoint(self, job: JobRecord) -> bytes:
        """The job's checkpoint hash with the initial state resolved."""
        if job.spec is None:
            return job.checkpoint

        return current_checkpoint(job)

    def posting(self, job_id: int) -> Optional[Posting]:
        """Where a posted job's ``JobPosted`` log is on the canonical chain."""
        if job_id >= STANDING_JOB_BASE:
            return None
        with self._lock:
            self._scan_postings()
            return self._postings.get(job_id)

    def fees_paid(self, job: JobRecord, posting: Optional[Posting]) -> int:
        return fees_paid(job, None if posting is None else posting.escrow)

    def _scan_postings(self) -> None:
        """Extend the JobPosted index to the head (caller holds the lock)."""
        chain = self.chain
        head = chain.head()
        if self._indexed is not None:
            number, block_hash = self._indexed
            if number > head.block_number or bytes(chain.get_canonical_hash(number)) != block_hash:
                self._postings.clear()  # a reorg replaced scanned blocks: rescan
                self._indexed = None
        start = 1 if self._indexed is None else self._indexed[0] + 1
        last: Optional[tuple[int, bytes]] = self._indexed
        for number in range(start, head.block_number + 1):
            header = self.header(number)
            if header is None:
                break
            last = (number, bytes(header.hash))
            bloom = BloomFilter(header.bloom)
            if REGISTRY_ADDRESS not in bloom or TOPIC_POSTED not in bloom:
                continue
            block = chain.get_block_by_hash(header.hash)
            for tx, receipt in zip(block.transactions, chain.get_receipts(block)):
                for entry in receipt.logs:
                    job_id = posted_job_id(entry)
                    if job_id is not None:
                        escrow = int.from_bytes(bytes(entry.data)[64:96], "big")
                        self._postings[job_id] = Posting(number, bytes(header.hash), bytes(tx.hash), escrow)
        self._indexed = last

    # --- datasets -----------------------------------------------------------------

    @property
    def max_dataset_bytes(self) -> int:
        return int(self.config.limits.max_dataset_bytes)

    def put_dataset(self, blob: bytes) -> DatasetInfo:
        """Check and store a dataset file; its id is keccak256 of the bytes. (Uploads
        through the RPC go through ``rpc.uploads.DatasetUploads``, which adds the quota.)"""
        info = self.check_dataset(blob)
        self.blobs.put(blob)
        return info

    def check_dataset(self, blob: bytes, dataset_hash: Optional[bytes] = None) -> DatasetInfo:
        """Parse and check a dataset file without storing it; the decoded tensors are
        released on return (only the summary is kept), so a caller storing the bytes
        next never holds both."""

        try:
            dataset = dataset_from_bytes(blob, max_bytes=self.max_dataset_bytes)
        except PouwError as exc:
            raise PouwViewError(f"dataset refused: {exc}") from None
        if dataset_hash is None:
            dataset_hash = content_hash(blob)
        return self._remember(dataset_hash, len(blob), dataset)

    def forget_dataset(self, dataset_hash: bytes) -> None:
        """Drop the summary of a dataset that was deleted from the blob store."""
        with self._lock:
            self._datasets.pop(dataset_hash, None)

    def dataset_info(self, dataset_hash: bytes) -> Optional[DatasetInfo]:
        with self._lock:
            known = self._datasets.get(dataset_hash)
        if known is not None:
            return known
        blob = self.dataset_blob(dataset_hash)
        if blob is None:
            return None

        try:
            dataset = dataset_from_bytes(blob, expected_hash=dataset_hash, max_bytes=max(len(blob), 1))
        except PouwError as exc:
            raise PouwViewError(f"stored dataset 0x{dataset_hash.hex()} is unusable: {exc}") from None
        return self._remember(dataset_hash, len(blob), dataset)

    def dataset_blob(self, dataset_hash: bytes) -> Optional[bytes]:
        if self.blobs.has(dataset_hash):
            try:
                return self.blobs.get(dataset_hash)
            except PouwError as exc:
                raise PouwViewError(f"stored dataset 0x{dataset_hash.hex()} is corrupt: {exc}") from None

        return builtin_blob("0x" + dataset_hash.hex())

    def has_dataset(self, dataset_hash: bytes) -> bool:
        if self.blobs.has(dataset_hash):
            return True

        return "0x" + dataset_hash.hex() in builtin_dataset_ids()

    def builtin_datasets(self) -> list[DatasetInfo]:
        """The built-in sets, the 64-feature digits first."""

        infos = (self.dataset_info(bytes.fromhex(i[2:])) for i in (digits_dataset_id(), digits_image_dataset_id()))
        return [info for info in infos if info is not None]

    def _remember(self, dataset_hash: bytes, size: int, dataset: Dataset) -> DatasetInfo:

        info = DatasetInfo(
            id=dataset_hash, size=size, train_examples=len(dataset), test_examples=int(dataset.y_test.shape[0]),
            input_shape=dataset.input_shape, num_classes=dataset.num_classes, name=dataset.name,
            builtin="0x" + dataset_hash.hex() in builtin_dataset_ids(),
        )
        with self._lock:
            self._datasets[dataset_hash] = info
        return info

    # --- results ------------------------------------------------------------------

    def job_result(self, job: JobRecord) -> JobResult:
        """The job's checkpoint state, as a torch model in safetensors, with metrics."""
        spec = job.spec
        if spec is None:
            raise PouwViewError(f"job {job.job_id}'s stored spec is not usable under this chain's genesis")

        checkpoint = current_checkpoint(job)
        key = (job.job_id, checkpoint)
        with self._lock:
            cached = self._results.get(key)
            if cached is not None:
                self._results.move_to_end(key)
        if cached is not None:
            return dataclasses.replace(cached, job=job)
        if job.checkpoint == ZERO32:
            state_bytes = initial_state_bytes(job.job_id, spec)
        else:
            try:
                state_bytes = self.blobs.get(job.checkpoint)
            except BlobNotFound:
                raise PouwViewError(
                    f"this node does not hold checkpoint 0x{job.checkpoint.hex()} of job {job.job_id} "
                    "(it has not imported the block that produced it)"
                ) from None
            except PouwError as exc:
                raise PouwViewError(f"checkpoint 0x{job.checkpoint.hex()} is corrupt here: {exc}") from None
        result = _build_result(job, spec, checkpoint, state_bytes, lambda: self._dataset_for(spec))
        with self._lock:
            self._results[key] = result
            while len(self._results) > 16:
                self._results.popitem(last=False)
        return result

    def _dataset_for(self, spec: JobSpec) -> Dataset:

        return load_dataset(spec, self.blobs, self.max_dataset_bytes)

    # --- rewards ------------------------------------------------------------------

    def rewards(self, address: bytes, first: int, last: int) -> BlockRewards:
        """What ``address`` earned as coinbase in canonical blocks first..last."""
        head_number = self.chain.head().block_number
        head_state = self.state() if self.maturity else None
        mined = rewards = fees = immature = 0
        for number in range(first, last + 1):
            header = self.header(number)
            if header is None:
                break
            if number == 0 or bytes(header.coinbase) != address:
                continue
            mined += 1
            young = bool(self.maturity) and number + self.maturity > head_number
            reward, fee = self.credit(header, head_state if young else None)
            rewards += reward
            fees += fee
            if young:
                immature += reward + fee
        return BlockRewards(mined, rewards, fees, immature)

    def credit(self, header: PouwBlockHeader, head_state: Optional[StateAPI] = None) -> tuple[int, int]:
        """(reward, fee) block ``header`` earns its coinbase: as its reward-ring entry holds
        them (``head_state``: at the head, for a block still immature; else just before
        the entry matured), so a fraud proof's slashing and a rollback's fee claw-back
        (docs/protocol.md §21) are counted; the rules' amounts where there is no ring."""
        number = header.block_number
        if not (self.maturity and self.is_pouw):
            return self.block_reward(number), self.block_fee(header)
        if head_state is not None:
            entry = read_ring_entry(head_state, number, self.maturity)
            return (entry.reward, entry.fee) if entry is not None else (self.block_reward(number), self.block_fee(header))
        last = self.header(number + self.maturity - 1)  # the entry as it matured: fixed for this chain
        assert last is not None, "a matured block's maturing block is canonical"
        key = bytes(last.hash)
        with self._lock:
            if key in self._credits:
                return self._credits[key]
        entry = read_ring_entry(self.state(last), number, self.maturity)
        credit = (entry.reward, entry.fee) if entry is not None else (self.block_reward(number), self.block_fee(header))
        with self._lock:
            self._credits[key] = credit
            while len(self._credits) > 100_000:
                self._credits.popitem(last=False)
        return credit

    def block_fee(self, header: PouwBlockHeader) -> int:
        """The job fee a block earned (``consensus.rewards.block_fee`` on its job at the
        parent), 0 if a transaction of the block cancelled the job."""
        if not self.is_pouw or header.block_number == 0:
            return 0
        job_id = int.from_bytes(header.job_id, "big")
        if job_id == 0 or job_id >= STANDING_JOB_BASE:
            return 0
        key = bytes(header.hash)
        with self._lock:
            if key in self._fees:
                return self._fees[key]
        job = self.parent_job(header)
        fee = 0
        if job is not None and job.status == STATUS_OPEN:
            after = read_job(self.state(header), job_id, self.config)
            if after is None or after.status != STATUS_CANCELLED:
                fee = block_fee(job, header.step_count)
        with self._lock:
            self._fees[key] = fee
            while len(self._fees) > 100_000:
                self._fees.popitem(last=False)
        return fee

    def parent_job(self, header: PouwBlockHeader) -> Optional[JobRecord]:
        """The job a sealed block trained, as its parent's state holds it."""
        parent = self.chain.get_header_by_hash(header.parent_hash)
        return read_job(self.state(parent), int.from_bytes(header.job_id, "big"), self.config)

    # --- work proofs --------------------------------------------------------------

    def work_proof(self, header: PouwBlockHeader) -> Optional[WorkProof]:
        """The seal and payload of a block, or None (genesis, no payload)."""
        if header.block_number == 0 or not self.is_pouw:
            return None
        payload = self.chain.get_payload(header.hash)
        if payload is None:
            return None
        from consensus.payload import WorkPayload
        from consensus.seal import budget_segment
        from pouw.commit import anchored_segments, challenge_segments, seal_seed, trajectory_points

        work = WorkPayload.decode(payload)
        job_id = int.from_bytes(header.job_id, "big")
        job = self.parent_job(header)
        w = self.work_units(job.spec) if job is not None and job.spec is not None else None
        seed = seal_seed(header.mining_hash, header.coinbase, job_id, header.start_checkpoint, work.m)
        budget = job.budget_left if job is not None else None
        t = header.step_count
        points = trajectory_points(t, work.m, budget)
        j_r = budget_segment(points, t, budget)
        n, k = len(points), self.config.challenge_count
        billed = billed_steps(job, t) if job is not None else t
        return WorkProof(header, job, w, seed, work.m, points, budget if j_r is not None else None,
                         anchored_segments(n, j_r), challenge_segments(header.work_accumulator, n, k, j_r),
                         work.commitments, len(payload), billed)

    def recheck(self, header: PouwBlockHeader, device: str = "cpu") -> RecheckVerdict:
        """Recompute the block's anchored and challenged segments now; the verdict in words."""
        from consensus.engine import backend_for
        from consensus.seal import SealClaim, verify_trajectory

        started = time.perf_counter()
        payload = self.chain.get_payload(header.hash)
        job = self.parent_job(header)
        if job is None or job.spec is None or payload is None:
            return {"verdict": "unavailable", "error": "job or payload not available on this node",
                    "seconds": time.perf_counter() - started}
        spec = job.spec
        from consensus.jobs import checkpoint_state_bytes, current_checkpoint

        claim = SealClaim.of(header, job, current_checkpoint(job))
        try:
            s0 = checkpoint_state_bytes(job, self.blobs)
            verify_trajectory(claim, payload, spec, s0, lambda: self._dataset_for(spec),
                              self.config.challenge_count, backend_for(device))
        except Exception as exc:  # noqa: BLE001 - every failure is a verdict here
            kind = type(exc).__name__
            transient = isinstance(exc, (WorkVerificationUnavailable, RuntimeError, MemoryError))
            verdict = "unavailable" if transient else "mismatch"
            return {"verdict": verdict, "error": f"{kind}: {exc}", "seconds": time.perf_counter() - started}
        return {"verdict": "ok", "error": None, "seconds": time.perf_counter() - started}

    # --- network statistics ---------------------------------------------------------

    def block_work(self, header: PouwBlockHeader) -> int:
        """Work units of a block's trajectory: t * w of its job (0 without a seal)."""
        if not self.is_pouw or header.block_number == 0:
            return 0
        job = self.parent_job(header)
        if job is None or job.spec is None:
            return 0
        with self._lock:
            w = self._work_units.get(job.spec_hash)
        if w is None:
            w = self.work_units(job.spec)
            with self._lock:
                self._work_units[job.spec_hash] = w
        return header.step_count * w

    def work_rate(self, blocks: int) -> "WorkRate":
        """Useful work per second over the last ``blocks`` canonical blocks, timed from the
        block before the window's first (the genesis block's fixed timestamp is never an
        end of the span): what pouw_networkStats reports and pouw_estimateJob plans with."""
        headers = self.headers_back(blocks)
        head = headers[-1]
        if len(headers) > 1 and headers[0].block_number == 0:
            headers = headers[1:]
        window = headers[1:]  # blocks whose time span is known (from the block before)
        span = head.timestamp - headers[0].timestamp if len(headers) > 1 else 0
        work = sum(self.block_work(h) for h in window)
        steps = sum(getattr(h, "step_count", 0) for h in window)
        return WorkRate(head, len(window), int(span), work, steps)

    def headers_back(self, count: int) -> list[PouwBlockHeader]:
        """The last ``count`` canonical headers (fewer near genesis), oldest first."""
        head = self.chain.head()
        first = max(0, head.block_number - count)
        out = [self.header(n) for n in range(first, head.block_number + 1)]
        return [h for h in out if h is not None]


@dataclass(frozen=True)
class WorkRate:
    """Work done over a window of recent canonical blocks (:meth:`PouwView.work_rate`)."""

    head: BlockHeaderAPI
    blocks: int
    seconds: int
    work: int
    steps: int

    @property
    def per_second(self) -> Optional[float]:
        """Work units per second, None when the window has no time span or no work."""
        return self.work / self.seconds if self.seconds > 0 and self.work > 0 else None


def pouw_header(header: BlockHeaderAPI) -> PouwBlockHeader:
    """``header`` as our header class, which carries the seal fields (every chain of this
    node has it: ``chain.vm``)."""
    if not isinstance(header, PouwBlockHeader):
        raise TypeError(f"block {header.block_number}: {type(header).__name__} is not a proof-of-useful-work header")
    return header


def _is_pouw(chain: Chain) -> bool:
    engine_module = sys.modules.get("consensus.engine")
    if engine_module is None:  # then no chain runs a PouwEngine (and torch stays unloaded)
        return False
    PouwEngine = engine_module.PouwEngine
    engine = getattr(chain, "engine_class", None)
    return isinstance(engine, type) and issubclass(engine, PouwEngine)


def _topic_int(topic: int | bytes) -> int:
    return topic if isinstance(topic, int) else int.from_bytes(bytes(topic), "big")


def posted_job_id(entry: LogAPI) -> Optional[int]:
    """The job id of a receipt log if it is the registry's ``JobPosted``, else None."""
    if bytes(entry.address) != REGISTRY_ADDRESS or len(entry.topics) < 2 or _topic_int(entry.topics[0]) != _POSTED:
        return None
    return _topic_int(entry.topics[1])


def _build_result(
    job: JobRecord, spec: JobSpec, checkpoint: bytes, state_bytes: bytes, dataset: Callable[[], Dataset]
) -> JobResult:
    from safetensors.torch import save as save_safetensors

    from consensus.engine import backend_for
    from pouw.evaluate import evaluate, export_torch
    from pouw.state import deserialize_state

    state = deserialize_state(spec, state_bytes)
    model = export_torch(spec, state)
    tensors = {name: tensor.detach().contiguous() for name, tensor in model.state_dict().items()}
    metrics: Optional[MetricsJson] = None
    error: Optional[str] = None
    ds: Optional[Dataset] = None
    try:
        ds = dataset()
    except Exception as exc:  # noqa: BLE001 - DatasetUnavailable and kin: no metrics, say why
        error = f"{type(exc).__name__}: {exc}"
    feature_scale = None if ds is None else ds.feature_scale
    # One metadata key: safetensors writes its metadata map in hash order, which differs
    # between processes, and the file must be the same bytes on every node. featureScale
    # (the dataset's quantisation) lets a loader take the original float features.
    about_doc: dict[str, object] = {"checkpoint": "0x" + checkpoint.hex(), "family": spec.family}
    if feature_scale is not None:
        about_doc["featureScale"] = feature_scale
    about = json.dumps(about_doc, sort_keys=True)
    model_bytes = save_safetensors(tensors, metadata={"pouw": about})
    if ds is not None and int(ds.y_test.shape[0]) == 0:
        error = "the dataset has no held-out examples"
    elif ds is not None:
        try:
            m = evaluate(spec, state, ds.x_test, ds.y_test, backend_for("cpu"))
            metrics = {"split": "test", "examples": m.total, "correct": m.correct, "accuracyPpm": m.accuracy_ppm,
                       "accuracy": m.accuracy, "lossMicro": m.loss_micro, "loss": m.loss}
        except Exception as exc:  # noqa: BLE001 - e.g. a dataset that does not fit the spec: say why
            error = f"{type(exc).__name__}: {exc}"
    return JobResult(job, checkpoint, state_bytes, model_bytes, metrics, error, feature_scale)


__all__ = ["PouwView", "PouwViewError", "WorkRate", "posted_job_id", "Posting", "DatasetInfo", "JobResult", "BlockRewards", "WorkProof",
           "STATUS_NAMES", "STATUS_CODES"]
