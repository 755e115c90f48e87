"""The ``pouw_`` namespace: datasets, jobs, results, rewards, work proofs, miner and network.

The JSON of every method, with examples, is in docs/rpc-pouw.md. Handlers parse their
params, call :class:`rpc.pouw_view.PouwView` (``ctx.backend.pouw``) in the thread
executor and encode the answer; a request the node refuses is -32000 with the reason.
"""
from __future__ import annotations

import asyncio
from typing import Iterator, Literal, NotRequired, Optional, TypedDict, Union

from eth_abi import decode as abi_decode
from eth_typing import Address
from eth_utils import to_checksum_address

from consensus.params import MAX_SPEC_BYTES, MAX_STEPS_PER_BLOCK, REGISTRY_ADDRESS, STANDING_JOB_BASE
from consensus.registry import SEL_POST, STATUS_CANCELLED, STATUS_COMPLETED, STATUS_OPEN, JobRecord
from pouw.errors import PouwError, SpecError
from consensus.specs import read_spec
from pouw.spec import FAMILIES, JobSpec, loads_spec_json
from rpc.audit_methods import AuditJson, audit_json
from rpc.backend import TransactionRejected
from rpc.context import CallContext
from rpc.errors import InvalidParams, LimitExceeded, RpcError, ServerError
from rpc.eth_methods import require_block, resolve_block
from rpc.hexcodec import data, parse_address, parse_data, parse_hash, parse_quantity, quantity
from rpc.jsontypes import Json, JsonObject
from rpc.params import LATEST, BlockId, parse_block_id, parse_block_number
from rpc.pouw_view import (
    STATUS_CODES,
    STATUS_NAMES,
    DatasetInfo,
    MetricsJson,
    PouwView,
    PouwViewError,
    WorkProof,
    pouw_header,
    posted_job_id,
)
from rpc.registry import Param, Registry
from rpc.uploads import UploadError

pouw = Registry()

#: pouw_submitJob waits this long for inclusion unless told otherwise, and at most MAX.
SUBMIT_TIMEOUT_S = 25.0
"""Below the 30 s request timeout of web3.py's HTTP provider, so a default call answers in time."""
SUBMIT_TIMEOUT_MAX_S = 120.0
SUBMIT_POLL_S = 0.2
LIST_LIMIT_DEFAULT = 100
LIST_LIMIT_MAX = 1000
REWARDS_MAX_RANGE = 100_000
STATS_BLOCKS_DEFAULT = 100
STATS_BLOCKS_MAX = 10_000
ESTIMATE_RATE_BLOCKS = 100
"""pouw_estimateJob times blocks with the work rate measured over this many recent blocks."""
UNTRAINED_WARNING = (
    "this chain has no proof of work (a development genesis): nobody trains jobs here, so a job "
    "posted on it never makes progress and its escrow stays locked until its poster cancels it"
)


# -- parameter parsers ---------------------------------------------------------------

def parse_uint(value: Json) -> int:
    """A quantity ("0x1a") or a JSON integer, up to 256 bits."""
    if isinstance(value, bool):
        raise ValueError("expected a quantity, got boolean")
    if isinstance(value, int):
        if not 0 <= value < 2**256:
            raise ValueError("out of range for uint256")
        return value
    return parse_quantity(value)


