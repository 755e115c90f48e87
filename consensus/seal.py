"""Sealing a block with a trajectory (miner side) and checking one (validator side).

Both sides are pure functions of their inputs, so the adversarial tests and the
selective-publication simulation run the very checks a validator runs, without a chain.

The rules (docs/protocol.md §14 "Seal" and §15 "Validation"), cheapest first:

* the segment length m is at most ``max_segment_steps(D, w, k)`` and t is a point;
* the payload lists one commitment per point; final_state is the commitment of the
  job's new checkpoint (point n, or the budget point when the job's budget ends inside
  the block);
* the accumulator over the commitments, from the seal seed, ends at work_accumulator;
  point n (n >= 2) wins with weight ``l_n * w``;
* the payload carries exactly the start states of the recomputed segments (anchored:
  1, n-2, n-1, n, budget; challenged: k drawn from ``A_n``), each hashing to its listed
  commitment;
* then, and only then, recomputation: the ticket segment first, then the other anchored
  segments, then the challenges.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from consensus.errors import (
    AccumulatorMismatch,
    AnchoredSegmentMismatch,
    BadCarriedState,
    ChallengedSegmentMismatch,
    MalformedPayload,
    NotAPoint,
    NotAWinningTicket,
    SegmentTooLong,
    TicketSegmentMismatch,
    TooFewPoints,
    WrongChallengedSegments,
    WrongCommitmentCount,
    WrongFinalState,
    WrongStartState,
)
from consensus.payload import WorkPayload
from pouw.commit import (
    MIN_POINTS,
    accumulator_chain,
    anchored_segments,
    batch_accumulator_index,
    is_valid_end,
    is_winning_ticket,
    max_segment_steps,
    required_segments,
    seal_seed,
    trajectory_points,
)
from pouw.datasets import Dataset
from pouw.errors import StateError
from pouw.spec import JobSpec
from pouw.state import deserialize_state, state_hash
from pouw.trainer import Trainer
from pouw.verifier import BadState, Mismatch, Ok, SegmentClaim, verify_segment

if TYPE_CHECKING:
    from consensus.registry import JobRecord
    from pouw.state import State


@dataclass(frozen=True)
class SealClaim:
    """The header's seal fields and what they are checked against."""

    template_hash: bytes
    coinbase: bytes
    job_id: int
    h0: bytes
    """The job's on-chain checkpoint (the header's start_checkpoint must equal it)."""
    step_count: int
    final_state: bytes
    work_accumulator: bytes
    difficulty: int
    budget: int | None
    """The job's remaining step budget r at the parent (None: a standing job)."""

    def seed(self, m: int) -> bytes:
        return seal_seed(self.template_hash, self.coinbase, self.job_id, self.h0, m)

    @classmethod
    def of(cls, header: Any, job: "JobRecord", h0: bytes) -> "SealClaim":
        """The claim a sealed header makes on ``job`` (read at the parent) whose checkpoint is ``h0``."""
        return cls(
            template_hash=header.mining_hash,
            coinbase=header.coinbase,
            job_id=job.job_id,
            h0=h0,
            step_count=header.step_count,
            final_state=header.final_state,
            work_accumulator=header.work_accumulator,
            difficulty=header.difficulty,
            budget=job.budget_left,
        )


def budget_segment(points: list[int], t: int, budget: int | None) -> int | None:
    """The index of the point at the budget r when the job's budget ends before t, else None."""
    if budget is None or budget >= t:
        return None
    return points.index(budget) + 1


@dataclass(frozen=True)
class CheckedTrajectory:
    """What the cheap checks establish: the segments to recompute, in order."""

    claims: tuple[SegmentClaim, ...]
    """Ticket segment first, then the other anchored ones, then the challenges."""
    checkpoint_segment: int
    """The segment whose recomputed end state is the job's new checkpoint."""
    anchors: frozenset[int]


