"""One-segment fraud proofs: ``proveFraud(bytes32 blockHash, uint256 segment)``.

Sampled recomputation bounds how much work a block may skip; it cannot catch a single
substituted state. Exactness settles that: whoever recomputes a block and finds a
segment whose recomputed end state does not hash to the listed commitment proves it to
every node with that one segment (docs/protocol.md §21).

A proof is a transaction to the job registry naming an ancestor block B within the audit
window (the last ``coinbaseMaturity`` blocks, whose rewards are still immature) and a
segment j of B's trajectory. The registry recomputes segment j from its start state and
compares with B's listed ``c_j``:

* the start state of segment 1 is B's start checkpoint (every validator stores it);
  of segment j >= 2 it is the state hashing to ``c_{j-1}``, which the prover uploads as a
  blob beside the transaction (``pouw_uploadState``); a node without it fetches it by
  hash before executing the block (``SealEngine.missing_transaction_blobs``), as it does
  a job's dataset;
* the batches, the step range and the seed come from B's header and stored payload;
* gas: ``GAS_PROVE_BASE`` + ``GAS_PROVE_PER_ENTRY`` per audit-window entry scanned +
  the segment's work units / ``WORK_UNITS_PER_GAS``, all charged before recomputing, so
  a false proof costs its sender that gas.

A valid proof (the segment recomputes to another state, or the listed start state does
not decode) has these consequences, in this order:

1. B's immature reward and fee are slashed: ``reward // BOUNTY_DIVISOR`` is paid at once
   to the prover (``msg.sender``), the rest of the reward is burned (never minted), the
   fee goes back to B's job.
2. If B is on the job's current trajectory, the job rolls back to the checkpoint and
   step count it had before B; every later block still in the window that trained the
   job after B (on the poisoned trajectory) keeps its block reward, since its miner's
   lottery work was real and checked, but its fee goes back to the job too: the dApp
   gets none of that training. A completed job reopens with those fees as its escrow;
   a cancelled one refunds them to its poster.
3. The job's audit record counts the fraud and names B and j; ``FraudProven`` is logged.

Refused (revert, state unchanged, gas spent): a call from a contract (a proof is a
transaction to the registry: nodes fetch its start state before executing it), a block
that is not an ancestor within the window, one already proven, a segment out of range, a start state not stored, and a
proof whose segment recomputes to the listed state (no fraud).

Storage (beside the registry's): audit record ``A(id) = K(id32 || b"pouw.registry.audit")``:
A+0 epoch (rollbacks so far), A+1 frauds proven, A+2 last fraud block number + 1,
A+3 its hash, A+4 its segment. Cut of epoch e: ``K(id32 || e as 32 bytes ||
b"pouw.registry.cut")`` = the step count the job was rolled back to when epoch e ended.
A reward-ring entry made in epoch e with ``stepsBefore`` s is on the job's current
trajectory iff s < cut(x) for every epoch x from e to the current one (exclusive).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Optional

from eth.abc import AtomicDatabaseAPI, ComputationAPI, StateAPI
from eth.exceptions import Revert
from eth_abi import encode as abi_encode
from eth_typing import Address, Hash32
from eth_utils import keccak

from chain import schema
from chain.errors import WorkBlobMissing
from chain.header import PouwBlockHeader
from consensus.blobs import LevelDBBlobStore
from consensus.errors import MalformedPayload
from consensus.params import REGISTRY_ADDRESS, ConsensusConfig
from consensus.payload import WorkPayload
from consensus.registry import (
    STATUS_CANCELLED,
    STATUS_COMPLETED,
    STATUS_OPEN,
    SEL_PROVE,
    JobRecord,
    StorageReader,
    StorageWriter,
    decode_args,
    job_base_slot,
    read_job,
    require_no_value,
    require_writable,
    revert_with,
    write_escrow,
    write_progress,
    write_status,
)
from consensus.rewards import RingEntry, clear_ring_fee, read_ring_entry, slash_ring_entry
from pouw.arith import Backend
from pouw.commit import accumulator_chain, batch_accumulator_index, seal_seed, trajectory_points
from pouw.datasets import Dataset
from pouw.verifier import BadState, Mismatch, Ok, SegmentClaim, verify_segment

TOPIC_FRAUD: Final = keccak(b"FraudProven(uint256,bytes32,uint256,address,uint256)")

GAS_PROVE_BASE: Final = 100_000
GAS_PROVE_PER_ENTRY: Final = 2_100
WORK_UNITS_PER_GAS: Final = 10_000
"""One gas per 10 ns of the reference CPU's training time (work units are picoseconds)."""
BOUNTY_DIVISOR: Final = 4