def parse_spec(value: Json | bytes) -> JsonObject:
    """A job spec: a JSON object, or its JSON text (str, or bytes as postJob carries it)."""
    if isinstance(value, (str, bytes)):
        if len(value) > MAX_SPEC_BYTES:
            raise ValueError(f"spec text longer than {MAX_SPEC_BYTES} bytes")
        try:
            value = loads_spec_json(value)
        except (ValueError, RecursionError) as exc:
            raise ValueError(f"spec is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ValueError("expected a job spec object")
    return value


def option_items(value: Json, known: tuple[str, ...]) -> Iterator[tuple[str, Json]]:
    """The entries of an options object, in its order; an unknown name is refused when
    it is reached (so the first bad entry, unknown or invalid, is the one reported)."""
    if not isinstance(value, dict):
        raise ValueError("expected an options object")
    for key, item in value.items():
        if key not in known:
            raise ValueError(f"unknown option {key!r} (known: {', '.join(sorted(known))})")
        yield key, item


def _bool(value: Json) -> bool:
    if not isinstance(value, bool):
        raise ValueError("expected boolean")
    return value


class ResultOptions(TypedDict, total=False):
    includeState: bool


def parse_result_options(value: Json) -> ResultOptions:
    options: ResultOptions = {}
    for key, item in option_items(value, ("includeState",)):
        options["includeState"] = _bool(item)
    return options


class ProofOptions(TypedDict, total=False):
    recheck: bool
    includeCommitments: bool


def parse_proof_options(value: Json) -> ProofOptions:
    options: ProofOptions = {}
    for key, item in option_items(value, ("recheck", "includeCommitments")):
        if key == "recheck":
            options["recheck"] = _bool(item)
        else:
            options["includeCommitments"] = _bool(item)
    return options


def parse_timeout(value: Json) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError("expected a number of seconds")
    if not 0 <= value <= SUBMIT_TIMEOUT_MAX_S:
        raise ValueError(f"timeout must be between 0 and {SUBMIT_TIMEOUT_MAX_S:g} seconds")
    return float(value)


def _parse_statuses(value: Json) -> set[int]:
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, list) or not names:
        raise ValueError("status must be a status name or a non-empty list of them")
    out = set()
    for name in names:
        if name not in STATUS_CODES:
            raise ValueError(f"unknown status {name!r} (known: {', '.join(STATUS_CODES)})")
        out.add(STATUS_CODES[str(name)])  # a key of STATUS_CODES: a str already
    return out


def _parse_limit(value: Json) -> int:
    limit = parse_uint(value)
    if not 1 <= limit <= LIST_LIMIT_MAX:
        raise ValueError(f"limit must be between 1 and {LIST_LIMIT_MAX}")
    return limit


class ListFilter(TypedDict, total=False):
    status: set[int]
    poster: Address
    fromId: int
    limit: int
    includeStanding: bool


def parse_list_filter(value: Json) -> ListFilter:
    query: ListFilter = {}
    for key, item in option_items(value, ("status", "poster", "fromId", "limit", "includeStanding")):
        if key == "status":
            query["status"] = _parse_statuses(item)
        elif key == "poster":
            query["poster"] = parse_address(item)
        elif key == "fromId":
            query["fromId"] = parse_uint(item)
        elif key == "limit":
            query["limit"] = _parse_limit(item)
        else:
            query["includeStanding"] = _bool(item)
    return query


def parse_stats_blocks(value: Json) -> int:
    blocks = parse_uint(value)
    if not 1 <= blocks <= STATS_BLOCKS_MAX:
        raise ValueError(f"blocks must be between 1 and {STATS_BLOCKS_MAX}")
    return blocks


def parse_dataset_id(value: Json) -> bytes:
    return parse_hash(value)


# -- answers (docs/rpc-pouw.md) -------------------------------------------------------

class JobJson(TypedDict):
    id: str
    kind: Literal["standing", "posted"]
    status: str
    poster: str | None
    pricePerStep: str
    escrowLeft: str
    initialEscrow: str | None
    feesPaid: str
    stepsDone: str
    stepBudget: str
    progress: float
    checkpoint: str
    specHash: str
    spec: dict[str, object] | None
    """The spec's own (snake_case) fields, as posted."""
    workUnitsPerStep: str | None
    postedBlock: str | None
    postedTransaction: str | None
    audit: NotRequired[AuditJson | None]
    """As of the head (rpc/audit_methods.py)."""


class DatasetJson(TypedDict):
    id: str
    size: str
    trainExamples: str
    testExamples: str
    inputShape: list[int]
    numClasses: int
    name: str
    builtin: bool
    data: NotRequired[str | None]


class LimitsJson(TypedDict):
    maxStateBytes: str
    maxDatasetBytes: str
    maxWorkUnitsPerStep: str
    maxSteps: str
    maxBatchSize: str
    maxLayers: str
    maxWidth: str
    maxClasses: str
    maxInputElements: str
    maxSpecBytes: str
    maxStepsPerBlock: str


class SpecFieldJson(TypedDict):
    required: bool
    default: object


class FamilyJson(TypedDict):
    name: str
    description: str
    fields: dict[str, SpecFieldJson]
    example: JsonObject | None


class TaskFamiliesJson(TypedDict):
    families: list[FamilyJson]
    limits: LimitsJson
    challengeCount: int
    datasets: list[DatasetJson]