def check_commitments(
    claim: SealClaim, payload: WorkPayload, work_units: int, k: int, s0: "bytes | State"
) -> CheckedTrajectory:
    """Every check short of recomputation, cheapest first; raises a typed InvalidWork/InvalidSeal.

    ``s0`` is the job's checkpoint state (the start of segment 1; bytes or tensors).
    """
    t, m, r, d = claim.step_count, payload.m, claim.budget, claim.difficulty
    m_max = max_segment_steps(d, work_units, k)
    if not 1 <= m <= m_max:
        raise SegmentTooLong("segment length out of range", expected=f"1..{m_max}", got=m)
    if not is_valid_end(t, m, r):
        raise NotAPoint("t is not a point of the trajectory", expected=f"a multiple of m={m} or the budget point {r}", got=t)
    points = trajectory_points(t, m, r)
    n = len(points)
    if n < MIN_POINTS:
        raise TooFewPoints("a block's trajectory needs at least two points (point 1 never wins)",
                        expected=f">= {MIN_POINTS} points", got=n)
    if len(payload.commitments) != n:
        raise WrongCommitmentCount("payload lists a commitment count other than the trajectory's points",
                                   expected=n, got=len(payload.commitments))
    j_r = budget_segment(points, t, r)
    checkpoint_segment = j_r if j_r is not None else n
    if payload.commitments[checkpoint_segment - 1] != claim.final_state:
        raise WrongFinalState("final_state differs from the new checkpoint's listed commitment",
                              expected=payload.commitments[checkpoint_segment - 1], got=claim.final_state)
    accs = accumulator_chain(claim.seed(m), payload.commitments)
    if accs[-1] != claim.work_accumulator:
        raise AccumulatorMismatch(
            "accumulator over the listed commitments (from this template, coinbase, job, h_0 and m) "
            "differs from work_accumulator",
            expected=accs[-1], got=claim.work_accumulator,
        )
    weight = (points[-1] - (points[-2] if n >= 2 else 0)) * work_units
    if not is_winning_ticket(accs[-1], weight, d):
        raise NotAWinningTicket("H(A_n) above 2**256 * l_n * w / D", expected=f"l_n*w={weight}, D={d}", got=accs[-1])
    required = required_segments(accs[-1], n, k, j_r)
    carried = [j for j, _ in payload.carried]
    if carried != [j for j in required if j >= 2]:
        raise WrongChallengedSegments("payload carries start states for other segments than the anchored and "
                                      "challenged ones", expected=[j for j in required if j >= 2], got=carried)
    starts: dict[int, "bytes | State"] = {1: s0}
    for j, data in payload.carried:
        found = state_hash(data)
        if found != payload.commitments[j - 2]:
            raise WrongStartState(f"carried start state of segment {j} does not hash to the listed c_{j - 1}",
                                  expected=payload.commitments[j - 2], got=found)
        starts[j] = data
    anchors = frozenset(anchored_segments(n, j_r))
    order = [n] + sorted(anchors - {n}) + [j for j in required if j not in anchors]
    claims = tuple(
        SegmentClaim(
            tag=j,
            first=(points[j - 2] if j >= 2 else 0) + 1,
            last=points[j - 1],
            batch_seed=accs[batch_accumulator_index(j)],
            start_state=starts[j],
            claimed=payload.commitments[j - 1],
        )
        for j in order
    )
    return CheckedTrajectory(claims, checkpoint_segment, anchors)


def recompute(
    checked: CheckedTrajectory, spec: JobSpec, dataset: Dataset, n: int, backend: object
) -> "State":
    """Recompute every segment of ``checked`` in order; returns the new checkpoint state."""
    checkpoint: "State | None" = None
    for sc in checked.claims:
        verdict = verify_segment(spec, dataset, sc, backend)  # type: ignore[arg-type]
        if isinstance(verdict, BadState):
            raise BadCarriedState(f"segment {sc.tag}: {verdict.reason}")
        if isinstance(verdict, Mismatch):
            kind = (TicketSegmentMismatch if sc.tag == n
                    else AnchoredSegmentMismatch if sc.tag in checked.anchors else ChallengedSegmentMismatch)
            raise kind(f"segment {sc.tag} (steps {sc.first}..{sc.last}) recomputes to another state",
                       segment=sc.tag, expected=verdict.expected, got=verdict.found)
        assert isinstance(verdict, Ok)
        if sc.tag == checked.checkpoint_segment:
            checkpoint = verdict.state
    assert checkpoint is not None
    return checkpoint


def verify_trajectory(
    claim: SealClaim,
    payload: WorkPayload | bytes,
    spec: JobSpec,
    s0: "bytes | State",
    dataset: Dataset | Callable[[], Dataset],
    k: int,
    backend: object,
    work_units: int | None = None,
) -> "State":
    """All validation of a block's work, cheapest first; returns the job's new checkpoint state.

    Raises a typed InvalidWork/InvalidSeal. ``dataset`` may be a callable, so that the
    (possibly unavailable) dataset is only loaded once every cheap check has passed.
    """
    from pouw.families import get_family

    if isinstance(payload, (bytes, bytearray)):
        payload = WorkPayload.decode(payload)
    if claim.step_count < 1:
        raise MalformedPayload("t must be >= 1", got=claim.step_count)
    if isinstance(s0, (bytes, bytearray)):
        try:
            s0_state = deserialize_state(spec, bytes(s0))
        except StateError as exc:  # our own stored checkpoint: not the block's fault
            raise RuntimeError(f"stored checkpoint state does not decode: {exc}") from exc
    else:
        s0_state = s0
    w = work_units if work_units is not None else get_family(spec.family).work_units(spec)
    checked = check_commitments(claim, payload, w, k, s0_state)
    ds = dataset() if callable(dataset) else dataset
    return recompute(checked, spec, ds, len(payload.commitments), backend)


@dataclass(frozen=True)
class Sealed:
    """What a miner puts into the header and the payload for a trainer that stopped on its ticket."""

    payload: WorkPayload
    final_state: bytes
    """Commitment of the job's new checkpoint."""
    checkpoint_point: int


def build_payload(trainer: Trainer, k: int) -> Sealed:
    """The payload for a trainer whose last point is a winning ticket."""
    t, n = trainer.step, len(trainer.points)
    points = [rec.p for rec in trainer.points]
    j_r = budget_segment(points, t, trainer.budget)
    required = required_segments(trainer.accumulator, n, k, j_r)
    starts = trainer.segment_starts(required)
    checkpoint = j_r if j_r is not None else n
    return Sealed(
        payload=WorkPayload(trainer.m, tuple(trainer.commitments()), tuple(sorted(starts.items()))),
        final_state=trainer.points[checkpoint - 1].c,
        checkpoint_point=checkpoint,
    )
