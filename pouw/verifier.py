"""Recomputation of claimed segments: a validator re-runs them and compares state hashes.

A claim (:class:`SegmentClaim`) says: from the state ``start_state`` at step
``first - 1``, the steps ``first .. last`` with batches drawn from ``batch_seed`` reach a
state whose hash is ``claimed``. The verifier decodes the start state (bytes from a peer,
or a state the node already holds), recomputes the segment, hashes the result and
compares.

Bad peer data never raises: an undecodable state or a malformed claim is a
:class:`BadState` verdict, a wrong hash a :class:`Mismatch`. What does raise is the
validator's own trouble (no such device, out of memory): that is a transient failure,
not evidence against the block, and the caller must not mark the block invalid for it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Union

from pouw.datasets import Dataset
from pouw.engine import check_compatible, run_segment
from pouw.errors import StateError

if TYPE_CHECKING:
    from pouw.arith import Backend
    from pouw.spec import JobSpec
    from pouw.state import State

__all__ = ["SegmentClaim", "Ok", "Mismatch", "BadState", "Verdict", "verify_segment", "all_ok"]


@dataclass(frozen=True)
class SegmentClaim:
    """One segment to recompute, as a block's payload states it."""

    tag: int  # what the caller calls this segment (its index j), echoed in the verdict
    first: int  # first step index, >= 1
    last: int  # last step index, >= first
    batch_seed: bytes  # 32 bytes: the accumulator value the segment's batches come from
    start_state: "bytes | State"  # serialised s_{first-1} (from a peer) or the state itself
    claimed: bytes  # claimed state hash of s_last


@dataclass(frozen=True)
class Ok:
    """The segment recomputes to the claimed hash; ``state`` is the recomputed end state."""

    tag: int
    state: "State"


@dataclass(frozen=True)
class Mismatch:
    """The segment recomputes to ``found``, but the block claims ``expected``."""

    tag: int
    expected: bytes  # claimed hash
    found: bytes  # recomputed hash


@dataclass(frozen=True)
class BadState:
    """The claim cannot be checked: its start state does not decode, or it is malformed."""

    tag: int
    reason: str


Verdict = Union[Ok, Mismatch, BadState]


def all_ok(verdicts: list[Verdict]) -> bool:
    """Whether every verdict is :class:`Ok` (an empty list is vacuously ok)."""
    return all(isinstance(v, Ok) for v in verdicts)


def _malformed(claim: SegmentClaim) -> str | None:
    if not isinstance(claim.first, int) or isinstance(claim.first, bool) or not 1 <= claim.first < 2**64:
        return f"first step must be an integer in 1..2**64-1, got {claim.first!r}"
    if not isinstance(claim.last, int) or isinstance(claim.last, bool) or not claim.first <= claim.last < 2**64:
        return f"last step must be an integer in first..2**64-1, got {claim.last!r}"
    if not isinstance(claim.batch_seed, (bytes, bytearray)) or len(claim.batch_seed) != 32:
        return "batch seed must be 32 bytes"
    if not isinstance(claim.claimed, (bytes, bytearray)) or len(claim.claimed) != 32:
        return "claimed state hash must be 32 bytes"
    if not isinstance(claim.start_state, (bytes, bytearray, memoryview, dict)):
        return f"start state must be bytes or a state, got {type(claim.start_state).__name__}"
    return None


def verify_segment(spec: JobSpec, dataset: Dataset, claim: SegmentClaim, backend: Backend) -> Verdict:
    """Recompute one claimed segment and compare its end state's hash with the claim."""
    from pouw.state import deserialize_state, state_digest

    check_compatible(spec, dataset)
    problem = _malformed(claim)
    if problem is not None:
        return BadState(claim.tag, problem)
    start = claim.start_state
    if not isinstance(start, dict):
        try:
            start = deserialize_state(spec, bytes(start))
        except StateError as exc:
            return BadState(claim.tag, f"start state does not decode: {exc}")
    end = run_segment(spec, dataset, start, bytes(claim.batch_seed), claim.first, claim.last, backend)
    found = state_digest(end, spec)
    if found == bytes(claim.claimed):
        return Ok(claim.tag, end)
    return Mismatch(claim.tag, expected=bytes(claim.claimed), found=found)