class EstimateJson(TypedDict):
    specHash: str
    family: str
    workUnitsPerStep: str
    steps: str
    totalWorkUnits: str
    stateBytes: str
    datasetAvailable: bool
    pricePerStep: str
    escrowRequired: str
    difficulty: str
    expectedStepsPerBlock: str | None
    expectedBlocks: str | None
    expectedSeconds: float | None
    expectedSecondsBasis: Literal["measured", "target"] | None
    workRate: str | None
    trainsJobs: bool
    warning: str | None
    limits: LimitsJson


class SubmissionJson(TypedDict):
    transactionHash: str
    blockNumber: str | None
    status: Literal["pending", "posted", "failed"]
    jobId: str | None
    error: NotRequired[str]


class JobResultJson(TypedDict):
    jobId: str
    status: str
    final: bool
    stepsDone: str
    checkpoint: str
    spec: dict[str, object]
    format: str
    model: str
    inputScale: float
    featureScale: float | tuple[float, ...] | None
    metrics: MetricsJson | None
    metricsError: str | None
    audit: AuditJson | None
    state: NotRequired[str]


class RewardsJson(TypedDict):
    address: str
    fromBlock: str
    toBlock: str
    blocksMined: str
    blockRewards: str
    jobFees: str
    total: str
    mature: str
    immature: str
    coinbaseMaturity: str


class SegmentJson(TypedDict):
    segment: str
    firstStep: str
    lastStep: str


class VerificationJson(TypedDict):
    verdict: str
    source: Literal["import", "recheck"]
    seconds: NotRequired[float]
    error: NotRequired[str | None]
    checkedSegments: list[SegmentJson]


class CommitmentJson(TypedDict):
    step: str
    stateHash: str


class WorkProofJson(TypedDict):
    blockNumber: str
    blockHash: str
    miner: str
    jobId: str
    jobKind: Literal["standing", "posted"]
    startCheckpoint: str
    finalState: str
    stepCount: str
    billedSteps: str
    budgetPoint: str | None
    segmentSteps: str
    points: str
    workAccumulator: str
    difficulty: str
    workUnitsPerStep: str | None
    totalWorkUnits: str | None
    sealSeed: str
    ticketStep: str
    anchoredSegments: list[SegmentJson]
    challengedSegments: list[SegmentJson]
    payloadSize: str
    verification: VerificationJson
    commitments: NotRequired[list[CommitmentJson]]


class NoGpuJson(TypedDict):
    available: Literal[False]
    reason: str


class GpuJson(TypedDict):
    index: int
    name: str
    memoryTotal: int | None
    memoryUsed: int | None
    utilization: int | None
    temperature: int | None
    powerWatts: float | None


class CurrentJobJson(TypedDict):
    jobId: str
    parentHash: str
    step: int
    seconds: float


class LastBlockJson(TypedDict):
    number: str
    hash: str
    jobId: str
    steps: str
    trainSeconds: float


class MinerStatusJson(TypedDict):
    mining: bool
    coinbase: str | None
    device: str
    gpus: Union[NoGpuJson, list[GpuJson]]
    stepsPerSecond: float
    workUnitsPerSecond: str
    currentJob: CurrentJobJson | None
    blocksMined: str
    lastBlock: LastBlockJson | None


class NetworkStatsJson(TypedDict):
    head: str
    headHash: str
    difficulty: str
    targetBlockTime: int
    blocks: str
    averageBlockTime: float | None
    workRate: str
    stepsPerBlock: float
    jobs: dict[str, str]
    totalFeesPaid: str
    escrowLocked: str


# -- encoders ------------------------------------------------------------------------

def _view(ctx: CallContext) -> PouwView:
    view = getattr(ctx.backend, "pouw", None)
    if view is None:
        raise ServerError("this node does not serve the pouw_ namespace")
    return view


def job_json(view: PouwView, job: JobRecord) -> JobJson:
    posting = None if job.is_standing else view.posting(job.job_id)
    spec = job.spec
    return {
        "id": quantity(job.job_id),
        "kind": "standing" if job.is_standing else "posted",
        "status": STATUS_NAMES.get(job.status, str(job.status)),
        "poster": None if job.is_standing else to_checksum_address(bytes(job.poster)),
        "pricePerStep": quantity(job.price),
        "escrowLeft": quantity(job.escrow),
        "initialEscrow": None if posting is None else quantity(posting.escrow),
        "feesPaid": quantity(view.fees_paid(job, posting)),
        "stepsDone": quantity(job.steps_done),
        "stepBudget": quantity(job.budget),
        "progress": min(1.0, job.steps_done / job.budget) if job.budget else 0.0,
        "checkpoint": data(view.checkpoint(job)),
        "specHash": data(job.spec_hash),
        "spec": None if spec is None else spec.to_dict(),
        "workUnitsPerStep": None if spec is None else quantity(view.work_units(spec)),
        "postedBlock": None if posting is None else quantity(posting.block_number),
        "postedTransaction": None if posting is None else data(posting.tx_hash),
    }


