"""Full audits: recompute every segment of a block and find the first that lies.

Validators recompute the anchored and k sampled segments of each block; an audit
recomputes all of them. Blocks are independent (each starts from the job's checkpoint
before it, which every validator stores), so audits of different blocks run in parallel.
Within a block the segments run in order, each from the previous one's recomputed end;
the first whose end does not hash to its listed commitment ``c_j`` is the fraud, and its
start state (which hashes to ``c_{j-1}``, or is the block's start checkpoint when j = 1)
is what a fraud proof needs (consensus/fraud.py). No intermediate state is stored: the
auditor derives each from the block's start state, and the listed hashes show where
the recomputation and the block part.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from chain.chain import Chain
from chain.header import PouwBlockHeader
from consensus.errors import ConsensusError
from consensus.payload import WorkPayload
from consensus.registry import JobRecord, read_job
from pouw.arith import Backend
from pouw.commit import accumulator_chain, batch_accumulator_index, seal_seed, trajectory_points
from pouw.datasets import Dataset
from pouw.engine import run_segment
from pouw.spec import JobSpec
from pouw.state import deserialize_state, serialize_state, state_digest


class AuditError(ConsensusError):
    """A block that cannot be audited here (no payload stored, not a proof-of-work block)."""


@dataclass(frozen=True)
class BlockAudit:
    """The outcome of recomputing one block."""

    number: int
    block_hash: bytes
    job_id: int
    segments: int
    steps: int
    work_units: int
    """Work units recomputed (the steps' cost, docs/protocol.md §6)."""
    fraud_segment: Optional[int]
    """The first segment whose recomputed end differs from its commitment; None: honest."""
    start_state: Optional[bytes]
    """Serialised start state of ``fraud_segment`` (what a proof names), if any."""
    seconds: float
    fraud_steps: Optional[tuple[int, int]] = None
    """Steps ``(first, last)`` of ``fraud_segment``."""

    @property
    def honest(self) -> bool:
        return self.fraud_segment is None


@dataclass(frozen=True)
class FirstLie:
    """The first segment of a block whose recomputed end is not its commitment."""

    segment: int
    start_state: bytes
    first_step: int
    last_step: int


def audit_trajectory(
    spec: JobSpec, dataset: Dataset, s0: bytes, header: PouwBlockHeader, payload: WorkPayload,
    budget: Optional[int], backend: Backend,
) -> Optional[FirstLie]:
    """Recompute every segment of the block ``header`` (its job's spec and dataset, start
    state ``s0``, remaining budget ``budget`` at its parent); its first lie, or None."""
    points = trajectory_points(header.step_count, payload.m, budget)
    if len(points) != len(payload.commitments):  # import refuses such a block
        raise AuditError(f"block #{header.block_number} lists {len(payload.commitments)} commitments "
                         f"for {len(points)} points")
    job_id = int.from_bytes(header.job_id, "big")
    seed = seal_seed(header.mining_hash, header.coinbase, job_id, header.start_checkpoint, payload.m)
    accs = accumulator_chain(seed, payload.commitments)
    state = deserialize_state(spec, s0)
    first = 1
    for j, last in enumerate(points, start=1):
        end = run_segment(spec, dataset, state, accs[batch_accumulator_index(j)], first, last, backend)
        if state_digest(end, spec) != payload.commitments[j - 1]:
            return FirstLie(j, serialize_state(spec, state), first, last)
        state, first = end, last + 1
    return None


def job_before(chain: Chain, header: PouwBlockHeader) -> JobRecord:
    """The job ``header`` trained, as its parent state holds it."""
    parent = chain.get_header_by_hash(header.parent_hash)
    config = chain.engine_class.config  # type: ignore[attr-defined]
    job = read_job(chain.state_at(parent), int.from_bytes(header.job_id, "big"), config)
    if job is None or job.spec is None:
        raise AuditError(f"block #{header.block_number} names job {int.from_bytes(header.job_id, 'big')}, "
                         "unknown at its parent")
    return job


__all__ = ["AuditError", "BlockAudit", "FirstLie", "audit_trajectory", "job_before"]
