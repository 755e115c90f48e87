"""web3.py (v8) module for the node's ``pouw_`` JSON-RPC namespace (docs/rpc-pouw.md).

    from web3 import Web3
    from client.web3_module import PouwModule

    w3 = Web3(Web3.HTTPProvider("http://127.0.0.1:8545"))
    w3.attach_modules({"pouw": PouwModule})
    ds = w3.pouw.put_dataset(open("set.safetensors", "rb").read())
    spec = {"family": "mlp", "dataset": ds.id.to_0x_hex(), ...}
    sub = w3.pouw.submit_job(account, spec, price_per_step=10**9)   # eth_account LocalAccount
    w3.pouw.wait_for_job(sub.jobId, "completed", timeout=600)
    model = w3.pouw.load_model(sub.jobId)                             # a torch.nn.Module

``AsyncPouwModule`` is the same for ``AsyncWeb3`` (every method a coroutine).

What comes back
---------------
Every object is an ``AttributeDict`` (as web3.py returns blocks) with the node's
**camelCase** keys (``job.stepsDone``, ``job["feesPaid"]``), and its values turned into
plain Python values the way web3.py does for ``eth_``:

* hex quantities -> ``int`` (``id``, ``pricePerStep``, ``escrowLeft``, ``feesPaid``,
  ``stepsDone``, ``blockRewards``, ``billedSteps``, the ``limits`` ...);
* 32-byte hashes and byte strings -> ``HexBytes`` (a ``bytes``: ``checkpoint``,
  ``specHash``, ``transactionHash``, ``model``, ``state``, a dataset's ``id`` and ``data``...);
* addresses -> checksummed ``str`` (``poster``, ``address``, ``miner``, ``coinbase``);
* a job spec (``spec``, a family's ``example``) stays a plain ``dict`` of the spec's own
  snake_case fields, ready to post again; floats, strings, booleans and null as sent.

Fields this module does not know are returned as the node sent them. A job or dataset
the node does not know is ``None``. An error the node answers is raised as web3.py's
``Web3RPCError`` (``MethodUnavailable`` for -32601), its ``rpc_response["error"]``
holding the node's code and message; :func:`rpc_error_message` extracts the message.
A job's ``id`` is an ``int`` while a dataset's ``id`` is ``HexBytes`` (pass either
form back: every method takes ids as int, bytes or 0x-hex text).

Datasets
--------
:meth:`PouwModule.put_dataset` sends files up to 2 MiB with ``pouw_putDataset`` (hex in
JSON: the node's 5 MiB body limit) and larger ones, over an HTTP provider, as the raw
body of ``POST /pouw/datasets`` on the same endpoint (bounded by the chain's
``maxDatasetBytes`` only); a refusal is a ``Web3RPCError`` (-32000) either way.

Posting a job
-------------
:meth:`PouwModule.submit_job` builds the registry's ``postJob(spec, pricePerStep)`` call
(``consensus.registry.encode_post_job``) to ``0x...0100`` with ``value`` = escrow (by
default ``steps * pricePerStep``), takes the nonce (``pending``), chain id, EIP-1559
fees and gas from the node, signs with the dApp's own ``LocalAccount`` (the node holds
no keys) and sends it with ``pouw_submitJob``, which checks the spec and the dataset
before the transaction reaches the pool and waits for it to be mined. Waits longer
than the HTTP request timeout allows go on here, on ``eth_getTransactionReceipt``.

Results
-------
:func:`model_from_result` turns a ``pouw_getJobResult`` answer into a float32
``torch.nn.Module`` (feed it ``x_int8.float() * result.inputScale``, i.e.
``2**-input_frac_bits``, or the original float features when the job's dataset recorded
its ``feature_scale``): it builds the family's architecture from the job spec and
loads the downloaded safetensors tensors into it, strictly.

Other methods: ``cancel_job`` (the poster's ``cancelJob``, returns the refund),
``get_job_history`` (checkpoints with exact accuracy, rate, ETA), ``node_info``,
``block_imports``; :data:`REGISTRY_ABI` is the registry's JSON ABI shipped with the
package. ``submit_job`` raises :class:`UntrainedChain` on a chain that never trains jobs.
"""
from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping, Sequence
from typing import Any, Callable, Iterable, Optional, Union

from eth_utils import is_hex, to_checksum_address
from hexbytes import HexBytes
from web3.datastructures import AttributeDict
from web3.exceptions import TimeExhausted, Web3RPCError, Web3ValueError
from web3.method import Method
from web3.module import Module

__all__ = [
    "PouwModule",
    "AsyncPouwModule",
    "model_from_result",
    "rpc_error_message",
    "REGISTRY_ADDRESS",
    "REGISTRY_ABI",
    "REGISTRY_ABI_PATH",
    "UntrainedChain",
    "format_pouw_result",
]

REGISTRY_ADDRESS = "0x0000000000000000000000000000000000000100"
"""The job registry precompile (consensus.params.REGISTRY_ADDRESS)."""


def _registry_abi_path() -> Any:
    from importlib import resources

    return resources.files("consensus").joinpath("registry_abi.json")


REGISTRY_ABI_PATH = _registry_abi_path()
"""The registry's JSON ABI, shipped in the package (``consensus/registry_abi.json``) for any
language's Ethereum library; tests check it against the precompile's selectors."""
REGISTRY_ABI: list[dict[str, Any]] = json.loads(REGISTRY_ABI_PATH.read_text())
"""``w3.eth.contract(address=REGISTRY_ADDRESS, abi=REGISTRY_ABI)``."""


class UntrainedChain(Web3ValueError):
    """The node's chain has no proof of work (a development genesis): nobody would ever
    train the job. ``submit_job(..., allow_untrained=True)`` posts it all the same."""