# --- the job's audit record --------------------------------------------------------------


def audit_base_slot(job_id: int) -> int:
    return int.from_bytes(keccak(job_id.to_bytes(32, "big") + b"pouw.registry.audit"), "big")


def cut_slot(job_id: int, epoch: int) -> int:
    return int.from_bytes(keccak(job_id.to_bytes(32, "big") + epoch.to_bytes(32, "big") + b"pouw.registry.cut"), "big")


@dataclass(frozen=True)
class AuditRecord:
    """What the chain knows about a job's audits (all zero: no fraud proven)."""

    epoch: int
    frauds: int
    last_block_number: Optional[int]
    last_block_hash: Optional[bytes]
    last_segment: Optional[int]


def read_audit(state: StorageReader, job_id: int) -> AuditRecord:
    base = audit_base_slot(job_id)
    get = lambda i: state.get_storage(REGISTRY_ADDRESS, base + i)  # noqa: E731
    number = get(2)
    if number == 0:
        return AuditRecord(get(0), get(1), None, None, None)
    return AuditRecord(get(0), get(1), number - 1, get(3).to_bytes(32, "big"), get(4))


def audit_tuple(state: StorageReader, job_id: int) -> list[int | bytes]:
    """``jobAudit``'s return values (lastFraudBlock is 0 when none; check fraudsProven)."""
    record = read_audit(state, job_id)
    return [record.epoch, record.frauds, record.last_block_number or 0,
            record.last_block_hash or b"\x00" * 32, record.last_segment or 0]


def job_epoch(state: StorageReader, job_id: int) -> int:
    return state.get_storage(REGISTRY_ADDRESS, audit_base_slot(job_id))


def on_trajectory(state: StorageReader, entry: RingEntry) -> bool:
    """Whether ``entry``'s block still contributes to its job's current trajectory."""
    current = job_epoch(state, entry.job_id)
    return all(entry.steps_before < state.get_storage(REGISTRY_ADDRESS, cut_slot(entry.job_id, e))
               for e in range(entry.epoch, current))


# --- the call ------------------------------------------------------------------------------


def encode_prove_fraud(block_hash: bytes, segment: int) -> bytes:
    return SEL_PROVE + abi_encode(["bytes32", "uint256"], [bytes(block_hash), segment])


@dataclass(frozen=True)
class ProofTarget:
    """A proof's block, read and checked up to the recomputation."""

    header: PouwBlockHeader
    entry: RingEntry
    job: JobRecord
    payload: WorkPayload
    claim: SegmentClaim
    work_units: int


