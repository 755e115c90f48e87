"""The job registry: chain state at REGISTRY_ADDRESS, and the precompile that serves it.

Storage layout (all slots are keys in REGISTRY_ADDRESS's storage; ``K(x)`` is
``int(keccak256(x))``, ``id32`` the job id as 32 big-endian bytes)::

    NEXT_ID_SLOT         = K(b"pouw.registry.next-job-id")     next posted job id (0 means 1)
    job base  B(id)      = K(id32 || b"pouw.registry.job")
      B+0 status         0 none, 1 open, 2 completed, 3 cancelled
      B+1 poster         address as uint160 (refunds go there)
      B+2 price          wei per step
      B+3 escrow         wei of escrow left
      B+4 steps done     sum of t over the job's blocks
      B+5 step budget    the spec's ``steps``
      B+6 checkpoint     h of the job's latest state; 0 = the initial state (see jobs.py)
      B+7 spec hash      keccak256 of the canonical spec bytes
      B+8 spec length    bytes
      B+9 ...            spec bytes, 32 per slot, last slot zero-padded

Standing jobs (genesis) have ids STANDING_JOB_BASE + i; only slots B+4 and B+6 are
ever written for them (status, spec and budget come from the genesis file).

ABI (Solidity signatures; selectors are the usual first 4 bytes of keccak256)::

    function postJob(bytes spec, uint256 pricePerStep) payable returns (uint256 jobId)
    function cancelJob(uint256 jobId)
    function jobStatus(uint256 jobId) view returns (uint8 status, address poster,
        uint256 pricePerStep, uint256 escrowLeft, uint256 stepsDone, uint256 stepBudget,
        bytes32 checkpoint, bytes32 specHash)
    function jobSpec(uint256 jobId) view returns (bytes spec)
    function nextJobId() view returns (uint256)
    function proveFraud(bytes32 blockHash, uint256 segment)      (consensus/fraud.py)
    function jobAudit(uint256 jobId) view returns (uint256 epoch, uint256 fraudsProven,
        uint256 lastFraudBlock, bytes32 lastFraudBlockHash, uint256 lastFraudSegment)
    event JobPosted(uint256 indexed jobId, address indexed poster, bytes32 specHash,
        uint256 pricePerStep, uint256 escrow)
    event JobCancelled(uint256 indexed jobId, address indexed poster, uint256 refund)
    event FraudProven(uint256 indexed jobId, bytes32 indexed blockHash, uint256 segment,
        address prover, uint256 bounty)

Rules: ``postJob``'s ``msg.value`` is the escrow; the spec must parse and pass
``validate_spec`` with the genesis limits (else revert with ``Error(string)``). Only the
poster may cancel an open job; the unused escrow goes back to the poster at once.
Calls that are not plain CALL/STATICCALL to the registry itself (DELEGATECALL,
CALLCODE) revert; state-changing calls under STATICCALL revert.

Gas: postJob 60,000 + 5,000 per 32-byte word of canonical spec; cancelJob 30,000;
jobStatus, nextJobId 2,600; jobSpec 2,600 + 200 per word. A call with no matching
selector reverts.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Callable, Final, Protocol

from eth.abc import ComputationAPI
from eth.exceptions import Revert, WriteProtection
from eth_abi import decode as abi_decode
from eth_abi import encode as abi_encode
from eth_typing import Address
from eth_utils import function_signature_to_4byte_selector, keccak

from consensus.params import (
    MAX_SPEC_BYTES,
    REGISTRY_ADDRESS,
    ConsensusConfig,
)
from pouw.errors import PouwError
from consensus.specs import SpecTooLong, read_spec, stored_spec
from pouw.spec import JobSpec

# --- constants -----------------------------------------------------------------------

STATUS_NONE: Final = 0
STATUS_OPEN: Final = 1
STATUS_COMPLETED: Final = 2
STATUS_CANCELLED: Final = 3
STATUS_STANDING: Final = 4
"""Reported by jobStatus for a standing job (never stored)."""

NEXT_ID_SLOT: Final = int.from_bytes(keccak(b"pouw.registry.next-job-id"), "big")

SEL_POST: Final = function_signature_to_4byte_selector("postJob(bytes,uint256)")
SEL_CANCEL: Final = function_signature_to_4byte_selector("cancelJob(uint256)")
SEL_STATUS: Final = function_signature_to_4byte_selector("jobStatus(uint256)")
SEL_SPEC: Final = function_signature_to_4byte_selector("jobSpec(uint256)")
SEL_NEXT: Final = function_signature_to_4byte_selector("nextJobId()")
SEL_PROVE: Final = function_signature_to_4byte_selector("proveFraud(bytes32,uint256)")
SEL_AUDIT: Final = function_signature_to_4byte_selector("jobAudit(uint256)")

TOPIC_POSTED: Final = keccak(b"JobPosted(uint256,address,bytes32,uint256,uint256)")
TOPIC_CANCELLED: Final = keccak(b"JobCancelled(uint256,address,uint256)")

GAS_POST: Final = 60_000
GAS_POST_WORD: Final = 5_000
GAS_CANCEL: Final = 30_000
GAS_VIEW: Final = 2_600
GAS_VIEW_WORD: Final = 200

AUDIT_TYPES: Final = ["uint256", "uint256", "uint256", "bytes32", "uint256"]
STATUS_TYPES: Final = ["uint8", "address", "uint256", "uint256", "uint256", "uint256", "bytes32", "bytes32"]


class StorageReader(Protocol):
    def get_storage(self, address: Address, slot: int) -> int: ...


class StorageWriter(StorageReader, Protocol):
    def set_storage(self, address: Address, slot: int, value: int) -> None: ...


# --- the job record --------------------------------------------------------------------


def job_base_slot(job_id: int) -> int:
    return int.from_bytes(keccak(job_id.to_bytes(32, "big") + b"pouw.registry.job"), "big")


@dataclass(frozen=True)
class JobRecord:
    """One job as the chain state holds it (standing jobs filled in from genesis)."""

    job_id: int
    status: int
    poster: Address
    price: int
    escrow: int
    steps_done: int
    budget: int
    checkpoint: bytes
    """32 bytes; all zero means the job's initial state."""
    spec_hash: bytes
    spec: JobSpec | None

    @property
    def is_standing(self) -> bool:
        return self.status == STATUS_STANDING

    @property
    def is_open(self) -> bool:
        return self.status in (STATUS_OPEN, STATUS_STANDING)

    @property
    def budget_left(self) -> int | None:
        """Steps the job may still be trained and billed for (``stepBudget - stepsDone``),
        or None for a standing job, which has no budget. The budget point of a block's
        trajectory (docs/protocol.md §14, §17)."""
        if self.is_standing:
            return None
        return max(0, self.budget - self.steps_done)

    @property
    def is_funded(self) -> bool:
        """A posted job a miner is paid to train: open, a usable spec, a price, escrow left."""
        return self.status == STATUS_OPEN and self.spec is not None and self.escrow > 0 and self.price > 0