def dataset_json(info: DatasetInfo) -> DatasetJson:
    return {
        "id": data(info.id),
        "size": quantity(info.size),
        "trainExamples": quantity(info.train_examples),
        "testExamples": quantity(info.test_examples),
        "inputShape": list(info.input_shape),
        "numClasses": info.num_classes,
        "name": info.name,
        "builtin": info.builtin,
    }


def limits_json(view: PouwView) -> LimitsJson:
    limits = view.config.limits
    return {
        "maxStateBytes": quantity(limits.max_state_bytes),
        "maxDatasetBytes": quantity(limits.max_dataset_bytes),
        "maxWorkUnitsPerStep": quantity(limits.max_work_units_per_step),
        "maxSteps": quantity(limits.max_steps),
        "maxBatchSize": quantity(limits.max_batch_size),
        "maxLayers": quantity(limits.max_layers),
        "maxWidth": quantity(limits.max_width),
        "maxClasses": quantity(limits.max_classes),
        "maxInputElements": quantity(limits.max_input_elems),
        "maxSpecBytes": quantity(MAX_SPEC_BYTES),
        "maxStepsPerBlock": quantity(MAX_STEPS_PER_BLOCK),
    }


def _refuse(exc: Exception) -> ServerError:
    return ServerError(str(exc))


def _validated_spec(view: PouwView, raw: JsonObject, error: type[RpcError] = InvalidParams) -> JobSpec:
    """The spec checked against the catalogue and the genesis limits; ``error`` (with the
    field in its data) when it fails."""
    try:
        return read_spec(raw, view.config.limits)  # the chain's own reading (consensus/specs.py)
    except SpecError as exc:
        raise error(f"invalid job spec: {exc}", data={"field": exc.field}) from None
    except (PouwError, TypeError, ValueError) as exc:
        raise error(f"invalid job spec: {exc}") from None


# -- datasets ------------------------------------------------------------------------

@pouw.method("pouw_putDataset", Param("data", parse_data), blocking=True)
def put_dataset(ctx: CallContext, blob: bytes) -> DatasetJson:
    view = _view(ctx)
    if len(blob) > view.max_dataset_bytes:
        raise ServerError(f"dataset refused: {len(blob)} bytes is over this chain's limit of {view.max_dataset_bytes}")
    uploads = ctx.services.uploads
    try:
        info = view.put_dataset(blob) if uploads is None else uploads.store_bytes(blob)
    except PouwViewError as exc:
        raise _refuse(exc) from None
    except UploadError as exc:  # the dataset quota
        raise ServerError(str(exc)) from None
    return dataset_json(info)


@pouw.method("pouw_getDataset", Param("id", parse_dataset_id), Param("includeData", _bool, default=False), blocking=True)
def get_dataset(ctx: CallContext, dataset_hash: bytes, include_data: bool) -> Optional[DatasetJson]:
    view = _view(ctx)
    try:
        info = view.dataset_info(dataset_hash)
    except PouwViewError as exc:
        raise _refuse(exc) from None
    if info is None:
        return None
    out = dataset_json(info)
    if include_data:
        blob = view.dataset_blob(dataset_hash)
        out["data"] = None if blob is None else data(blob)
    return out


# -- catalogue and estimates --------------------------------------------------------

FAMILY_DOCS = {
    "mlp": "Multilayer perceptron classifier: dense layers with ReLU between them, integer softmax "
           "cross-entropy; inputs of any shape are flattened.",
    "cnn": "Small convolutional classifier: same-padded convolutions (im2col) with ReLU, then one dense "
           "layer; input_shape is (channels, height, width).",
}