#: Files larger than this go to ``POST /pouw/datasets`` (the JSON-RPC body limit is
#: 5 MiB of JSON: about 2.5 MB of file in hex).
RPC_DATASET_MAX_BYTES = 2 * 1024 * 1024
DATASET_UPLOAD_PATH = "/pouw/datasets"
#: pouw_submitJob waits at most this long on the node (docs/rpc-pouw.md).
NODE_SUBMIT_TIMEOUT_MAX = 120.0
#: Seconds kept between the node-side wait and the HTTP request timeout.
_REQUEST_MARGIN = 5.0

JobId = Union[int, str, bytes]
BlockIdentifier = Union[int, str, bytes]

# --- result formatting ----------------------------------------------------------------

_QUANTITY_KEYS = frozenset({
    # job
    "pricePerStep", "escrowLeft", "initialEscrow", "feesPaid", "stepsDone", "stepBudget", "workUnitsPerStep",
    "postedBlock",
    # dataset
    "size", "trainExamples", "testExamples",
    # estimate
    "steps", "totalWorkUnits", "stateBytes", "escrowRequired", "difficulty", "expectedStepsPerBlock",
    "expectedBlocks",
    # submission, result, proof, cancellation
    "jobId", "blockNumber", "stepCount", "ticketStep", "payloadSize", "billedSteps", "budgetPoint",
    "segmentSteps", "points", "segment", "firstStep", "lastStep", "step", "refund",
    # node info, imports, job history
    "chainId", "peers", "transactions", "timestamp",
    # rewards
    "fromBlock", "toBlock", "blocksMined", "blockRewards", "jobFees", "total", "mature", "immature",
    "coinbaseMaturity",
    # miner, network
    "workUnitsPerSecond", "number", "head", "workRate", "totalFeesPaid", "escrowLocked", "blocks",
    "open", "completed", "cancelled", "standing",
    # limits
    "maxStateBytes", "maxDatasetBytes", "maxWorkUnitsPerStep", "maxSteps", "maxBatchSize", "maxSpecBytes",
    "maxStepsPerBlock", "maxLayers", "maxWidth", "maxClasses", "maxInputElements",
    # audits
    "auditedThrough", "fraudsProven", "rollbacks", "workers", "behind", "blocksAudited", "stepsAudited",
})
_BYTES_KEYS = frozenset({
    "checkpoint", "specHash", "postedTransaction", "transactionHash", "model", "state", "data", "blockHash",
    "startCheckpoint", "finalState", "workAccumulator", "sealSeed", "stateHash", "parentHash", "hash",
    "headHash", "genesisHash", "startState", "proofTransaction",
})
_ADDRESS_KEYS = frozenset({"poster", "address", "miner", "coinbase", "prover"})
_VERBATIM_KEYS = frozenset({"spec", "example", "fields", "architecture"})
"""Values kept as plain dicts/lists, untouched (a spec's own fields are snake_case)."""


def _plain(value: Any) -> Any:
    """AttributeDicts and tuples (web3's attrdict middleware) back to plain dicts and lists."""
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _to_int(value: Any) -> Any:
    if isinstance(value, str) and value[:2] in ("0x", "0X"):
        return int(value, 16)
    if isinstance(value, (list, tuple)):
        return [_to_int(v) for v in value]
    return value


def _to_bytes(value: Any) -> Any:
    if isinstance(value, str) and value[:2] in ("0x", "0X"):
        return HexBytes(value)
    if isinstance(value, (list, tuple)):
        return [_to_bytes(v) for v in value]
    return value


def _format_value(key: Optional[str], value: Any) -> Any:
    if value is None:
        return None
    if key in _VERBATIM_KEYS:
        return _plain(value)
    if isinstance(value, Mapping):
        return AttributeDict({k: _format_value(k, v) for k, v in value.items()})
    if key == "id" and isinstance(value, str):
        # a dataset id is a 32-byte hash; a job id a quantity (< 2**129 in practice)
        return HexBytes(value) if len(value) == 66 else _to_int(value)
    if key in _QUANTITY_KEYS:
        return _to_int(value)
    if key in _BYTES_KEYS:
        return _to_bytes(value)
    if key in _ADDRESS_KEYS and isinstance(value, str) and len(value) == 42:
        return to_checksum_address(value)
    if isinstance(value, (list, tuple)):
        return [_format_value(None, v) for v in value]
    return value


def format_pouw_result(result: Any) -> Any:
    """A ``pouw_`` answer in Python values (see the module doc); None stays None."""
    return _format_value(None, result)


def _formatter(method: str, module: Module) -> Callable[[Any], Any]:
    return format_pouw_result


# --- parameter encoding ------------------------------------------------------------------


def _hex_data(value: Any, what: str) -> str:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return "0x" + bytes(value).hex()
    if isinstance(value, str) and is_hex(value):
        return "0x" + HexBytes(value).hex()
    raise Web3ValueError(f"{what}: expected bytes or 0x-prefixed hex text, got {type(value).__name__}")


def _quantity(value: Any, what: str) -> str:
    if isinstance(value, bool):
        raise Web3ValueError(f"{what}: expected an integer, got a boolean")
    if isinstance(value, int):
        if value < 0:
            raise Web3ValueError(f"{what}: expected a non-negative integer, got {value}")
        return hex(value)
    if isinstance(value, (bytes, bytearray)):
        return hex(int.from_bytes(value, "big"))
    if isinstance(value, str):
        text = value.strip()
        try:
            return hex(int(text, 16) if text[:2] in ("0x", "0X") else int(text, 10))
        except ValueError:
            pass
    raise Web3ValueError(f"{what}: expected an integer, got {value!r}")


def _dataset_id(value: Any) -> str:
    text = _hex_data(value, "dataset id")
    if len(text) != 66:
        raise Web3ValueError(f"dataset id: expected 32 bytes, got {(len(text) - 2) // 2}")
    return text


def _block_id(value: BlockIdentifier) -> Any:
    if isinstance(value, str) and value in ("latest", "earliest", "pending", "safe", "finalized"):
        return value
    if isinstance(value, (bytes, bytearray)) and len(value) == 32:
        return "0x" + bytes(value).hex()
    if isinstance(value, str) and is_hex(value) and len(value) == 66:
        return value
    return _quantity(value, "block")