def read_job(state: StorageReader, job_id: int, config: ConsensusConfig) -> JobRecord | None:
    """The job ``job_id`` in ``state``, or None if it was never posted (nor is standing)."""
    base = job_base_slot(job_id)
    get = lambda i: state.get_storage(REGISTRY_ADDRESS, base + i)  # noqa: E731
    standing = config.standing_spec(job_id)
    if standing is not None:
        return JobRecord(
            job_id, STATUS_STANDING, Address(b"\x00" * 20), 0, 0, get(4), standing.steps,
            get(6).to_bytes(32, "big"), standing.spec_hash(), standing,
        )
    status = get(0)
    if status == STATUS_NONE:
        return None
    spec_bytes = read_spec_bytes(state, job_id)
    spec = _spec_from_stored(spec_bytes, config)
    return JobRecord(
        job_id, status, Address(get(1).to_bytes(20, "big")), get(2), get(3), get(4), get(5),
        get(6).to_bytes(32, "big"), get(7).to_bytes(32, "big"), spec,
    )


def _spec_from_stored(spec_bytes: bytes, config: ConsensusConfig) -> JobSpec | None:
    return stored_spec(bytes(spec_bytes), config.limits)


def read_spec_bytes(state: StorageReader, job_id: int) -> bytes:
    base = job_base_slot(job_id)
    length = state.get_storage(REGISTRY_ADDRESS, base + 8)
    words = (length + 31) // 32
    raw = b"".join(state.get_storage(REGISTRY_ADDRESS, base + 9 + w).to_bytes(32, "big") for w in range(words))
    return raw[:length]


def next_job_id(state: StorageReader) -> int:
    return state.get_storage(REGISTRY_ADDRESS, NEXT_ID_SLOT) or 1


def posted_job_ids(state: StorageReader) -> range:
    return range(1, next_job_id(state))


def write_progress(state: StorageWriter, job_id: int, steps_done: int, checkpoint: bytes) -> None:
    base = job_base_slot(job_id)
    state.set_storage(REGISTRY_ADDRESS, base + 4, steps_done)
    state.set_storage(REGISTRY_ADDRESS, base + 6, int.from_bytes(checkpoint, "big"))


def write_escrow(state: StorageWriter, job_id: int, escrow: int) -> None:
    state.set_storage(REGISTRY_ADDRESS, job_base_slot(job_id) + 3, escrow)