def recompute_gas(work_units: int) -> int:
    """Gas for recomputing ``work_units`` of training: one per ``WORK_UNITS_PER_GAS``."""
    return -(-work_units // WORK_UNITS_PER_GAS)


def proof_gas(maturity: int, segment_work_units: int) -> int:
    """What ``proveFraud`` charges, in all, for a segment of ``segment_work_units``."""
    return GAS_PROVE_BASE + GAS_PROVE_PER_ENTRY * maturity + recompute_gas(segment_work_units)


def _revert(reason: str) -> Revert:
    return revert_with(f"proveFraud: {reason}")


def prove_fraud(computation: ComputationAPI, args: bytes, config: ConsensusConfig) -> None:
    """The registry's ``proveFraud``; see the module docstring."""
    require_writable(computation)
    maturity = config.coinbase_maturity
    computation.consume_gas(GAS_PROVE_BASE + GAS_PROVE_PER_ENTRY * maturity, reason="proveFraud")
    require_no_value(computation)
    if computation.msg.depth != 0:
        # Nodes check a proof's start state is here before executing a transaction that
        # calls the registry; a call from a contract could name any state, unchecked.
        raise _revert("must be called by a transaction, not through a contract")
    block_hash, segment = decode_args(["bytes32", "uint256"], args)
    if maturity == 0:
        raise _revert("this chain has no audit window (coinbaseMaturity is 0)")
    state = computation.state
    target = locate(state, bytes(block_hash), int(segment), config)
    seg_steps = target.claim.last - target.claim.first + 1
    computation.consume_gas(recompute_gas(seg_steps * target.work_units), reason="proveFraud recompute")
    verdict = verify_segment(target.job.spec, _dataset(state, target.job, config), target.claim,  # type: ignore[arg-type]
                             _cpu_backend())
    if isinstance(verdict, Ok):
        raise _revert(f"no fraud: segment {segment} of block #{target.header.block_number} "
                      "recomputes to its listed state")
    assert isinstance(verdict, (Mismatch, BadState))
    bounty = apply_fraud(state, target.entry, computation.msg.sender, bytes(block_hash), int(segment))
    computation.add_log_entry(
        REGISTRY_ADDRESS,
        (int.from_bytes(TOPIC_FRAUD, "big"), target.job.job_id, int.from_bytes(block_hash, "big")),
        abi_encode(["uint256", "address", "uint256"], [int(segment), computation.msg.sender, bounty]),
    )


def _raw_db(state: StateAPI) -> AtomicDatabaseAPI:
    return state._db  # type: ignore[attr-defined]  # py-evm's BaseState keeps the database it reads through


def locate(state: StateAPI, block_hash: bytes, segment: int, config: ConsensusConfig) -> ProofTarget:
    """Everything a proof names, checked in a fixed order with the same outcome on every
    node: the ancestor check comes first, from the execution context alone."""
    from pouw.families import get_family

    maturity = config.coinbase_maturity
    db = _raw_db(state)
    header = _header(db, block_hash)
    not_here = "block 0x%s is not an ancestor of this block within the audit window (%d blocks)" % (
        block_hash.hex(), maturity)
    if header is None:
        raise _revert(not_here)
    number = header.block_number
    if not state.block_number - maturity <= number < state.block_number or \
            state.get_ancestor_hash(number) != block_hash:
        raise _revert(not_here)
    entry = read_ring_entry(state, number, maturity)
    if entry is None:
        raise _revert(not_here)
    if entry.slashed:
        raise _revert(f"fraud in block #{number} was already proven")
    job = read_job(state, entry.job_id, config)
    if job is None or job.spec is None:
        raise _revert(f"block #{number} trained no job")
    try:
        payload = WorkPayload.decode(db[schema.work_payload(block_hash)])
    except KeyError:
        raise RuntimeError(f"work payload of block #{number} is not stored on this node") from None
    except MalformedPayload as exc:
        raise RuntimeError(f"stored work payload of block #{number} does not decode: {exc}") from None
    budget = None if job.is_standing else job.budget - entry.steps_before
    points = trajectory_points(header.step_count, payload.m, budget)
    if not 1 <= segment <= len(points):
        raise _revert(f"segment {segment} out of range 1..{len(points)}")
    seed = seal_seed(header.mining_hash, header.coinbase, job.job_id, header.start_checkpoint, payload.m)
    accs = accumulator_chain(seed, payload.commitments)
    if accs[-1] != header.work_accumulator:
        raise RuntimeError(f"stored work payload of block #{number} differs from its header")
    start = _start_state(db, job, header, payload, segment)
    claim = SegmentClaim(
        tag=segment,
        first=(points[segment - 2] if segment >= 2 else 0) + 1,
        last=points[segment - 1],
        batch_seed=accs[batch_accumulator_index(segment)],
        start_state=start,
        claimed=payload.commitments[segment - 1],
    )
    return ProofTarget(header, entry, job, payload, claim, get_family(job.spec.family).work_units(job.spec))


def proof_blobs(db: AtomicDatabaseAPI, data: bytes) -> tuple[bytes, ...]:
    """The stored blob a ``proveFraud`` call with calldata ``data`` reads: the start
    state of the named segment, unless it is derived (a job's initial state). Empty for
    any other call, or one that will revert before reading a blob (unknown block,
    segment out of range, malformed arguments): a cheap lookup, no recomputation."""
    from eth_abi import decode as abi_decode

    if data[:4] != SEL_PROVE:
        return ()
    try:
        block_hash, segment = abi_decode(["bytes32", "uint256"], data[4:])
    except Exception:  # noqa: BLE001 - eth_abi raises several types; the call reverts anyway
        return ()
    header = _header(db, bytes(block_hash))
    raw = db.get(schema.work_payload(bytes(block_hash))) if header is not None else None
    if header is None or raw is None:
        return ()
    try:
        payload = WorkPayload.decode(raw)
    except MalformedPayload:
        return ()
    if not 2 <= segment <= len(payload.commitments):
        return ()  # segment 1 starts at B's start checkpoint: derived or stored by every validator
    return (payload.commitments[segment - 2],)


def _header(db: AtomicDatabaseAPI, block_hash: bytes) -> Optional[PouwBlockHeader]:
    from chain.chain import PouwChainDB
    from eth.exceptions import HeaderNotFound

    try:
        header = PouwChainDB(db).get_block_header_by_hash(Hash32(block_hash))
    except HeaderNotFound:
        return None
    return header if isinstance(header, PouwBlockHeader) else None


def start_state_hash(job: JobRecord, header: PouwBlockHeader, payload: WorkPayload, segment: int) -> bytes:
    """The hash of segment ``segment``'s start state: B's start checkpoint or ``c_{j-1}``."""
    return bytes(header.start_checkpoint) if segment == 1 else payload.commitments[segment - 2]


def _start_state(db: AtomicDatabaseAPI, job: JobRecord, header: PouwBlockHeader, payload: WorkPayload, segment: int) -> bytes:
    from consensus.jobs import initial_checkpoint, initial_state_bytes

    assert job.spec is not None
    want = start_state_hash(job, header, payload, segment)
    if segment == 1 and want == initial_checkpoint(job.job_id, job.spec):
        return initial_state_bytes(job.job_id, job.spec)
    try:
        return bytes(db[schema.blob(want)])
    except KeyError:
        raise WorkBlobMissing(f"start state 0x{want.hex()} of segment {segment} is not on this node",
                              blob_hash=want) from None


def _dataset(state: StateAPI, job: JobRecord, config: ConsensusConfig) -> Dataset:
    from consensus.jobs import load_dataset

    assert job.spec is not None
    return load_dataset(job.spec, LevelDBBlobStore(_raw_db(state)), config.limits.max_dataset_bytes)


def _cpu_backend() -> Backend:
    from pouw.arith import select_backend

    return select_backend("cpu")


# --- consequences ---------------------------------------------------------------------------


def apply_fraud(state: StateAPI, entry: RingEntry, prover: Address, block_hash: bytes, segment: int) -> int:
    """Slash ``entry``'s block, roll its job back if needed, record it; returns the bounty."""
    bounty = entry.reward // BOUNTY_DIVISOR
    slash_ring_entry(state, entry)
    if bounty:
        state.delta_balance(prover, bounty)
    refund = entry.fee
    job_id = entry.job_id
    if on_trajectory(state, entry):
        refund += _roll_back(state, entry)
    _return_fees(state, job_id, refund)
    base = audit_base_slot(job_id)
    get = lambda i: state.get_storage(REGISTRY_ADDRESS, base + i)  # noqa: E731
    state.set_storage(REGISTRY_ADDRESS, base + 1, get(1) + 1)
    state.set_storage(REGISTRY_ADDRESS, base + 2, entry.number + 1)
    state.set_storage(REGISTRY_ADDRESS, base + 3, int.from_bytes(block_hash, "big"))
    state.set_storage(REGISTRY_ADDRESS, base + 4, segment)
    return bounty


def _roll_back(state: StateAPI, entry: RingEntry) -> int:
    """Job back to before ``entry``'s block; the fees of later blocks on the discarded
    trajectory come back. Returns those fees."""
    from consensus.rewards import ring_entries

    job_id = entry.job_id
    clawed = 0
    for later in ring_entries(state, entry.maturity, state.block_number):
        if later.job_id == job_id and later.number != entry.number and later.fee > 0 and \
                later.steps_before >= entry.steps_before and on_trajectory(state, later):
            clawed += later.fee
            clear_ring_fee(state, later)
    epoch = job_epoch(state, job_id)
    state.set_storage(REGISTRY_ADDRESS, cut_slot(job_id, epoch), entry.steps_before)
    state.set_storage(REGISTRY_ADDRESS, audit_base_slot(job_id), epoch + 1)
    write_progress(state, job_id, entry.steps_before, entry.checkpoint_before)
    if state.get_storage(REGISTRY_ADDRESS, job_base_slot(job_id)) == STATUS_COMPLETED:
        write_status(state, job_id, STATUS_OPEN)  # its budget is not trained any more
    return clawed


def _return_fees(state: StorageWriter, job_id: int, amount: int) -> None:
    """Fees back to the job: its escrow, or its poster if the job was cancelled (or
    completed without a rollback: its result stands, its budget is spent)."""
    if amount == 0:
        return
    base = job_base_slot(job_id)
    status = state.get_storage(REGISTRY_ADDRESS, base)
    if status in (STATUS_CANCELLED, STATUS_COMPLETED):
        poster = Address(state.get_storage(REGISTRY_ADDRESS, base + 1).to_bytes(20, "big"))
        state.delta_balance(REGISTRY_ADDRESS, -amount)  # type: ignore[attr-defined]
        state.delta_balance(poster, amount)  # type: ignore[attr-defined]
        return
    write_escrow(state, job_id, state.get_storage(REGISTRY_ADDRESS, base + 3) + amount)


__all__ = [
    "AuditRecord", "BOUNTY_DIVISOR", "GAS_PROVE_BASE", "GAS_PROVE_PER_ENTRY", "SEL_PROVE", "TOPIC_FRAUD",
    "WORK_UNITS_PER_GAS", "apply_fraud", "encode_prove_fraud", "locate", "on_trajectory", "proof_gas", "prove_fraud",
    "recompute_gas",
    "read_audit", "start_state_hash",
]
