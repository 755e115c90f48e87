"""Sealing a block with a trajectory (miner side) and checking one (validator side).

Both sides are pure functions of their inputs, so the statistical cheating tests can run
the very checks a validator runs, without a chain.

The rules (docs/protocol.md, "Seal" and "Validation"):

* ``seal_seed = H(template_hash || coinbase || job_id || h_0)``;
* ``a_0 = H(seal_seed || h_0)``, ``a_i = H(a_{i-1} || h_i)``;
* step t is a ticket iff ``H(a_t) * D <= w_job * 2**256``;
* challenges ``challenge_indices(a_t, t, k)`` (k distinct steps in 1..t-1, from a_t
  only, never from the block hash), plus the ticket step t, are recomputed.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from eth_utils import keccak

from consensus.errors import (
    AccumulatorMismatch,
    BadCarriedState,
    ChallengedStepMismatch,
    MalformedPayload,
    NotAWinningTicket,
    TicketStepMismatch,
    WrongChallengedSteps,
    WrongFinalState,
    WrongPreviousState,
    WrongStepHashCount,
)
from consensus.payload import WorkPayload
from pouw.commit import accumulator_chain, challenge_indices, is_winning_ticket, seal_seed
from pouw.datasets import Dataset
from pouw.errors import StateError
from pouw.spec import JobSpec
from pouw.state import deserialize_state
from pouw.trainer import Trainer
from pouw.verifier import BadState, Mismatch, verify_steps


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

    @property
    def seed(self) -> bytes:
        return seal_seed(self.template_hash, self.coinbase, self.job_id, self.h0)

    @classmethod
    def of(cls, header: Any, job_id: int, h0: bytes) -> "SealClaim":
        """The claim a sealed header makes on job ``job_id`` whose checkpoint is ``h0``."""
        return cls(
            template_hash=header.mining_hash,
            coinbase=header.coinbase,
            job_id=job_id,
            h0=h0,
            step_count=header.step_count,
            final_state=header.final_state,
            work_accumulator=header.work_accumulator,
            difficulty=header.difficulty,
        )


def required_steps(a_t: bytes, t: int, k: int) -> list[int]:
    """Steps a validator recomputes: the challenges and the ticket step t, ascending."""
    return sorted(set(challenge_indices(a_t, t, k)) | {t})


def build_payload(trainer: Trainer, k: int) -> WorkPayload:
    """The payload for a trainer that stopped on its ticket at step t = trainer.step."""
    t = trainer.step
    states = trainer.payload_states(required_steps(trainer.accumulator, t, k))
    return WorkPayload(
        step_hashes=tuple(trainer.step_hashes()),
        carried=tuple(sorted(states.items())),
        final_state=trainer.state_bytes(t),
    )


def check_commitments(claim: SealClaim, payload: WorkPayload, work_units: int, k: int) -> list[int]:
    """Every check short of recomputation, cheapest first. Returns the steps to recompute."""
    t = claim.step_count
    if len(payload.step_hashes) != t:
        raise WrongStepHashCount("payload lists a step-hash count other than t", expected=t, got=len(payload.step_hashes))
    if payload.step_hashes[-1] != claim.final_state:
        raise WrongFinalState("last listed step hash differs from final_state", expected=claim.final_state, got=payload.step_hashes[-1])
    a_t = accumulator_chain(claim.seed, claim.h0, payload.step_hashes)[-1]
    if a_t != claim.work_accumulator:
        raise AccumulatorMismatch(
            "accumulator over the listed step hashes (from this template, coinbase, job and h_0) "
            "differs from work_accumulator",
            expected=a_t, got=claim.work_accumulator,
        )
    if not is_winning_ticket(a_t, work_units, claim.difficulty):
        raise NotAWinningTicket("H(a_t) above 2**256 * w / D", expected=f"w={work_units}, D={claim.difficulty}", got=a_t)
    steps = required_steps(a_t, t, k)
    carried = [i for i, _ in payload.carried]
    if carried != steps:
        raise WrongChallengedSteps("payload carries states for other steps than {t} + challenges", expected=steps, got=carried)
    if keccak(payload.final_state) != claim.final_state:
        raise WrongFinalState("carried s_t does not hash to final_state", expected=claim.final_state, got=keccak(payload.final_state))
    for i, prev in payload.carried:
        want = claim.h0 if i == 1 else payload.step_hashes[i - 2]
        if keccak(prev) != want:
            raise WrongPreviousState(f"carried s_{i - 1} does not hash to the listed h_{i - 1}", expected=want, got=keccak(prev))
    return steps


def verify_trajectory(
    claim: SealClaim,
    payload: WorkPayload | bytes,
    spec: JobSpec,
    dataset: Dataset | Callable[[], Dataset],
    k: int,
    backend: object,
    work_units: int | None = None,
) -> None:
    """All validation of a block's work, cheapest first; raises a typed InvalidWork/InvalidSeal.

    ``dataset`` may be a callable, so that the (possibly unavailable) dataset is only
    loaded once every cheap check has passed.
    """
    from pouw.families import get_family

    if isinstance(payload, (bytes, bytearray)):
        payload = WorkPayload.decode(payload)
    if claim.step_count < 1:
        raise MalformedPayload("t must be >= 1", got=claim.step_count)
    w = work_units if work_units is not None else get_family(spec.family).work_units(spec)
    steps = check_commitments(claim, payload, w, k)
    try:
        deserialize_state(spec, payload.final_state)
    except StateError as exc:
        raise BadCarriedState(f"carried s_t does not decode: {exc}") from None
    ds = dataset() if callable(dataset) else dataset
    t = claim.step_count
    prev = dict(payload.carried)
    # the ticket step first: it is recomputed always, and a faked ticket fails here
    order = [t] + [i for i in steps if i != t]
    for i in order:
        want = payload.step_hashes[i - 1]
        (verdict,) = verify_steps(spec, ds, claim.seed, [(i, prev[i], want)], backend)  # type: ignore[arg-type]
        if isinstance(verdict, BadState):
            raise BadCarriedState(f"step {i}: {verdict.reason}")
        if isinstance(verdict, Mismatch):
            if i == t:
                raise TicketStepMismatch("ticket step recomputes to another state", expected=want, got=verdict.found)
            raise ChallengedStepMismatch(f"challenged step {i} recomputes to another state", step=i, expected=want, got=verdict.found)