def spec_to_dict(spec: Any) -> dict[str, Any]:
    """A job spec given as a dict, a ``pouw.spec.JobSpec``, or JSON text/bytes, as a dict."""
    if isinstance(spec, Mapping):
        return _plain(spec)
    if hasattr(spec, "to_dict"):
        return dict(spec.to_dict())
    if isinstance(spec, (bytes, bytearray)):
        spec = bytes(spec).decode()
    if isinstance(spec, str):
        try:
            value = json.loads(spec)
        except ValueError as exc:
            raise Web3ValueError(f"job spec is not valid JSON: {exc}") from None
        if isinstance(value, dict):
            return value
    raise Web3ValueError(f"job spec: expected a JSON object, got {type(spec).__name__}")


def _dataset_bytes(data: Any) -> bytes:
    """A dataset file given as bytes, 0x-hex text, a path or a binary file object."""
    if isinstance(data, os.PathLike):
        with open(data, "rb") as f:
            return f.read()
    if hasattr(data, "read"):
        data = data.read()
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data)
    return bytes(HexBytes(_hex_data(data, "dataset")))


def _put_dataset_munger(module: Module, data: Any) -> list[Any]:
    return ["0x" + _dataset_bytes(data).hex()]


def _upload_url(module: Module) -> Optional[str]:
    """``POST /pouw/datasets`` next to an HTTP provider's endpoint; None for other providers."""
    from urllib.parse import urlsplit, urlunsplit

    endpoint = getattr(module.w3.provider, "endpoint_uri", None)
    if not isinstance(endpoint, str) or not endpoint.startswith(("http://", "https://")):
        return None
    parts = urlsplit(endpoint)
    return urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/") + DATASET_UPLOAD_PATH, "", ""))


def _upload_answer(status: int, text: str) -> AttributeDict:
    """The dataset object from ``POST /pouw/datasets``, or its refusal as a Web3RPCError."""
    try:
        body = json.loads(text)
    except ValueError:
        body = None
    if status == 200 and isinstance(body, dict) and "error" not in body:
        return format_pouw_result(body)
    message = body.get("error") if isinstance(body, dict) else None
    message = str(message) if message else f"dataset upload answered HTTP {status}: {text[:200]}"
    response = {"jsonrpc": "2.0", "id": None, "error": {"code": -32000, "message": message}}
    raise Web3RPCError(repr(response["error"]), rpc_response=response)  # type: ignore[arg-type]


def _get_dataset_munger(module: Module, dataset_id: Any, include_data: bool = False) -> list[Any]:
    return [_dataset_id(dataset_id), bool(include_data)]


def _estimate_munger(module: Module, spec: Any, price_per_step: Optional[int] = None) -> list[Any]:
    params: list[Any] = [spec_to_dict(spec)]
    if price_per_step is not None:
        params.append(_quantity(price_per_step, "price_per_step"))
    return params


def _submit_raw_munger(module: Module, raw_transaction: Any, timeout: Optional[float] = None) -> list[Any]:
    params: list[Any] = [_hex_data(raw_transaction, "raw transaction")]
    if timeout is not None:
        params.append(timeout)
    return params


def _get_job_munger(module: Module, job_id: JobId, block_identifier: Optional[BlockIdentifier] = None) -> list[Any]:
    params: list[Any] = [_quantity(job_id, "job id")]
    if block_identifier is not None:
        params.append(_block_id(block_identifier))
    return params


def _list_jobs_munger(
    module: Module,
    status: Union[str, Iterable[str], None] = None,
    poster: Optional[str] = None,
    from_id: Optional[JobId] = None,
    limit: Optional[int] = None,
    include_standing: Optional[bool] = None,
) -> list[Any]:
    query: dict[str, Any] = {}
    if status is not None:
        query["status"] = status if isinstance(status, str) else list(status)
    if poster is not None:
        query["poster"] = to_checksum_address(poster)
    if from_id is not None:
        query["fromId"] = _quantity(from_id, "from_id")
    if limit is not None:
        query["limit"] = _quantity(limit, "limit")
    if include_standing is not None:
        query["includeStanding"] = bool(include_standing)
    return [query] if query else []


def _job_result_munger(module: Module, job_id: JobId, include_state: bool = False) -> list[Any]:
    params: list[Any] = [_quantity(job_id, "job id")]
    if include_state:
        params.append({"includeState": True})
    return params


def _rewards_munger(
    module: Module, address: str, from_block: Optional[BlockIdentifier] = None,
    to_block: Optional[BlockIdentifier] = None,
) -> list[Any]:
    params: list[Any] = [to_checksum_address(address)]
    if from_block is not None or to_block is not None:
        params.append(_block_id(0 if from_block is None else from_block))
    if to_block is not None:
        params.append(_block_id(to_block))
    return params


def _work_proof_munger(
    module: Module, block_identifier: BlockIdentifier = "latest", recheck: bool = False,
    include_commitments: bool = False,
) -> list[Any]:
    params: list[Any] = [_block_id(block_identifier)]
    options = {}
    if recheck:
        options["recheck"] = True
    if include_commitments:
        options["includeCommitments"] = True
    if options:
        params.append(options)
    return params


def _no_params_munger(module: Module) -> list[Any]:
    return []


def _network_stats_munger(module: Module, blocks: Optional[int] = None) -> list[Any]:
    return [] if blocks is None else [_quantity(blocks, "blocks")]


def _job_history_munger(module: Module, job_id: JobId, points: Optional[int] = None, metrics: bool = True) -> list[Any]:
    options: dict[str, Any] = {}
    if points is not None:
        options["points"] = _quantity(points, "points")
    if not metrics:
        options["metrics"] = False
    return [_quantity(job_id, "job id")] + ([options] if options else [])