def write_status(state: StorageWriter, job_id: int, status: int) -> None:
    state.set_storage(REGISTRY_ADDRESS, job_base_slot(job_id), status)


def keep_registry_alive(state: Any) -> None:
    """Give the registry account nonce 1, so EIP-161 never deletes it as "empty" (an
    account with zero balance, nonce and code is deleted when touched, storage and all)."""
    if state.get_nonce(REGISTRY_ADDRESS) == 0:
        state.set_nonce(REGISTRY_ADDRESS, 1)


# --- the precompile -------------------------------------------------------------------


def revert_with(reason: str) -> Revert:
    """A revert with Solidity's ``Error(string)`` payload."""
    return Revert(function_signature_to_4byte_selector("Error(string)") + abi_encode(["string"], [reason]))


def registry_precompile(config: ConsensusConfig) -> Callable[[ComputationAPI], ComputationAPI]:
    """The precompile at REGISTRY_ADDRESS for a chain of configuration ``config`` (its
    limits and standing jobs), as the seal engine hands it to the VM.

    py-evm calls it for every message to REGISTRY_ADDRESS. A revert carries Solidity's
    ``Error(string)`` as return data (as REVERT does)."""

    def precompile(computation: ComputationAPI) -> ComputationAPI:
        try:
            return _dispatch(computation, config)
        except Revert as exc:
            computation.output = exc.args[0]
            raise

    return precompile


