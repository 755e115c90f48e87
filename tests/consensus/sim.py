"""Simulated (honest and cheating) trajectories checked by the validator's own code.

A cheater fakes step i by listing a state that is not step(s_{i-1}): here the honest
s_i with one weight changed (as cheap as any fake, and it keeps later steps well
defined). A faked step is caught exactly when a validator recomputes it.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Optional

from eth_utils import keccak

from consensus.payload import WorkPayload
from consensus.seal import SealClaim, required_steps
from pouw.commit import accumulator_chain, is_winning_ticket, next_accumulator, initial_accumulator
from pouw.engine import compute_step
from pouw.spec import JobSpec
from pouw.state import deserialize_state, serialize_state


@dataclass
class Trajectory:
    claim: SealClaim
    payload: WorkPayload
    faked: set[int]


def fake_state(spec: JobSpec, state: dict, salt: int) -> dict:
    out = {name: t.clone() for name, t in state.items()}
    first = next(iter(out))
    out[first].view(-1)[salt % out[first].numel()] += 1
    return out


def simulate(
    spec: JobSpec, dataset, backend, s0_bytes: bytes, *, k: int, difficulty: int, work_units: int,
    f: float = 0.0, rng: Optional[random.Random] = None, fake_ticket: bool = False,
    template_hash: bytes = b"\x11" * 32, coinbase: bytes = b"\xc0" * 20, job_id: int = 1,
    min_t: Optional[int] = None,
) -> Trajectory:
    """A trajectory whose non-ticket steps are each faked with probability ``f``.

    The ticket step is honest unless ``fake_ticket`` (then the cheater draws fake
    states for step t until one wins, without computing the step). Tickets are only
    taken at t >= ``min_t`` (default k + 1, so that k challenges exist).
    """
    rng = rng or random.Random(0)
    min_t = k + 1 if min_t is None else min_t
    h0 = keccak(s0_bytes)
    claim0 = SealClaim(template_hash, coinbase, job_id, h0, 0, b"", b"", difficulty)
    seed = claim0.seed
    states = [s0_bytes]
    hashes: list[bytes] = []
    a = initial_accumulator(seed, h0)
    state = deserialize_state(spec, s0_bytes)
    faked: set[int] = set()
    i = 0
    while True:
        i += 1
        honest = compute_step(spec, dataset, state, seed, i, backend)
        data = serialize_state(spec, honest)
        a_next = next_accumulator(a, keccak(data))
        if i >= min_t and not fake_ticket and is_winning_ticket(a_next, work_units, difficulty):
            break
        if i >= min_t and fake_ticket:
            salt = 0
            while True:
                fake = serialize_state(spec, fake_state(spec, honest, salt))
                a_fake = next_accumulator(a, keccak(fake))
                if is_winning_ticket(a_fake, work_units, difficulty):
                    data, a_next, honest = fake, a_fake, deserialize_state(spec, fake)
                    faked.add(i)
                    break
                salt += 1
            break
        if rng.random() < f:
            honest = fake_state(spec, honest, rng.randrange(1 << 30))
            data = serialize_state(spec, honest)
            a_next = next_accumulator(a, keccak(data))
            faked.add(i)
        states.append(data)
        hashes.append(keccak(data))
        a = a_next
        state = honest
    states.append(data)
    hashes.append(keccak(data))
    t = i
    assert accumulator_chain(seed, h0, hashes)[-1] == a_next
    steps = required_steps(a_next, t, k)
    payload = WorkPayload(tuple(hashes), tuple((j, states[j - 1]) for j in steps), states[t])
    claim = SealClaim(template_hash, coinbase, job_id, h0, t, hashes[-1], a_next, difficulty)
    return Trajectory(claim, payload, faked)