def _imports_munger(module: Module, limit: Optional[int] = None) -> list[Any]:
    return [] if limit is None else [_quantity(limit, "limit")]


def _proof_state_munger(module: Module, block_hash: str | bytes, segment: int, state: str | bytes) -> list[str]:
    return [_hex_data(block_hash, "block_hash"), _quantity(segment, "segment"), _hex_data(state, "state")]


def _method(name: str, munger: Callable[..., list[Any]]) -> Method[Callable[..., Any]]:
    return Method(name, mungers=[munger], result_formatters=_formatter)  # type: ignore[arg-type]


# --- the module ------------------------------------------------------------------------------


def _job_tx_skeleton(sender: str, spec: Any, price_per_step: int, escrow: Optional[int]) -> dict[str, Any]:
    """The postJob transaction's fields that need no node: to, value, data, from."""
    from consensus.registry import encode_post_job

    spec_dict = spec_to_dict(spec)
    if isinstance(price_per_step, bool) or not isinstance(price_per_step, int) or price_per_step < 0:
        raise Web3ValueError(f"price_per_step: expected a non-negative integer, got {price_per_step!r}")
    if escrow is None:
        steps = spec_dict.get("steps")
        if isinstance(steps, bool) or not isinstance(steps, int):
            raise Web3ValueError("job spec: 'steps' must be an integer (it sets the default escrow)")
        escrow = steps * price_per_step
    return {
        "type": 2,
        "from": to_checksum_address(sender),
        "to": to_checksum_address(REGISTRY_ADDRESS),
        "value": int(escrow),
        "data": "0x" + encode_post_job(spec_dict, price_per_step).hex(),
    }


def _job_int(job_id: JobId) -> int:
    return int(_quantity(job_id, "job id"), 16)


def _cancel_tx_skeleton(sender: str, job_id: JobId) -> dict[str, Any]:
    from consensus.registry import encode_cancel_job

    return {
        "type": 2,
        "from": to_checksum_address(sender),
        "to": to_checksum_address(REGISTRY_ADDRESS),
        "value": 0,
        "data": "0x" + encode_cancel_job(_job_int(job_id)).hex(),
    }


def _cancellation_from_receipt(tx_hash: bytes, job_id: JobId, receipt: Any) -> AttributeDict:
    from consensus.registry import TOPIC_CANCELLED

    out: dict[str, Any] = {"transactionHash": HexBytes(tx_hash), "blockNumber": receipt["blockNumber"],
                           "jobId": _job_int(job_id)}
    if receipt["status"] != 1:
        return AttributeDict({**out, "status": "failed", "refund": None,
                              "error": "the cancelJob call reverted or ran out of gas"})
    for entry in receipt["logs"]:
        topics = [bytes(t) for t in entry["topics"]]
        if entry["address"].lower() == REGISTRY_ADDRESS and len(topics) > 1 and topics[0] == TOPIC_CANCELLED:
            return AttributeDict({**out, "status": "cancelled", "refund": int.from_bytes(bytes(entry["data"])[-32:], "big")})
    return AttributeDict({**out, "status": "failed", "refund": None, "error": "mined, but no JobCancelled log"})


def _method_missing(exc: Web3RPCError) -> bool:
    error = (exc.rpc_response or {}).get("error") if isinstance(exc.rpc_response, Mapping) else None
    return isinstance(error, Mapping) and error.get("code") == -32601


def _refuse_untrained(trains: Optional[bool]) -> None:
    if trains is False:
        raise UntrainedChain(
            "this node's chain has no proof of work (a development genesis): nobody trains jobs on it, so the job "
            "would never make progress and its escrow would stay locked until cancelled; pass allow_untrained=True "
            "to post it all the same"
        )


def _check_timeout(timeout: float) -> None:
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout >= 0:
        raise Web3ValueError(f"timeout must be a number of seconds >= 0, got {timeout!r}")


def _sign(account: Any, tx: dict[str, Any]) -> bytes:
    unsigned = {k: v for k, v in tx.items() if k != "from"}
    return bytes(account.sign_transaction(unsigned).raw_transaction)


def _node_wait(module: Module, timeout: float) -> float:
    """How long pouw_submitJob may wait on the node: within the HTTP request timeout."""
    value: Any = None
    try:
        value = module.w3.provider.get_request_kwargs().get("timeout")  # type: ignore[union-attr]
    except AttributeError:
        pass
    if isinstance(value, tuple) and value:
        value = value[-1]
    request_timeout = float(value) if isinstance(value, (int, float)) else 30.0
    return min(float(timeout), NODE_SUBMIT_TIMEOUT_MAX, max(0.0, request_timeout - _REQUEST_MARGIN))


def _submission_from_receipt(tx_hash: bytes, receipt: Any) -> AttributeDict:
    """What pouw_submitJob answers, from a receipt found here."""
    from consensus.registry import TOPIC_POSTED

    out: dict[str, Any] = {"transactionHash": HexBytes(tx_hash), "blockNumber": receipt["blockNumber"]}
    if receipt["status"] != 1:
        return AttributeDict({**out, "status": "failed", "jobId": None,
                              "error": "the postJob call reverted or ran out of gas"})
    for entry in receipt["logs"]:
        topics = [bytes(t) for t in entry["topics"]]
        if entry["address"].lower() == REGISTRY_ADDRESS and len(topics) > 1 and topics[0] == TOPIC_POSTED:
            return AttributeDict({**out, "status": "posted", "jobId": int.from_bytes(topics[1], "big")})
    return AttributeDict({**out, "status": "failed", "jobId": None,
                          "error": "mined, but no JobPosted log in its receipt"})


def _pending(tx_hash: bytes) -> AttributeDict:
    return AttributeDict({"transactionHash": HexBytes(tx_hash), "status": "pending", "jobId": None,
                          "blockNumber": None})


