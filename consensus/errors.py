"""Errors of the consensus package: one class per rule, carrying expected and found values.

Invalid blocks raise subclasses of :class:`chain.errors.InvalidSeal` (rules checked
from the header and the parent state, before execution) or
:class:`chain.errors.InvalidWork` (rules checked with the work payload). A validator's
own trouble (dataset not available locally, device failure) raises
:class:`chain.errors.WorkVerificationUnavailable`: transient, not a verdict.
"""
from __future__ import annotations

from chain.errors import ChainError, InvalidSeal, InvalidWork, WorkBlobMissing, WorkVerificationUnavailable


class ConsensusError(ChainError):
    """Root of errors raised by the consensus package outside block validation."""


# --- header and parent state (before execution) ---------------------------------------


class InvalidStepCount(InvalidSeal):
    """step_count t is 0 or above MAX_STEPS_PER_BLOCK."""


class InvalidSealField(InvalidSeal):
    """A seal field is malformed (zero job id, zero hash)."""


class UnknownJob(InvalidSeal):
    """The header names a job that does not exist in the parent state."""


class JobNotOpen(InvalidSeal):
    """The header names a job that is completed or cancelled in the parent state."""


class WrongStartCheckpoint(InvalidSeal):
    """start_checkpoint h_0 differs from the job's on-chain checkpoint."""


class NotAWinningTicket(InvalidSeal):
    """H(a_t) is above 2**256 * w_job / D: step t is not a winning ticket."""


# --- the work payload (before execution, cheapest first) -----------------------------


class MalformedPayload(InvalidWork):
    """The work payload does not decode, or its parts have the wrong sizes or count."""


class SegmentTooLong(InvalidWork):
    """The segment length m is 0 or above max_segment_steps(D, w, k): recomputing the
    block's segments would cost validators more than 2% of the block's expected work."""


class NotAPoint(InvalidWork):
    """t is not a point of the trajectory (neither a multiple of m nor the budget point)."""


class TooFewPoints(InvalidWork):
    """The trajectory has a single point: point 1 is never a winning ticket."""


class WrongCommitmentCount(InvalidWork):
    """The payload lists a number of point commitments other than the trajectory's n."""


class WrongFinalState(InvalidWork):
    """final_state differs from the commitment of the job's new checkpoint (point n, or
    the budget point when the job's budget ends inside the block)."""


class AccumulatorMismatch(InvalidWork):
    """The accumulator chain over the listed commitments does not end at work_accumulator.

    This is what a trajectory built for another parent, template, coinbase, job, start
    checkpoint or segment length hits: the seal seed, and so A_0 and every A_j, differ."""


class WrongChallengedSegments(InvalidWork):
    """The payload carries start states for another set of segments than the anchored
    and challenged ones (segment 1 excluded)."""


class WrongStartState(InvalidWork):
    """A carried start state s_{p_{j-1}} does not hash to the listed c_{j-1}."""


class BadCarriedState(InvalidWork):
    """A carried state does not decode for the job's spec."""


class SegmentMismatch(InvalidWork):
    """Recomputing segment j from its start state does not give the listed c_j."""

    def __init__(self, message: str, *, segment: int, expected: object = None, got: object = None) -> None:
        self.segment = segment
        super().__init__(message, expected=expected, got=got)


class TicketSegmentMismatch(SegmentMismatch):
    """The ticket segment n recomputes to another state: the winning draw was not trained."""


class AnchoredSegmentMismatch(SegmentMismatch):
    """Segment 1 (from the stored checkpoint), segment n-1 or the budget segment
    recomputes to another state."""


class ChallengedSegmentMismatch(SegmentMismatch):
    """A challenged segment recomputes to another state."""


class DatasetUnavailable(WorkBlobMissing):
    """The job's dataset is not in this node's blob store: cannot verify (yet)."""


class CheckpointUnavailable(WorkBlobMissing):
    """The state of the job's checkpoint is not in this node's blob store."""


__all__ = [name for name in dir() if not name.startswith("_") and name[0].isupper()]
