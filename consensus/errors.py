"""Errors of the consensus package: one class per rule, carrying expected and found values.

Invalid blocks raise subclasses of :class:`chain.errors.InvalidSeal` (rules checked
from the header and the parent state, before execution) or
:class:`chain.errors.InvalidWork` (rules checked with the work payload). A validator's
own trouble (dataset not available locally, device failure) raises
:class:`chain.errors.WorkVerificationUnavailable`: transient, not a verdict.
"""
from __future__ import annotations

from chain.errors import ChainError, InvalidSeal, InvalidWork, WorkVerificationUnavailable


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


# --- the work payload (after execution, cheapest first) -------------------------------


class MalformedPayload(InvalidWork):
    """The work payload does not decode, or its parts have the wrong sizes or count."""


class WrongStepHashCount(InvalidWork):
    """The payload lists a number of step hashes other than t."""


class WrongFinalState(InvalidWork):
    """h_t listed in the payload, or the hash of the carried s_t, differs from final_state."""


class AccumulatorMismatch(InvalidWork):
    """The accumulator chain over the listed step hashes does not end at work_accumulator.

    This is what a trajectory built for another parent, template, coinbase, job or start
    checkpoint hits: the seal seed, and so a_0 and every a_i, differ."""


class WrongChallengedSteps(InvalidWork):
    """The payload carries states for a set of steps other than {t} and the challenges."""


class WrongPreviousState(InvalidWork):
    """A carried s_{i-1} does not hash to the listed h_{i-1} (or to h_0 for i = 1)."""


class BadCarriedState(InvalidWork):
    """A carried state does not decode for the job's spec."""


class TicketStepMismatch(InvalidWork):
    """Recomputing the ticket step t from s_{t-1} does not give h_t."""


class ChallengedStepMismatch(InvalidWork):
    """Recomputing a challenged step i from s_{i-1} does not give the listed h_i."""

    def __init__(self, message: str, *, step: int, expected: object = None, got: object = None) -> None:
        self.step = step
        super().__init__(message, expected=expected, got=got)


class DatasetUnavailable(WorkVerificationUnavailable):
    """The job's dataset is not in this node's blob store: cannot verify (yet)."""


class CheckpointUnavailable(WorkVerificationUnavailable):
    """The state of the job's checkpoint is not in this node's blob store."""


__all__ = [name for name in dir() if not name.startswith("_") and name[0].isupper()]