def _job_reached(job: Any, job_id: JobId, wanted: set[str], deadline: float, timeout: float) -> bool:
    """True when ``job`` is in a wanted status; raises when it never will be or time is up."""
    if job is None:
        raise Web3ValueError(f"job {int(_quantity(job_id, 'job id'), 16)} is not known to the node")
    if job["status"] in wanted:
        return True
    if job["status"] in ("completed", "cancelled"):
        raise Web3ValueError(f"job {job['id']} is {job['status']}: it will never be {' or '.join(sorted(wanted))}")
    if time.monotonic() >= deadline:
        raise TimeExhausted(
            f"job {job['id']} is still {job['status']} ({job['stepsDone']}/{job['stepBudget']} steps) "
            f"after {timeout:g} s"
        )
    return False


class _PouwMethods(Module):
    """The RPC methods, shared by the sync and async modules: one web3 ``Method`` each;
    mungers turn Python arguments into the node's params, the result formatter turns
    its answer into Python values."""

    put_dataset_rpc: Method[Callable[..., AttributeDict]] = _method("pouw_putDataset", _put_dataset_munger)
    """``put_dataset_rpc(data)``: ``pouw_putDataset`` itself (files up to about 2.5 MB: the
    JSON-RPC body limit); :meth:`put_dataset` picks it or ``POST /pouw/datasets``."""
    get_dataset: Method[Callable[..., Optional[AttributeDict]]] = _method("pouw_getDataset", _get_dataset_munger)
    """``get_dataset(dataset_id, include_data=False)``: the dataset object, or None."""
    task_families: Method[Callable[[], AttributeDict]] = _method("pouw_taskFamilies", _no_params_munger)
    """``task_families()``: families, their fields and examples, limits, built-in datasets."""
    estimate_job: Method[Callable[..., AttributeDict]] = _method("pouw_estimateJob", _estimate_munger)
    """``estimate_job(spec, price_per_step=None)``: check a spec and say what it costs."""
    submit_raw_job: Method[Callable[..., AttributeDict]] = _method("pouw_submitJob", _submit_raw_munger)
    """``submit_raw_job(raw_transaction, timeout=None)``: ``pouw_submitJob`` on a signed postJob."""
    get_job: Method[Callable[..., Optional[AttributeDict]]] = _method("pouw_getJob", _get_job_munger)
    """``get_job(job_id, block_identifier=None)``: the job object, or None."""
    list_jobs: Method[Callable[..., list[AttributeDict]]] = _method("pouw_listJobs", _list_jobs_munger)
    """``list_jobs(status=None, poster=None, from_id=None, limit=None, include_standing=None)``."""
    get_job_result: Method[Callable[..., Optional[AttributeDict]]] = _method("pouw_getJobResult", _job_result_munger)
    """``get_job_result(job_id, include_state=False)``: model (safetensors bytes), metrics; None if unknown."""
    get_rewards: Method[Callable[..., AttributeDict]] = _method("pouw_getRewards", _rewards_munger)
    """``get_rewards(address, from_block=None, to_block=None)``: what a coinbase earned."""
    get_work_proof: Method[Callable[..., Optional[AttributeDict]]] = _method("pouw_getWorkProof", _work_proof_munger)
    """``get_work_proof(block_identifier, recheck=False, include_commitments=False)``."""
    miner_status: Method[Callable[[], AttributeDict]] = _method("pouw_minerStatus", _no_params_munger)
    """``miner_status()``: the node's miner, its device and GPUs."""
    network_stats: Method[Callable[..., AttributeDict]] = _method("pouw_networkStats", _network_stats_munger)
    """``network_stats(blocks=None)``: block time, work rate, job counts, fees over recent blocks."""
    node_info: Method[Callable[[], AttributeDict]] = _method("pouw_nodeInfo", _no_params_munger)
    """``node_info()``: version, chain id, seal engine, ``trainsJobs``, mining, peers."""
    block_imports: Method[Callable[..., list[AttributeDict]]] = _method("pouw_blockImports", _imports_munger)
    """``block_imports(limit=None)``: the node's last imported blocks with verification times and sources."""
    get_job_history: Method[Callable[..., Optional[AttributeDict]]] = _method("pouw_getJobHistory", _job_history_munger)
    """``get_job_history(job_id, points=None, metrics=True)``: checkpoints with accuracy, rate, ETA; None if unknown."""
    audit_status: Method[Callable[[], AttributeDict]] = _method("pouw_auditStatus", _no_params_munger)
    """``audit_status()``: the node's auditor (``run --audit``): range audited, rate, frauds found."""
    upload_proof_state: Method[Callable[..., HexBytes]] = _method("pouw_uploadProofState", _proof_state_munger)
    """``upload_proof_state(block_hash, segment, state)``: the start state a fraud proof of segment
    ``segment`` (>= 2) names; returns its state hash."""


