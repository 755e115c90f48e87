"""Selective-publication simulation: many blocks, several cheating strategies, real seal checks.

Training is modelled by a toy step (``step(s, batch_seed, i) = BLAKE3(s || batch_seed || i)``,
one unit of work) so that thousands of blocks run in seconds; everything else is the
protocol's own code: seal seed, points, chained batch seeds, accumulator, tickets,
challenges and the validator's cheap checks (:func:`consensus.seal.check_commitments`).
A recomputed segment passes exactly when its listed end state is the toy recomputation
of its carried start state, as with real training.

Each strategy knows everything (it computes its own challenges before publishing), may
grind anything cheap, and publishes only blocks the validator accepts. The figure of
merit is the real training (toy steps computed, wasted ones included) per accepted
block, against the honest miner's.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Callable

import blake3

from chain.errors import InvalidBlock
from consensus.payload import WorkPayload
from consensus.seal import SealClaim, budget_segment, check_commitments
from pouw.commit import (
    is_ticket_point,
    is_winning_ticket,
    max_segment_steps,
    next_accumulator,
    next_point,
    required_segments,
)
from pouw.state import state_hash

W = 1000  # work units per step
S0 = b"\x00" * 32


def toy_segment(state: bytes, seed: bytes, first: int, last: int) -> bytes:
    for i in range(first, last + 1):
        state = blake3.blake3(state + seed + i.to_bytes(8, "big")).digest()
    return state


def validator_accepts(claim: SealClaim, payload: WorkPayload, k: int) -> bool:
    """The validator: the real cheap checks, then the toy recomputation of every segment."""
    try:
        checked = check_commitments(claim, payload, W, k, S0)
    except InvalidBlock:
        return False
    for sc in checked.claims:
        if state_hash(toy_segment(bytes(sc.start_state), sc.batch_seed, sc.first, sc.last)) != sc.claimed:
            return False
    return True


@dataclass
class Stats:
    name: str
    blocks: int = 0
    steps: int = 0  # toy training steps computed, wasted ones included
    draws: int = 0

    def per_block(self) -> float:
        return self.steps / max(1, self.blocks)


class Forger:
    """One trajectory on one template; subclasses decide what to train and what to fake."""

    def __init__(self, stats: Stats, rng: random.Random, *, d: int, k: int, m: int, template: bytes) -> None:
        self.stats, self.rng, self.d, self.k, self.m = stats, rng, d, k, m
        self.claim0 = SealClaim(template, b"\xc0" * 20, 1, state_hash(S0), 0, b"", b"", d, None)
        self.seed = self.claim0.seed(m)
        self.accs = [self.seed]
        self.points: list[int] = []
        self.states = [S0]  # listed state at each point (what a carried start would be)
        self.faked: set[int] = set()

    def train(self, j: int, start: bytes, first: int, last: int) -> bytes:
        self.stats.steps += last - first + 1
        return toy_segment(start, self.accs[max(j - 2, 0)], first, last)

    def append(self, state: bytes, q: int, faked: bool) -> bytes:
        self.points.append(q)
        self.states.append(state)
        a = next_accumulator(self.accs[-1], state_hash(state))
        self.accs.append(a)
        if faked:
            self.faked.add(len(self.points))
        return a

    def wins(self) -> bool:
        j = len(self.points)
        if not is_ticket_point(j):
            return False
        self.stats.draws += 1
        length = self.points[-1] - (self.points[-2] if j >= 2 else 0)
        return is_winning_ticket(self.accs[-1], length * W, self.d)

    def seal(self) -> tuple[SealClaim, WorkPayload]:
        n, t = len(self.points), self.points[-1]
        j_r = budget_segment(self.points, t, None)
        req = required_segments(self.accs[-1], n, self.k, j_r)
        commitments = tuple(state_hash(s) for s in self.states[1:])
        payload = WorkPayload(self.m, commitments, tuple((j, self.states[j - 1]) for j in req if j >= 2))
        claim = SealClaim(self.claim0.template_hash, self.claim0.coinbase, 1, self.claim0.h0, t,
                          commitments[-1], self.accs[-1], self.d, None)
        return claim, payload

    def required(self) -> list[int]:
        return required_segments(self.accs[-1], len(self.points), self.k, None)


def honest(f: Forger) -> bool:
    """Train every segment; publish the first winning point."""
    while len(f.points) < 20_000:
        p = f.points[-1] if f.points else 0
        q = next_point(p, f.m, None)
        f.append(f.train(len(f.points) + 1, f.states[-1], p + 1, q), q, False)
        if f.wins():
            return True
    return False


def faker(fraction: float) -> Callable[[Forger], bool]:
    """Fake each segment but the first (always recomputed: faking it is hopeless) with
    probability ``fraction`` (list a state without training it: a fake that costs
    nothing); at each winning point, publish only if no recomputed segment is faked,
    else keep training for a later draw."""

    def run(f: Forger) -> bool:
        while len(f.points) < 200_000:
            p = f.points[-1] if f.points else 0
            q = next_point(p, f.m, None)
            if f.points and f.rng.random() < fraction:
                f.append(blake3.blake3(f.states[-1] + b"fake").digest(), q, True)
            else:
                f.append(f.train(len(f.points) + 1, f.states[-1], p + 1, q), q, False)
            if f.wins() and not (f.faked & set(f.required())):
                return True
        return False

    return run


def poisoner(position: int) -> Callable[[Forger], bool]:
    """Fake exactly one segment at a chosen position (a substituted state: the poisoning
    case), train everything else, publish only blocks whose recomputed segments miss it."""

    def run(f: Forger) -> bool:
        while len(f.points) < 200_000:
            p = f.points[-1] if f.points else 0
            q = next_point(p, f.m, None)
            j = len(f.points) + 1
            if j == position:
                f.append(blake3.blake3(f.states[-1] + b"poison").digest(), q, True)
            else:
                f.append(f.train(j, f.states[-1], p + 1, q), q, False)
            if f.wins() and not (f.faked & set(f.required())):
                return True
        return False

    return run


def tail_grinder(f: Forger) -> bool:
    """The knob attack, as cheap as the new rules allow: train up to ~40 points honestly,
    then for each draw list a fresh free 32-byte commitment at point n-3 (no state behind
    it) and train only what the validator always recomputes (segments n-2, n-1, n, whose
    batches the knob changed), publishing when the knob escapes the challenges."""
    base = 40
    while len(f.points) < base:
        p = f.points[-1] if f.points else 0
        q = next_point(p, f.m, None)
        f.append(f.train(len(f.points) + 1, f.states[-1], p + 1, q), q, False)
    prefix = (list(f.points), list(f.states), list(f.accs))
    for _ in range(100_000):
        f.points, f.states, f.accs = list(prefix[0]), list(prefix[1]), list(prefix[2])
        f.faked = set()
        p = f.points[-1]
        q = next_point(p, f.m, None)
        f.append(f.rng.randbytes(32), q, True)  # the knob: a listed "state" nobody computed
        for _ in range(3):
            p = f.points[-1]
            q = next_point(p, f.m, None)
            start = f.states[-1]
            f.append(f.train(len(f.points) + 1, start, p + 1, q), q, False)
        if f.wins() and not (f.faked & set(f.required())):
            return True
    return False


def restarter(f: Forger) -> bool:
    """Re-roll the template after every losing draw: a fresh seed, so fresh batches from
    the stored checkpoint. Point 1 never wins, so each draw trains two segments."""
    for attempt in range(100_000):
        f.__init__(f.stats, f.rng, d=f.d, k=f.k, m=f.m, template=f.rng.randbytes(32))  # type: ignore[misc]
        for _ in range(2):
            p = f.points[-1] if f.points else 0
            q = next_point(p, f.m, None)
            f.append(f.train(len(f.points) + 1, f.states[-1], p + 1, q), q, False)
        if f.wins():
            return True
    return False


def start_tweaker(f: Forger) -> bool:
    """The incremental re-roll: vary the carried start state of segment n-2 slightly, so
    that segment n-2 (same batches, nearly the same input) could be updated almost for
    free; the change still moves A_{n-2} and with it the batches of segments n-1 and n.
    Counted optimistically for the forger: segment n-2 costs nothing, and the first step
    of segment n-1 costs nothing either (as if its batch-independent work were reused)."""
    base = 40
    while len(f.points) < base:
        p = f.points[-1] if f.points else 0
        q = next_point(p, f.m, None)
        f.append(f.train(len(f.points) + 1, f.states[-1], p + 1, q), q, False)
    prefix = (list(f.points), list(f.states), list(f.accs))
    for tweak in range(100_000):
        f.points, f.states, f.accs = list(prefix[0]), list(prefix[1]), list(prefix[2])
        f.faked = set()
        # the tweaked start state of segment n-2 replaces the last listed point's state
        f.states[-1] = blake3.blake3(prefix[1][-1] + tweak.to_bytes(8, "big")).digest()
        f.accs[-1] = next_accumulator(f.accs[-2], state_hash(f.states[-1]))
        f.faked.add(len(f.points))  # the tweaked point is not what its segment computes
        for seg in range(3):
            p = f.points[-1]
            q = next_point(p, f.m, None)
            j = len(f.points) + 1
            end = toy_segment(f.states[-1], f.accs[max(j - 2, 0)], p + 1, q)
            f.stats.steps += 0 if seg == 0 else (q - p - (1 if seg == 1 else 0))
            f.append(end, q, False)
        if f.wins() and not (f.faked & set(f.required())):
            return True
    return False


STRATEGIES: dict[str, Callable[[Forger], bool]] = {
    "honest": honest,
    "fake 5% + selective publication": faker(0.05),
    "fake 20% + selective publication": faker(0.20),
    "fake one chosen segment (poison)": poisoner(10),
    "knob grind at n-3 (tail recomputed)": tail_grinder,
    "template re-roll (restart)": restarter,
    "tweak carried start of n-2 (incremental)": start_tweaker,
}


def run(strategy: str, *, blocks: int, steps_per_block: int = 60, k: int = 8, m: int = 1, seed: int = 1) -> Stats:
    """Mine ``blocks`` accepted blocks with ``strategy``; every published block is checked
    by :func:`validator_accepts` (a strategy's refused block would be a bug in the model)."""
    rng = random.Random(seed)
    d = steps_per_block * W
    assert m <= max_segment_steps(d, W, k)
    stats = Stats(strategy)
    fn = STRATEGIES[strategy]
    while stats.blocks < blocks:
        f = Forger(stats, rng, d=d, k=k, m=m, template=rng.randbytes(32))
        if fn(f):
            claim, payload = f.seal()
            assert validator_accepts(claim, payload, k), f"{strategy}: published a block the validator refuses"
            stats.blocks += 1
    return stats