@pouw.method("pouw_taskFamilies", blocking=True)
def task_families(ctx: CallContext) -> TaskFamiliesJson:
    from dataclasses import MISSING, fields

    view = _view(ctx)
    datasets = view.builtin_datasets()
    digits = data(datasets[0].id) if datasets else None
    digits_image = data(datasets[1].id) if len(datasets) > 1 else None
    examples: dict[str, JsonObject] = {
        "mlp": {"family": "mlp", "dataset": digits, "input_shape": [64], "num_classes": 10, "hidden": [128],
                "batch_size": 32, "lr_shift": 3, "momentum_shift": None, "steps": 2000},
        "cnn": {"family": "cnn", "dataset": digits_image, "input_shape": [1, 8, 8], "num_classes": 10, "hidden": [8],
                "batch_size": 32, "lr_shift": 3, "momentum_shift": None, "steps": 2000},
    }
    spec_fields: dict[str, SpecFieldJson] = {
        f.name: {"required": f.default is MISSING, "default": None if f.default is MISSING else f.default}
        for f in fields(JobSpec)
    }
    families: list[FamilyJson] = [
        {"name": name, "description": FAMILY_DOCS.get(name, ""), "fields": spec_fields, "example": examples.get(name)}
        for name in FAMILIES
    ]
    return {
        "families": families,
        "limits": limits_json(view),
        "challengeCount": view.config.challenge_count,
        "datasets": [dataset_json(info) for info in datasets],
    }