class PouwModule(_PouwMethods):
    """``w3.pouw``: the ``pouw_`` namespace for ``Web3``. Attach with
    ``w3.attach_modules({"pouw": PouwModule})`` (``AsyncPouwModule`` for ``AsyncWeb3``)."""

    def put_dataset(self, data: Any) -> AttributeDict:
        """Upload a dataset file (bytes, 0x-hex text, a path or a binary file object);
        returns the dataset object (``id`` is what a spec names in ``dataset``). Files over
        2 MiB go to ``POST /pouw/datasets`` (HTTP providers), the rest to ``pouw_putDataset``."""
        blob = _dataset_bytes(data)
        url = _upload_url(self)
        if len(blob) <= RPC_DATASET_MAX_BYTES or url is None:
            return self.put_dataset_rpc(blob)
        import requests

        kwargs = dict(self.w3.provider.get_request_kwargs())  # type: ignore[union-attr]
        headers = {k: v for k, v in dict(kwargs.pop("headers", {}) or {}).items() if k.lower() != "content-type"}
        headers["Content-Type"] = "application/octet-stream"
        kwargs["timeout"] = max(float(kwargs.get("timeout") or 30.0), 300.0)
        response = requests.post(url, data=blob, headers=headers, **kwargs)
        return _upload_answer(response.status_code, response.text)

    def build_job_transaction(
        self,
        sender: str,
        spec: Any,
        price_per_step: int,
        escrow: Optional[int] = None,
        *,
        nonce: Optional[int] = None,
        gas: Optional[int] = None,
        max_fee_per_gas: Optional[int] = None,
        max_priority_fee_per_gas: Optional[int] = None,
    ) -> dict[str, Any]:
        """The unsigned EIP-1559 ``postJob`` transaction, every field filled from the node:
        chain id, nonce (``pending``), fees (tip from ``eth_maxPriorityFeePerGas``, max fee
        2 x base fee + tip), gas (``eth_estimateGas``)."""
        tx = _job_tx_skeleton(sender, spec, price_per_step, escrow)
        eth: Any = self.w3.eth
        tx["chainId"] = eth.chain_id
        tx["nonce"] = eth.get_transaction_count(tx["from"], "pending") if nonce is None else nonce
        tip = eth.max_priority_fee if max_priority_fee_per_gas is None else max_priority_fee_per_gas
        if max_fee_per_gas is None:
            max_fee_per_gas = 2 * int(eth.get_block("latest").get("baseFeePerGas", 0)) + int(tip)
        tx["maxPriorityFeePerGas"] = int(tip)
        tx["maxFeePerGas"] = int(max_fee_per_gas)
        tx["gas"] = eth.estimate_gas(tx) if gas is None else gas
        return tx

    def submit_job(
        self,
        account: Any,
        spec: Any,
        price_per_step: int,
        escrow: Optional[int] = None,
        timeout: float = 30.0,
        allow_untrained: bool = False,
        **fields: Any,
    ) -> AttributeDict:
        """Post a job: build the postJob transaction, sign it with ``account`` (an
        ``eth_account`` LocalAccount), send it with ``pouw_submitJob`` and wait up to
        ``timeout`` seconds for it to be mined.

        On a chain without proof of work (``pouw_nodeInfo``'s ``trainsJobs`` false: a
        development genesis) nobody trains jobs: :class:`UntrainedChain` is raised before
        anything is signed, unless ``allow_untrained=True``.

        Returns ``{transactionHash, status, jobId, blockNumber}`` (``status`` "posted",
        "pending" after the timeout, or "failed" with ``error``). ``fields``: ``nonce``,
        ``gas``, ``max_fee_per_gas``, ``max_priority_fee_per_gas`` to override the node's.

        Errors: a spec the registry would revert fails gas estimation with web3's
        ``ContractLogicError`` (the reason names the field; :meth:`estimate_job` checks a
        spec without a key); what ``pouw_submitJob`` refuses (a dataset the node lacks,
        ``nonce too low``, ``insufficient funds ...``) is a ``Web3RPCError`` with the
        node's message. An escrow below ``steps * price`` is accepted: the job is trained
        until it runs out.
        """
        _check_timeout(timeout)
        if not allow_untrained:
            _refuse_untrained(self._trains_jobs())
        raw = _sign(account, self.build_job_transaction(account.address, spec, price_per_step, escrow, **fields))
        deadline = time.monotonic() + timeout
        result = self.submit_raw_job(raw, _node_wait(self, timeout))
        if result["status"] != "pending":
            return result
        return self._wait_for_posting(result["transactionHash"], deadline)

    def _trains_jobs(self) -> Optional[bool]:
        """Whether the node's chain trains jobs (None: the node does not say)."""
        try:
            return bool(self.node_info()["trainsJobs"])
        except Web3RPCError as exc:
            if _method_missing(exc):
                return None
            raise

    def cancel_job(self, account: Any, job_id: JobId, timeout: float = 30.0, **fields: Any) -> AttributeDict:
        """Cancel an open job you posted: the registry's ``cancelJob(jobId)``, signed with
        ``account`` and sent with ``eth_sendRawTransaction``; waits up to ``timeout``
        seconds for the receipt. Returns ``{transactionHash, status, jobId, refund,
        blockNumber}`` (``status``: "cancelled", "pending" or "failed" with ``error``).
        A cancellation the registry would revert (not the poster, not open) fails gas
        estimation with web3's ``ContractLogicError`` carrying the reason."""
        _check_timeout(timeout)
        tx = _cancel_tx_skeleton(account.address, job_id)
        eth: Any = self.w3.eth
        tx["chainId"] = eth.chain_id
        tx["nonce"] = eth.get_transaction_count(tx["from"], "pending") if fields.get("nonce") is None else fields["nonce"]
        tip = eth.max_priority_fee if fields.get("max_priority_fee_per_gas") is None else fields["max_priority_fee_per_gas"]
        base = int(eth.get_block("latest").get("baseFeePerGas", 0))
        tx["maxPriorityFeePerGas"] = int(tip)
        tx["maxFeePerGas"] = int(fields.get("max_fee_per_gas") or 2 * base + int(tip))
        tx["gas"] = eth.estimate_gas(tx) if fields.get("gas") is None else fields["gas"]
        tx_hash = bytes(eth.send_raw_transaction(_sign(account, tx)))
        deadline = time.monotonic() + timeout
        from web3.exceptions import TransactionNotFound

        while True:
            try:
                return _cancellation_from_receipt(tx_hash, job_id, eth.get_transaction_receipt(tx_hash))
            except TransactionNotFound:
                pass
            if time.monotonic() >= deadline:
                return AttributeDict({"transactionHash": HexBytes(tx_hash), "status": "pending",
                                      "jobId": _job_int(job_id), "refund": None, "blockNumber": None})
            time.sleep(0.2)

    def _wait_for_posting(self, tx_hash: bytes, deadline: float, poll: float = 0.2) -> AttributeDict:
        from web3.exceptions import TransactionNotFound

        eth: Any = self.w3.eth
        while True:
            try:
                return _submission_from_receipt(tx_hash, eth.get_transaction_receipt(tx_hash))
            except TransactionNotFound:
                pass
            if time.monotonic() >= deadline:
                return _pending(tx_hash)
            time.sleep(poll)

    def wait_for_job(
        self,
        job_id: JobId,
        status: Union[str, Sequence[str]] = "completed",
        timeout: float = 120.0,
        poll_latency: float = 0.5,
    ) -> AttributeDict:
        """Poll ``pouw_getJob`` until the job's status is ``status`` (or one of them);
        returns the job. Raises ``web3.exceptions.TimeExhausted`` after ``timeout``
        seconds, and ``Web3ValueError`` if the job is unknown or ends in another status."""
        wanted = {status} if isinstance(status, str) else set(status)
        deadline = time.monotonic() + timeout
        while True:
            job = self.get_job(job_id)
            if _job_reached(job, job_id, wanted, deadline, timeout):
                return job  # type: ignore[return-value]
            time.sleep(poll_latency)

    def load_model(self, job_id: JobId) -> Any:
        """The job's current model (its final one once completed) as a ``torch.nn.Module``."""
        result = self.get_job_result(job_id)
        if result is None:
            raise Web3ValueError(f"job {int(_quantity(job_id, 'job id'), 16)} is not known to the node")
        spec = result.get("spec")
        if spec is None:  # a node that does not put the spec in the result
            job = self.get_job(job_id)
            spec = None if job is None else job["spec"]
        return model_from_result(result, spec)


