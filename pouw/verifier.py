"""Sampled recomputation: a validator re-runs chosen steps and compares state hashes.

A claim is ``(i, s_{i-1} bytes, claimed h_i)`` taken from a block's work payload. For
each claim the verifier decodes ``s_{i-1}``, recomputes step ``i`` with the batch drawn
from the seal seed, hashes the result and compares it with the claimed ``h_i``.

Bad peer data never raises: an undecodable state or a malformed claim is a
:class:`BadState` verdict, a wrong hash a :class:`Mismatch`. What does raise is the
validator's own trouble (no such device, out of memory): that is a transient failure,
not evidence against the block, and the caller must not mark the block invalid for it.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple, Union

from pouw.datasets import Dataset
from pouw.engine import check_compatible, compute_step
from pouw.errors import StateError

if TYPE_CHECKING:
    from pouw.arith import Backend
    from pouw.spec import JobSpec

__all__ = ["Claim", "Ok", "Mismatch", "BadState", "Verdict", "verify_steps", "all_ok"]


class Claim(NamedTuple):
    """One step to recompute, as a block's payload states it."""

    i: int  # step index, >= 1
    prev_state: bytes  # serialised s_{i-1}
    claimed_h: bytes  # h_i listed in the block


@dataclass(frozen=True)
class Ok:
    """Step ``i`` recomputes to the claimed hash."""

    i: int


@dataclass(frozen=True)
class Mismatch:
    """Step ``i`` recomputes to ``found``, but the block claims ``expected``."""

    i: int
    expected: bytes  # claimed h_i
    found: bytes  # recomputed h_i


@dataclass(frozen=True)
class BadState:
    """The claim for step ``i`` cannot be checked: its state does not decode, or it is malformed."""

    i: int
    reason: str


Verdict = Union[Ok, Mismatch, BadState]


def all_ok(verdicts: Iterable[Verdict]) -> bool:
    """Whether every verdict is :class:`Ok` (an empty list is vacuously ok)."""
    return all(isinstance(v, Ok) for v in verdicts)


def _malformed(claim: object) -> str | None:
    if not isinstance(claim, tuple) or len(claim) != 3:
        return "claim must be (i, prev_state_bytes, claimed_h)"
    i, prev, h = claim
    if not isinstance(i, int) or isinstance(i, bool) or not 1 <= i < 2**64:
        return f"step index must be an integer in 1..2**64-1, got {i!r}"
    if not isinstance(prev, (bytes, bytearray, memoryview)):
        return f"previous state must be bytes, got {type(prev).__name__}"
    if not isinstance(h, (bytes, bytearray)) or len(h) != 32:
        return "claimed state hash must be 32 bytes"
    return None


def verify_steps(
    spec: JobSpec,
    dataset: Dataset,
    seed: bytes,
    claims: Iterable[tuple[int, bytes, bytes]],
    backend: Backend,
) -> list[Verdict]:
    """One verdict per claim, in order: recompute step ``i`` from ``s_{i-1}`` and compare."""
    from pouw.state import deserialize_state, serialize_state, state_hash

    check_compatible(spec, dataset)
    verdicts: list[Verdict] = []
    for claim in claims:
        problem = _malformed(claim)
        if problem is not None:
            i = claim[0] if isinstance(claim, tuple) and claim and isinstance(claim[0], int) else -1
            verdicts.append(BadState(i, problem))
            continue
        i, prev, claimed = claim
        try:
            prev_state = deserialize_state(spec, bytes(prev))
        except StateError as exc:
            verdicts.append(BadState(i, f"previous state does not decode: {exc}"))
            continue
        except (ValueError, TypeError, KeyError, IndexError, OverflowError) as exc:
            # belt and braces: a decoder bug on hostile bytes is still the peer's bad data
            verdicts.append(BadState(i, f"previous state does not decode: {type(exc).__name__}: {exc}"))
            continue
        new_state = compute_step(spec, dataset, prev_state, seed, i, backend)
        found = state_hash(serialize_state(spec, new_state))
        if found == bytes(claimed):
            verdicts.append(Ok(i))
        else:
            verdicts.append(Mismatch(i, expected=bytes(claimed), found=found))
    return verdicts
