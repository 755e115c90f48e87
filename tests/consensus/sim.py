"""A forger: trajectories built with real training where it chooses to train, and cheap
fakes where it chooses to cheat, sealed with the real commitments and checked by the
validator's own code.

A segment is *faked* when its listed end state is not the recomputation of its start
state: the forger lists a state it did not compute (here the start state with one
weight changed: as cheap as any fake, and it keeps later segments well defined). A faked
segment is caught exactly when a validator recomputes it. The forger may publish
selectively: it computes the segments validators will recompute before publishing and
keeps training (later points are new draws) while they would catch a fake.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional

from consensus.payload import WorkPayload
from consensus.seal import SealClaim, budget_segment
from pouw.commit import is_ticket_point, is_winning_ticket, next_accumulator, next_point, required_segments
from pouw.engine import run_segment
from pouw.spec import JobSpec
from pouw.state import deserialize_state, serialize_state, state_hash


@dataclass
class Trajectory:
    claim: SealClaim
    payload: WorkPayload
    faked: set[int]
    real_steps: int
    """Training steps the forger computed, published or not."""
    required: list[int] = field(default_factory=list)


def fake_state(state: dict, salt: int) -> dict:
    """``state`` with one weight changed: a distinct state for every salt below 2**20 * numel."""
    out = {name: t.clone() for name, t in state.items()}
    first = next(iter(out))
    numel = out[first].numel()
    out[first].view(-1)[salt % numel] += 1 + (salt // numel) % (1 << 20)
    return out


def simulate(
    spec: JobSpec, dataset, backend, s0_bytes: bytes, *, k: int, difficulty: int, work_units: int,
    m: int = 1, budget: Optional[int] = None, f: float = 0.0, rng=None,
    fake: Optional[Callable[[int], bool]] = None, fake_ticket: bool = False, selective: bool = False,
    start_state: Optional[dict] = None,
    template_hash: bytes = b"\x11" * 32, coinbase: bytes = b"\xc0" * 20, job_id: int = 1,
    min_points: int = 2, max_points: int = 10_000,
) -> Trajectory:
    """A trajectory whose segments are faked where ``fake(j)`` says (or with probability
    ``f``), sealed at the first winning point (point >= ``min_points``) that the forger
    is willing to publish.

    * ``fake_ticket``: the forger never trains the ticket segment; at each point it draws
      fake end states until one wins (cheap keccaks, no training).
    * ``selective``: publish only if no segment the validator will recompute is faked.
    * ``start_state``: train from this state instead of the stored checkpoint while
      naming the right h_0.
    """
    import random

    rng = rng or random.Random(0)
    is_fake = fake if fake is not None else (lambda j: f > 0 and rng.random() < f)
    h0 = state_hash(s0_bytes)
    claim0 = SealClaim(template_hash, coinbase, job_id, h0, 0, b"", b"", difficulty, budget)
    seed = claim0.seed(m)
    state = deserialize_state(spec, s0_bytes) if start_state is None else start_state
    states = [serialize_state(spec, state)]
    accs = [seed]
    commitments: list[bytes] = []
    points: list[int] = []
    faked: set[int] = set()
    real = 0
    p = 0
    while len(points) < max_points:
        j = len(points) + 1
        q = next_point(p, m, budget)
        batch_seed = accs[max(j - 2, 0)]
        weight = (q - p) * work_units
        if fake_ticket and j >= min_points:
            salt = 0
            while True:  # grind a fake end state until the point wins: hashing only
                cand = fake_state(state, rng.randrange(1 << 30) + salt)
                data = serialize_state(spec, cand)
                a = next_accumulator(accs[-1], state_hash(data))
                if is_winning_ticket(a, weight, difficulty):
                    break
                salt += 1
            new_state, fake_now = cand, True
        elif is_fake(j):
            new_state, fake_now = fake_state(state, rng.randrange(1 << 30)), True
        else:
            new_state = run_segment(spec, dataset, state, batch_seed, p + 1, q, backend)
            real += q - p
            fake_now = False
        data = serialize_state(spec, new_state)
        c = state_hash(data)
        a = next_accumulator(accs[-1], c)
        commitments.append(c)
        accs.append(a)
        points.append(q)
        states.append(data)
        if fake_now:
            faked.add(j)
        state, p = new_state, q
        if j >= min_points and is_ticket_point(j) and is_winning_ticket(a, weight, difficulty):
            j_r = budget_segment(points, q, budget)
            required = required_segments(a, j, k, j_r)
            if selective and faked & set(required):
                continue  # the validator would catch it: keep training for a later draw
            checkpoint = j_r if j_r is not None else j
            payload = WorkPayload(m, tuple(commitments), tuple((i, states[i - 1]) for i in required if i >= 2))
            claim = SealClaim(template_hash, coinbase, job_id, h0, q, commitments[checkpoint - 1], a, difficulty, budget)
            return Trajectory(claim, payload, faked, real, required)
    raise RuntimeError(f"no publishable ticket within {max_points} points")