class AsyncPouwModule(_PouwMethods):
    """``w3.pouw`` for ``AsyncWeb3`` (HTTP or WebSocket): the same methods as
    :class:`PouwModule`, each a coroutine. Attach with
    ``w3.attach_modules({"pouw": AsyncPouwModule})``."""

    is_async = True

    async def put_dataset(self, data: Any) -> AttributeDict:
        """As :meth:`PouwModule.put_dataset` (large files with aiohttp)."""
        blob = _dataset_bytes(data)
        url = _upload_url(self)
        if len(blob) <= RPC_DATASET_MAX_BYTES or url is None:
            return await self.put_dataset_rpc(blob)  # type: ignore[misc]
        import aiohttp

        timeout = aiohttp.ClientTimeout(total=300.0)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            async with session.post(url, data=blob, headers={"Content-Type": "application/octet-stream"}) as response:
                return _upload_answer(response.status, await response.text())

    async def build_job_transaction(
        self,
        sender: str,
        spec: Any,
        price_per_step: int,
        escrow: Optional[int] = None,
        *,
        nonce: Optional[int] = None,
        gas: Optional[int] = None,
        max_fee_per_gas: Optional[int] = None,
        max_priority_fee_per_gas: Optional[int] = None,
    ) -> dict[str, Any]:
        """As :meth:`PouwModule.build_job_transaction`."""
        tx = _job_tx_skeleton(sender, spec, price_per_step, escrow)
        eth: Any = self.w3.eth
        tx["chainId"] = await eth.chain_id
        tx["nonce"] = await eth.get_transaction_count(tx["from"], "pending") if nonce is None else nonce
        tip = await eth.max_priority_fee if max_priority_fee_per_gas is None else max_priority_fee_per_gas
        if max_fee_per_gas is None:
            max_fee_per_gas = 2 * int((await eth.get_block("latest")).get("baseFeePerGas", 0)) + int(tip)
        tx["maxPriorityFeePerGas"] = int(tip)
        tx["maxFeePerGas"] = int(max_fee_per_gas)
        tx["gas"] = await eth.estimate_gas(tx) if gas is None else gas
        return tx

    async def submit_job(
        self,
        account: Any,
        spec: Any,
        price_per_step: int,
        escrow: Optional[int] = None,
        timeout: float = 30.0,
        allow_untrained: bool = False,
        **fields: Any,
    ) -> AttributeDict:
        """As :meth:`PouwModule.submit_job`."""
        _check_timeout(timeout)
        if not allow_untrained:
            _refuse_untrained(await self._trains_jobs())
        tx = await self.build_job_transaction(account.address, spec, price_per_step, escrow, **fields)
        raw = _sign(account, tx)
        deadline = time.monotonic() + timeout
        result = await self.submit_raw_job(raw, _node_wait(self, timeout))  # type: ignore[misc]
        if result["status"] != "pending":
            return result
        return await self._wait_for_posting(result["transactionHash"], deadline)

    async def _trains_jobs(self) -> Optional[bool]:
        try:
            return bool((await self.node_info())["trainsJobs"])  # type: ignore[misc]
        except Web3RPCError as exc:
            if _method_missing(exc):
                return None
            raise

    async def cancel_job(self, account: Any, job_id: JobId, timeout: float = 30.0, **fields: Any) -> AttributeDict:
        """As :meth:`PouwModule.cancel_job`."""
        import asyncio

        from web3.exceptions import TransactionNotFound

        _check_timeout(timeout)
        tx = _cancel_tx_skeleton(account.address, job_id)
        eth: Any = self.w3.eth
        tx["chainId"] = await eth.chain_id
        tx["nonce"] = await eth.get_transaction_count(tx["from"], "pending") if fields.get("nonce") is None else fields["nonce"]
        tip = await eth.max_priority_fee if fields.get("max_priority_fee_per_gas") is None else fields["max_priority_fee_per_gas"]
        base = int((await eth.get_block("latest")).get("baseFeePerGas", 0))
        tx["maxPriorityFeePerGas"] = int(tip)
        tx["maxFeePerGas"] = int(fields.get("max_fee_per_gas") or 2 * base + int(tip))
        tx["gas"] = await eth.estimate_gas(tx) if fields.get("gas") is None else fields["gas"]
        tx_hash = bytes(await eth.send_raw_transaction(_sign(account, tx)))
        deadline = time.monotonic() + timeout
        while True:
            try:
                return _cancellation_from_receipt(tx_hash, job_id, await eth.get_transaction_receipt(tx_hash))
            except TransactionNotFound:
                pass
            if time.monotonic() >= deadline:
                return AttributeDict({"transactionHash": HexBytes(tx_hash), "status": "pending",
                                      "jobId": _job_int(job_id), "refund": None, "blockNumber": None})
            await asyncio.sleep(0.2)

    async def _wait_for_posting(self, tx_hash: bytes, deadline: float, poll: float = 0.2) -> AttributeDict:
        import asyncio

        from web3.exceptions import TransactionNotFound

        eth: Any = self.w3.eth
        while True:
            try:
                return _submission_from_receipt(tx_hash, await eth.get_transaction_receipt(tx_hash))
            except TransactionNotFound:
                pass
            if time.monotonic() >= deadline:
                return _pending(tx_hash)
            await asyncio.sleep(poll)

    async def wait_for_job(
        self,
        job_id: JobId,
        status: Union[str, Sequence[str]] = "completed",
        timeout: float = 120.0,
        poll_latency: float = 0.5,
    ) -> AttributeDict:
        """As :meth:`PouwModule.wait_for_job`."""
        import asyncio

        wanted = {status} if isinstance(status, str) else set(status)
        deadline = time.monotonic() + timeout
        while True:
            job = await self.get_job(job_id)  # type: ignore[misc]
            if _job_reached(job, job_id, wanted, deadline, timeout):
                return job
            await asyncio.sleep(poll_latency)

    async def load_model(self, job_id: JobId) -> Any:
        """As :meth:`PouwModule.load_model` (the model is built in this thread)."""
        result = await self.get_job_result(job_id)  # type: ignore[misc]
        if result is None:
            raise Web3ValueError(f"job {int(_quantity(job_id, 'job id'), 16)} is not known to the node")
        spec = result.get("spec")
        if spec is None:
            job = await self.get_job(job_id)  # type: ignore[misc]
            spec = None if job is None else job["spec"]
        return model_from_result(result, spec)