@pouw.method("pouw_estimateJob", Param("spec", parse_spec), Param("pricePerStep", parse_uint, default=0), blocking=True)
def estimate_job(ctx: CallContext, raw: JsonObject, price: int) -> EstimateJson:
    from pouw.families import get_family

    view = _view(ctx)
    spec = _validated_spec(view, raw)
    _check_dataset_fits(view, spec, InvalidParams)
    family = get_family(spec.family)
    w = family.work_units(spec)
    head = view.head()
    difficulty = int(head.difficulty)
    per_block = max(1, difficulty // w) if view.is_pouw else None
    blocks = None if per_block is None else -(-spec.steps // per_block)
    target = int(view.chain.genesis.target_block_time)
    # A block takes D / (network work rate) on average: the measured rate when recent
    # blocks give one, the genesis target block time otherwise.
    measured = view.work_rate(ESTIMATE_RATE_BLOCKS).per_second if view.is_pouw else None
    block_seconds = difficulty / measured if measured else float(target)
    return {
        "specHash": data(spec.spec_hash()),
        "family": spec.family,
        "workUnitsPerStep": quantity(w),
        "steps": quantity(spec.steps),
        "totalWorkUnits": quantity(w * spec.steps),
        "stateBytes": quantity(family.state_bytes(spec)),
        "datasetAvailable": view.has_dataset(bytes.fromhex(spec.dataset[2:])),
        "pricePerStep": quantity(price),
        "escrowRequired": quantity(price * spec.steps),
        "difficulty": quantity(difficulty),
        "expectedStepsPerBlock": None if per_block is None else quantity(per_block),
        "expectedBlocks": None if blocks is None else quantity(blocks),
        "expectedSeconds": None if blocks is None else float(blocks * block_seconds),
        "expectedSecondsBasis": None if blocks is None else ("measured" if measured else "target"),
        "workRate": None if not measured else quantity(int(measured)),
        "trainsJobs": view.is_pouw,
        "warning": None if view.is_pouw else UNTRAINED_WARNING,
        "limits": limits_json(view),
    }


def _check_dataset_fits(view: PouwView, spec: JobSpec, error: type[RpcError]) -> None:
    """Refuse a spec whose dataset is here and does not fit it (another input shape or
    class count): no miner could ever train it, and its escrow would sit locked."""
    info = view.dataset_info(bytes.fromhex(spec.dataset[2:]))
    if info is None:
        return
    shape, classes = tuple(spec.input_shape), int(spec.num_classes)
    if tuple(info.input_shape) != shape or info.num_classes != classes:
        raise error(
            f"dataset {spec.dataset} does not fit the spec: its examples have input shape {list(info.input_shape)} "
            f"and {info.num_classes} classes, the spec asks for {list(shape)} and {classes}"
        )


# -- jobs -----------------------------------------------------------------------------

def _check_post_job(view: PouwView, raw: bytes) -> None:
    """Refuse before the pool what the registry would revert, in words."""
    from chain.errors import ChainError
    from chain.transactions import decode_raw_transaction

    try:
        tx = decode_raw_transaction(raw, max_size=max(len(raw), 1))
    except ChainError as exc:
        raise ServerError(f"invalid transaction: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - rlp and py-evm raise a zoo of types on junk
        raise ServerError(f"invalid transaction: {type(exc).__name__}: {exc}") from None
    if tx.to is None or bytes(tx.to) != REGISTRY_ADDRESS:
        raise ServerError(
            f"not a job posting: the transaction must call the job registry at {to_checksum_address(REGISTRY_ADDRESS)}"
        )
    payload = bytes(tx.data)
    if payload[:4] != SEL_POST:
        raise ServerError("not a job posting: the call is not postJob(bytes,uint256)")
    try:
        spec_raw, _price = abi_decode(["bytes", "uint256"], payload[4:])
    except Exception as exc:  # noqa: BLE001 - eth_abi's decoding errors
        raise ServerError(f"not a job posting: postJob arguments do not decode: {exc}") from None
    try:
        spec_dict = parse_spec(bytes(spec_raw))
    except ValueError as exc:
        raise ServerError(f"invalid job spec: {exc}") from None
    spec = _validated_spec(view, spec_dict, ServerError)
    if not view.has_dataset(bytes.fromhex(spec.dataset[2:])):
        raise ServerError(
            f"dataset {spec.dataset} is not on this node: upload it with pouw_putDataset first "
            "(miners and validators fetch it from here)"
        )
    _check_dataset_fits(view, spec, ServerError)


@pouw.method("pouw_submitJob", Param("transaction", parse_data), Param("timeout", parse_timeout, default=SUBMIT_TIMEOUT_S))
async def submit_job(ctx: CallContext, raw: bytes, timeout: float) -> SubmissionJson:
    services = ctx.services
    backend = ctx.backend
    view = _view(ctx)
    await services.run_blocking(_check_post_job, view, raw)
    try:
        tx = await services.run_blocking(backend.submit_raw_transaction, raw)
    except TransactionRejected as exc:
        raise ServerError(str(exc)) from None
    tx_hash = bytes(tx.hash)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        location = await services.run_blocking(backend.transaction_location, tx_hash)
        if location is not None or loop.time() >= deadline:
            break
        await asyncio.sleep(SUBMIT_POLL_S)
    if location is None:
        return {"transactionHash": data(tx_hash), "status": "pending", "jobId": None, "blockNumber": None}
    block, index = location
    receipts = await services.run_blocking(backend.receipts, block)
    receipt = receipts[index]
    mined = data(tx_hash), quantity(block.number)
    if receipt.state_root != b"\x01":
        return _mined_submission(*mined, "failed", None, "the postJob call reverted or ran out of gas")
    for entry in receipt.logs:
        job_id = posted_job_id(entry)
        if job_id is not None:
            return _mined_submission(*mined, "posted", quantity(job_id))
    return _mined_submission(*mined, "failed", None, "mined, but no JobPosted log in its receipt")


def _mined_submission(
    tx_hash: str, block_number: str, status: Literal["posted", "failed"], job_id: str | None, error: str | None = None
) -> SubmissionJson:
    out: SubmissionJson = {"transactionHash": tx_hash, "blockNumber": block_number, "status": status, "jobId": job_id}
    if error is not None:
        out["error"] = error
    return out


@pouw.method("pouw_getJob", Param("jobId", parse_uint), Param("block", parse_block_id, default=LATEST), blocking=True)
def get_job(ctx: CallContext, job_id: int, block_id: BlockId) -> Optional[JobJson]:
    view = _view(ctx)
    block = require_block(ctx, block_id)
    job = view.job(job_id, block.header)
    if job is None:
        return None
    out = job_json(view, job)
    out["audit"] = audit_json(ctx, job_id)  # as of the head: what this node and the chain know
    return out


@pouw.method("pouw_listJobs", Param("filter", parse_list_filter, default=None), blocking=True)
def list_jobs(ctx: CallContext, query: Optional[ListFilter]) -> list[JobJson]:
    view = _view(ctx)
    query = query or {}
    jobs = view.jobs(
        statuses=query.get("status"),
        poster=query.get("poster"),
        from_id=query.get("fromId", 1),
        limit=query.get("limit", LIST_LIMIT_DEFAULT),
        include_standing=query.get("includeStanding", True),
    )
    listed = []
    for job in jobs:
        out = job_json(view, job)
        out["audit"] = audit_json(ctx, job.job_id)
        listed.append(out)
    return listed


@pouw.method("pouw_getJobResult", Param("jobId", parse_uint), Param("options", parse_result_options, default=None), blocking=True)
def get_job_result(ctx: CallContext, job_id: int, options: Optional[ResultOptions]) -> Optional[JobResultJson]:
    view = _view(ctx)
    job = view.job(job_id)
    if job is None:
        return None
    try:
        result = view.job_result(job)
    except PouwViewError as exc:
        raise _refuse(exc) from None
    spec = job.spec
    assert spec is not None
    out: JobResultJson = {
        "jobId": quantity(job_id),
        "status": STATUS_NAMES.get(job.status, str(job.status)),
        "final": job.status in (STATUS_COMPLETED, STATUS_CANCELLED),
        "stepsDone": quantity(job.steps_done),
        "checkpoint": data(result.checkpoint),
        "spec": spec.to_dict(),
        "format": "safetensors",
        "model": data(result.model),
        "inputScale": 2.0 ** -spec.input_frac_bits,
        "featureScale": result.feature_scale,
        "metrics": result.metrics,
        "metricsError": result.metrics_error,
        "audit": audit_json(ctx, job_id),
    }
    if (options or {}).get("includeState"):
        out["state"] = data(result.state_bytes)
    return out


# -- rewards, proofs ------------------------------------------------------------------

@pouw.method(
    "pouw_getRewards", Param("address", parse_address),
    Param("fromBlock", parse_block_number, default=BlockId(number=0)),
    Param("toBlock", parse_block_number, default=LATEST), blocking=True,
)
def get_rewards(ctx: CallContext, address: bytes, from_id: BlockId, to_id: BlockId) -> RewardsJson:
    view = _view(ctx)
    first = require_block(ctx, from_id).number
    last = require_block(ctx, to_id).number
    if first > last:
        raise InvalidParams(f"fromBlock {first} is after toBlock {last}")
    if last - first + 1 > REWARDS_MAX_RANGE:
        raise LimitExceeded(f"query exceeds max block range {REWARDS_MAX_RANGE}")
    r = view.rewards(address, first, last)
    total = r.block_rewards + r.job_fees
    return {
        "address": to_checksum_address(address),
        "fromBlock": quantity(first),
        "toBlock": quantity(last),
        "blocksMined": quantity(r.blocks_mined),
        "blockRewards": quantity(r.block_rewards),
        "jobFees": quantity(r.job_fees),
        "total": quantity(total),
        "mature": quantity(total - r.immature),
        "immature": quantity(r.immature),
        "coinbaseMaturity": quantity(view.maturity),
    }


@pouw.method("pouw_getWorkProof", Param("block", parse_block_id), Param("options", parse_proof_options, default=None), blocking=True)
def get_work_proof(ctx: CallContext, block_id: BlockId, options: Optional[ProofOptions]) -> Optional[WorkProofJson]:
    view = _view(ctx)
    options = options or {}
    block = resolve_block(ctx, block_id)
    if block is None:
        return None
    proof = view.work_proof(pouw_header(block.header))
    if proof is None:
        return None
    header = proof.header
    t = header.step_count
    recomputed = sorted(set(proof.anchored) | set(proof.challenged))
    checked = [segment_json(proof, j) for j in recomputed]
    job_id = int.from_bytes(header.job_id, "big")
    out: WorkProofJson = {
        "blockNumber": quantity(header.block_number),
        "blockHash": data(header.hash),
        "miner": to_checksum_address(bytes(header.coinbase)),
        "jobId": quantity(job_id),
        "jobKind": "standing" if job_id >= STANDING_JOB_BASE else "posted",
        "startCheckpoint": data(header.start_checkpoint),
        "finalState": data(header.final_state),
        "stepCount": quantity(t),
        "billedSteps": quantity(proof.billed_steps),
        "budgetPoint": None if proof.budget_point is None else quantity(proof.budget_point),
        "segmentSteps": quantity(proof.segment_steps),
        "points": quantity(len(proof.points)),
        "workAccumulator": data(header.work_accumulator),
        "difficulty": quantity(header.difficulty),
        "workUnitsPerStep": None if proof.work_units is None else quantity(proof.work_units),
        "totalWorkUnits": None if proof.work_units is None else quantity(proof.work_units * t),
        "sealSeed": data(proof.seed),
        "ticketStep": quantity(t),
        "anchoredSegments": [segment_json(proof, j) for j in proof.anchored],
        "challengedSegments": [segment_json(proof, j) for j in proof.challenged],
        "payloadSize": quantity(proof.payload_size),
        "verification": {"verdict": "ok", "source": "import", "checkedSegments": checked},
    }
    if options.get("includeCommitments"):
        out["commitments"] = [{"step": quantity(p), "stateHash": data(c)} for p, c in zip(proof.points, proof.commitments)]
    if options.get("recheck"):
        verdict = view.recheck(header)
        out["verification"] = {
            "verdict": verdict["verdict"], "source": "recheck", "seconds": verdict["seconds"],
            "error": verdict["error"], "checkedSegments": checked,
        }
    return out


def segment_json(proof: WorkProof, j: int) -> SegmentJson:
    """Segment ``j`` of a work proof: its index and the steps it covers."""
    first = (proof.points[j - 2] if j >= 2 else 0) + 1
    return {"segment": quantity(j), "firstStep": quantity(first), "lastStep": quantity(proof.points[j - 1])}


# -- miner and network ------------------------------------------------------------------

def gpus_json() -> NoGpuJson | list[GpuJson]:
    from pouw.telemetry import NoGpu, gpu_snapshot

    snapshot = gpu_snapshot()
    if isinstance(snapshot, NoGpu):
        return {"available": False, "reason": snapshot.reason}
    return [
        {"index": g.index, "name": g.name, "memoryTotal": g.memory_total, "memoryUsed": g.memory_used,
         "utilization": g.utilization_gpu, "temperature": g.temperature_c, "powerWatts": g.power_w}
        for g in snapshot
    ]


@pouw.method("pouw_minerStatus", blocking=True)
def miner_status(ctx: CallContext) -> MinerStatusJson:
    view = _view(ctx)
    miner = ctx.backend.miner
    if miner is None:
        device = getattr(view.chain.engine_class, "device", "cpu") if view.is_pouw else "cpu"
        return {
            "mining": False, "coinbase": None, "device": str(device), "gpus": gpus_json(),
            "stepsPerSecond": 0.0, "workUnitsPerSecond": quantity(0), "currentJob": None,
            "blocksMined": quantity(0), "lastBlock": None,
        }
    status = miner.status()
    current = status["current"]
    last = status["last"]
    return {
        "mining": status["mining"],
        "coinbase": to_checksum_address(status["coinbase"]),
        "device": status["device"],
        "gpus": gpus_json(),
        "stepsPerSecond": round(status["steps_per_second"], 3),
        "workUnitsPerSecond": quantity(int(status["work_units_per_second"])),
        "currentJob": None if current is None else {
            "jobId": quantity(current["job_id"]), "parentHash": data(current["parent_hash"]),
            "step": current["step"], "seconds": round(current["seconds"], 3),
        },
        "blocksMined": quantity(status["blocks_mined"]),
        "lastBlock": None if last is None else {
            "number": quantity(last["number"]), "hash": data(last["hash"]), "jobId": quantity(last["job_id"]),
            "steps": quantity(last["steps"]), "trainSeconds": round(last["train_seconds"], 3),
        },
    }


@pouw.method("pouw_networkStats", Param("blocks", parse_stats_blocks, default=STATS_BLOCKS_DEFAULT), blocking=True)
def network_stats(ctx: CallContext, blocks: int) -> NetworkStatsJson:
    view = _view(ctx)
    rate = view.work_rate(blocks)  # the genesis timestamp never bounds the span
    head, span, work, steps, window = rate.head, rate.seconds, rate.work, rate.steps, rate.blocks
    counts = {"open": 0, "completed": 0, "cancelled": 0, "standing": len(view.config.standing_jobs)}
    fees = escrow = 0
    for job in view.jobs(limit=2**62, include_standing=False):
        name = STATUS_NAMES.get(job.status)
        if name in counts:
            counts[name] += 1
        fees += view.fees_paid(job, view.posting(job.job_id))
        if job.status == STATUS_OPEN:
            escrow += job.escrow
    return {
        "head": quantity(head.block_number),
        "headHash": data(head.hash),
        "difficulty": quantity(head.difficulty),
        "targetBlockTime": int(view.chain.genesis.target_block_time),
        "blocks": quantity(window),
        "averageBlockTime": (span / window) if window else None,
        "workRate": quantity(int(work / span) if span > 0 else 0),
        "stepsPerBlock": (steps / window) if window else 0.0,
        "jobs": {name: quantity(n) for name, n in counts.items()},
        "totalFeesPaid": quantity(fees),
        "escrowLocked": quantity(escrow),
    }


__all__ = ["pouw", "job_json", "dataset_json", "parse_uint", "parse_spec"]