def _dispatch(computation: ComputationAPI, config: ConsensusConfig) -> ComputationAPI:
    msg = computation.msg
    if msg.storage_address != REGISTRY_ADDRESS:
        raise revert_with("registry: only CALL or STATICCALL")
    data = msg.data_as_bytes
    selector, args = data[:4], data[4:]
    if selector == SEL_POST:
        _post_job(computation, args, config)
    elif selector == SEL_CANCEL:
        _cancel_job(computation, args, config)
    elif selector == SEL_STATUS:
        computation.consume_gas(GAS_VIEW, reason="jobStatus")
        require_no_value(computation)
        (job_id,) = decode_args(["uint256"], args)
        computation.output = abi_encode(STATUS_TYPES, status_tuple(computation.state, job_id, config))
    elif selector == SEL_SPEC:
        (job_id,) = decode_args(["uint256"], args)
        spec = _spec_bytes_for(computation.state, job_id, config)
        computation.consume_gas(GAS_VIEW + GAS_VIEW_WORD * ((len(spec) + 31) // 32), reason="jobSpec")
        require_no_value(computation)
        computation.output = abi_encode(["bytes"], [spec])
    elif selector == SEL_NEXT:
        computation.consume_gas(GAS_VIEW, reason="nextJobId")
        require_no_value(computation)
        computation.output = abi_encode(["uint256"], [next_job_id(computation.state)])
    elif selector in (SEL_PROVE, SEL_AUDIT):
        from consensus import fraud  # the fraud-proof rules build on this module

        if selector == SEL_PROVE:
            fraud.prove_fraud(computation, args, config)
        else:
            computation.consume_gas(GAS_VIEW, reason="jobAudit")
            require_no_value(computation)
            (job_id,) = decode_args(["uint256"], args)
            computation.output = abi_encode(AUDIT_TYPES, fraud.audit_tuple(computation.state, job_id))
    else:
        raise revert_with("registry: unknown function")
    return computation


def decode_args(types: list[str], args: bytes) -> tuple[Any, ...]:
    try:
        return tuple(abi_decode(types, args))
    except Exception:  # eth_abi raises several unrelated types on bad input
        raise revert_with("registry: malformed arguments") from None


def require_no_value(computation: ComputationAPI) -> None:
    if computation.msg.value:
        raise revert_with("registry: function is not payable")


def require_writable(computation: ComputationAPI) -> None:
    if computation.msg.is_static:
        raise WriteProtection("registry: state change in a static call")


def _post_job(computation: ComputationAPI, args: bytes, config: ConsensusConfig) -> None:
    require_writable(computation)
    spec_raw, price = decode_args(["bytes", "uint256"], args)
    if len(spec_raw) > MAX_SPEC_BYTES:
        raise revert_with(f"spec: at most {MAX_SPEC_BYTES} bytes")
    try:
        spec = read_spec(spec_raw, config.limits)
    except SpecTooLong:
        raise revert_with(f"spec: canonical form over {MAX_SPEC_BYTES} bytes") from None
    except PouwError as exc:
        raise revert_with(f"spec: {exc}") from None
    except (ValueError, TypeError, RecursionError) as exc:
        raise revert_with(f"spec: not valid JSON ({type(exc).__name__})") from None
    canonical = spec.canonical_bytes()
    words = (len(canonical) + 31) // 32
    computation.consume_gas(GAS_POST + GAS_POST_WORD * words, reason="postJob")

    state = computation.state
    keep_registry_alive(state)
    job_id = next_job_id(state)
    state.set_storage(REGISTRY_ADDRESS, NEXT_ID_SLOT, job_id + 1)
    base = job_base_slot(job_id)
    poster = computation.msg.sender
    escrow = computation.msg.value
    fields = [STATUS_OPEN, int.from_bytes(poster, "big"), price, escrow, 0, spec.steps, 0,
              int.from_bytes(spec.spec_hash(), "big"), len(canonical)]
    padded = canonical + b"\x00" * (32 * words - len(canonical))
    fields += [int.from_bytes(padded[32 * w: 32 * w + 32], "big") for w in range(words)]
    for offset, value in enumerate(fields):
        state.set_storage(REGISTRY_ADDRESS, base + offset, value)
    computation.add_log_entry(
        REGISTRY_ADDRESS,
        (int.from_bytes(TOPIC_POSTED, "big"), job_id, int.from_bytes(poster, "big")),
        abi_encode(["bytes32", "uint256", "uint256"], [spec.spec_hash(), price, escrow]),
    )
    computation.output = abi_encode(["uint256"], [job_id])


def _cancel_job(computation: ComputationAPI, args: bytes, config: ConsensusConfig) -> None:
    require_writable(computation)
    computation.consume_gas(GAS_CANCEL, reason="cancelJob")
    require_no_value(computation)
    (job_id,) = decode_args(["uint256"], args)
    state = computation.state
    base = job_base_slot(job_id)
    if config.standing_spec(job_id) is not None:
        raise revert_with("registry: standing jobs cannot be cancelled")
    status = state.get_storage(REGISTRY_ADDRESS, base)
    if status != STATUS_OPEN:
        raise revert_with("registry: job is not open")
    poster = Address(state.get_storage(REGISTRY_ADDRESS, base + 1).to_bytes(20, "big"))
    if computation.msg.sender != poster:
        raise revert_with("registry: only the poster may cancel")
    refund = state.get_storage(REGISTRY_ADDRESS, base + 3)
    keep_registry_alive(state)
    state.set_storage(REGISTRY_ADDRESS, base, STATUS_CANCELLED)
    state.set_storage(REGISTRY_ADDRESS, base + 3, 0)
    state.delta_balance(REGISTRY_ADDRESS, -refund)
    state.delta_balance(poster, refund)
    computation.add_log_entry(
        REGISTRY_ADDRESS,
        (int.from_bytes(TOPIC_CANCELLED, "big"), job_id, int.from_bytes(poster, "big")),
        abi_encode(["uint256"], [refund]),
    )


def status_tuple(state: StorageReader, job_id: int, config: ConsensusConfig) -> list[Any]:
    """The values jobStatus returns (all zero for an unknown job)."""
    job = read_job(state, job_id, config)
    if job is None:
        return [0, "0x" + "00" * 20, 0, 0, 0, 0, b"\x00" * 32, b"\x00" * 32]
    return [job.status, "0x" + job.poster.hex(), job.price, job.escrow, job.steps_done, job.budget,
            job.checkpoint, job.spec_hash]


def _spec_bytes_for(state: StorageReader, job_id: int, config: ConsensusConfig) -> bytes:
    standing = config.standing_spec(job_id)
    if standing is not None:
        return standing.canonical_bytes()
    return read_spec_bytes(state, job_id)


# --- calldata helpers, for clients and tests ------------------------------------------------


def encode_post_job(spec: JobSpec | bytes | dict[str, Any], price_per_step: int) -> bytes:
    if isinstance(spec, JobSpec):
        raw = spec.canonical_bytes()
    elif isinstance(spec, dict):
        raw = json.dumps(spec).encode()
    else:
        raw = bytes(spec)
    return SEL_POST + abi_encode(["bytes", "uint256"], [raw, price_per_step])


def encode_cancel_job(job_id: int) -> bytes:
    return SEL_CANCEL + abi_encode(["uint256"], [job_id])


def encode_job_status(job_id: int) -> bytes:
    return SEL_STATUS + abi_encode(["uint256"], [job_id])


def decode_job_status(output: bytes) -> tuple[Any, ...]:
    return tuple(abi_decode(STATUS_TYPES, output))


def decode_revert_reason(output: bytes) -> str:
    if output[:4] == function_signature_to_4byte_selector("Error(string)"):
        return str(abi_decode(["string"], output[4:])[0])
    return output.hex()