# --- models --------------------------------------------------------------------------------


def _permissive_limits() -> Any:
    from pouw.spec import Limits

    huge = 2**62
    return Limits(max_state_bytes=huge, max_dataset_bytes=huge, max_work_units_per_step=huge, max_steps=huge,
                  max_batch_size=huge, max_layers=huge, max_width=huge, max_classes=huge, max_input_elems=huge)


def model_from_result(result: Mapping[str, Any], spec: Any = None) -> Any:
    """A float32 ``torch.nn.Module`` from a ``pouw_getJobResult`` answer.

    ``result``: as :meth:`PouwModule.get_job_result` returns it (or the raw JSON, with
    hex text). ``spec``: the job spec, if the result does not carry it. The architecture
    is built by the spec's task family and the downloaded tensors loaded into it with
    ``strict=True``. With ``include_state`` results, the canonical integer state is
    checked against ``checkpoint`` first (``ValueError`` on a mismatch).
    Input: ``x_int8.float() * 2**-spec["input_frac_bits"]`` (default 7); when the job's
    dataset records its ``feature_scale`` (``pouw-node dataset make``), the model file
    carries it and the module returned takes the original float features instead
    (``pouw.evaluate.FloatFeatures``).
    """
    import torch
    from safetensors.torch import load as load_safetensors

    from pouw.families import get_family
    from pouw.spec import JobSpec

    spec_value = spec if spec is not None else result.get("spec")
    if spec_value is None:
        raise ValueError("the result carries no job spec: pass spec=")
    job_spec = JobSpec.from_dict(spec_to_dict(spec_value), _permissive_limits())
    if result.get("format", "safetensors") != "safetensors":
        raise ValueError(f"unsupported model format {result.get('format')!r}")
    model_bytes = bytes(HexBytes(result["model"]))
    tensors = load_safetensors(model_bytes)
    family = get_family(job_spec.family)
    state = result.get("state")
    if state is not None and result.get("checkpoint") is not None:
        from pouw.state import state_hash

        if state_hash(bytes(HexBytes(state))) != bytes(HexBytes(result["checkpoint"])):
            raise ValueError("the result's state does not hash to its checkpoint")
    skeleton_state = {name: torch.zeros(shape, dtype=dtype) for name, dtype, shape in family.layout(job_spec)}
    model = family.to_torch(job_spec, skeleton_state)
    model.load_state_dict(tensors, strict=True)
    feature_scale = model_feature_scale(model_bytes)
    if feature_scale is None:
        return model.eval()
    from pouw.evaluate import FloatFeatures

    return FloatFeatures(model, feature_scale, job_spec.input_frac_bits).eval()


def model_feature_scale(model_bytes: bytes) -> Union[float, list[float], None]:
    """The dataset's quantisation scale that a result's model file records (its ``pouw``
    metadata's ``featureScale``: one number, or one per feature element), or None: then
    the model takes ``x_int8 * inputScale``."""
    header_len = int.from_bytes(model_bytes[:8], "little") if len(model_bytes) >= 8 else 0
    try:
        header = json.loads(model_bytes[8:8 + header_len])
        about = json.loads(header.get("__metadata__", {}).get("pouw", "{}"))
    except (ValueError, AttributeError, TypeError):
        return None
    value = about.get("featureScale") if isinstance(about, dict) else None

    def number(v: Any) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool)

    if isinstance(value, list) and value and all(number(v) for v in value):
        return [float(v) for v in value]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return None


def rpc_error_message(exc: BaseException) -> str:
    """The node's own message of a ``Web3RPCError`` (a revert's reason for a
    ``ContractLogicError``; else ``str(exc)``)."""
    from web3.exceptions import ContractLogicError

    if isinstance(exc, ContractLogicError) and isinstance(exc.message, str):
        return exc.message
    if isinstance(exc, Web3RPCError):
        response = exc.rpc_response or {}
        error = response.get("error") if isinstance(response, Mapping) else None
        if isinstance(error, Mapping) and isinstance(error.get("message"), str):
            return str(error["message"])
        return str(exc.message)
    return str(exc) or type(exc).__name__
