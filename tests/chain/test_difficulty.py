"""The difficulty retarget: a window of ancestors steers toward the genesis block time,
within clamps and a ceiling, and one lying timestamp moves it by a few percent at most.

The rule is docs/protocol.md section 16 (chain/difficulty.py). Simulations here use
the rule's pure functions; the chain-level tests run the real header validation.
"""
from __future__ import annotations

import random

import pytest

from chain.errors import InvalidDifficulty
from chain.difficulty import (
    DEFAULT_MAXIMUM_DIFFICULTY,
    MAXIMUM_DIFFICULTY_LIMIT,
    BlockPoint,
    DifficultyParams,
    next_difficulty,
    window_pairs,
)
from tests.chain.helpers import MINER, OTHER_MINER, dev_genesis, mine, open_chain, with_header
from tests.consensus.helpers import mine_block, open_pouw_chain, pouw_genesis

P = DifficultyParams(target_block_time=5, minimum_difficulty=100, max_adjust_up_percent=25, max_adjust_down_percent=20)
MAX_FUTURE = 15  # chain.chain.MAX_FUTURE_SECONDS


def spans_of(times: list[int], diffs: list[int], pairs: list[tuple[int, int]]) -> list[tuple[BlockPoint, BlockPoint]]:
    """The rule's input for a chain given as timestamps and difficulties (score: the sum)."""
    def score(i: int) -> int:
        return sum(diffs[: i + 1])

    return [(BlockPoint(times[e], score(e)), BlockPoint(times[s], score(s))) for e, s in pairs]


class Track:
    """A simulated chain's timestamps, difficulties and scores, extended block by block."""

    def __init__(self, params: DifficultyParams, times: list[int], diffs: list[int]) -> None:
        self.params = params
        self.times = list(times)
        self.diffs = list(diffs)
        self.scores = [sum(diffs[: i + 1]) for i in range(len(diffs))]

    def next_difficulty(self) -> int:
        pairs = window_pairs(len(self.times) - 1, self.params)
        spans = [(BlockPoint(self.times[e], self.scores[e]), BlockPoint(self.times[s], self.scores[s])) for e, s in pairs]
        return next_difficulty(self.diffs[-1], spans, self.params)

    def append(self, timestamp: int, difficulty: int) -> None:
        self.times.append(timestamp)
        self.diffs.append(difficulty)
        self.scores.append(self.scores[-1] + difficulty)


# --- the rule -----------------------------------------------------------------------------


def test_window_grows_from_block_one_to_its_full_size() -> None:
    assert window_pairs(0, P) == [] and window_pairs(1, P) == []
    assert window_pairs(2, P) == [(2, 1)]
    assert window_pairs(30, P) == [(30, 1)]
    assert window_pairs(91, P) == [(91, 1)]
    assert window_pairs(92, P) == [(92, 2), (91, 1)]
    full = window_pairs(1000, P)
    assert len(full) == P.smoothing == 15 and full[0] == (1000, 910) and full[-1] == (986, 896)
    assert all(start >= 1 for _, start in window_pairs(100, P))  # block 0 (genesis time) never read


def test_retarget_steers_toward_target_within_clamps() -> None:
    def after(interval: int, d: int = 10_000) -> int:
        times = [0] + [1_000 + i * interval for i in range(100)]
        return next_difficulty(d, spans_of(times, [d] * 101, window_pairs(100, P)), P)

    assert after(5) == 10_000  # on target
    assert after(6) == 10_000 * 5 // 6  # proportional inside the clamp
    assert after(4) == 10_000 * 5 // 4
    assert after(10) == 8_000  # twice as slow: -50 % clamped to -20 %
    assert after(1) == 12_500  # five times as fast: clamped to +25 %
    assert next_difficulty(100, spans_of([0, 1, 99], [100] * 3, [(2, 1)]), P) == 100  # floor
    tiny = DifficultyParams(5, 1, 25, 20)
    assert next_difficulty(1, spans_of([0, 1, 2], [1] * 3, [(2, 1)]), tiny) == 2  # tiny difficulty still grows
    assert next_difficulty(777, [], P) == 777  # no span yet: the parent's


def test_difficulty_stays_in_range_on_any_genesis() -> None:
    """Random parameters and hostile timing (blocks 1 s apart for hundreds of blocks,
    then huge gaps): every difficulty stays in [minimum, maximum], so far below 2**256."""
    rng = random.Random(12)
    for _ in range(40):
        minimum = rng.choice([1, 1000, 10**6])
        maximum = rng.choice([minimum * 50, 2**64, DEFAULT_MAXIMUM_DIFFICULTY, MAXIMUM_DIFFICULTY_LIMIT])
        params = DifficultyParams(
            target_block_time=rng.choice([1, 5, 600]), minimum_difficulty=minimum,
            max_adjust_up_percent=rng.choice([1, 25, 1000]), max_adjust_down_percent=rng.choice([1, 20, 99]),
            maximum_difficulty=maximum, window=rng.choice([1, 5, 60]), smoothing=rng.choice([1, 3, 11]),
        )
        track = Track(params, [0], [rng.randrange(minimum, min(maximum, 10**12) + 1)])
        now = 10**9
        for i in range(400):
            d = track.next_difficulty()
            assert minimum <= d <= maximum < 2**256
            now += 1 if i < 300 else rng.choice([1, 10**6])
            track.append(max(now, track.times[-1] + 1), d)
        assert track.scores[-1] < 2**256


def test_converges_to_target_block_time_under_constant_hash_power() -> None:
    """A miner doing W work units per second: block time = D / W on average (exponential
    draws), so D settles near W * target and blocks near the target time."""
    rng = random.Random(3)
    work_per_second = 1_000_000
    track, true_time = Track(P, [0, 10**6], [50_000_000, 50_000_000]), float(10**6)
    for _ in range(1500):
        d = track.next_difficulty()
        true_time += d / work_per_second * rng.expovariate(1.0)
        track.append(max(int(true_time), track.times[-1] + 1), d)
    late = track.diffs[-500:]
    mean_d = sum(late) / len(late)
    assert 0.85 * 5 * work_per_second < mean_d < 1.15 * 5 * work_per_second
    mean_interval = (track.times[-1] - track.times[-501]) / 500
    assert 4.0 < mean_interval < 6.0


# --- one lying timestamp ------------------------------------------------------------------


class SimChain(Track):
    """Blocks of a simulated network: honest miners stamp max(true time, parent + 1);
    block times are D / W times the given exponential draws."""

    def __init__(self, params: DifficultyParams, work_per_second: float, draws: list[float]) -> None:
        super().__init__(params, [0, 10**6], [5_000_000, 5_000_000])
        self.work_per_second = work_per_second
        self.draws = draws
        self.true_time = float(10**6)

    def add(self, lie: str = "") -> None:
        d = self.next_difficulty()
        self.true_time += d / self.work_per_second * self.draws[len(self.times)]
        honest = max(int(self.true_time), self.times[-1] + 1)
        stamp = {"": honest, "ahead": int(self.true_time) + MAX_FUTURE, "behind": self.times[-1] + 1}[lie]
        self.append(max(stamp, self.times[-1] + 1), d)


def _worst_swing(params: DifficultyParams, lie: str, seed: int, liar: int, after: int) -> float:
    rng = random.Random(seed)
    draws = [rng.expovariate(1.0) for _ in range(liar + after + 10)]
    honest = SimChain(params, 1_000_000, draws)
    lying = SimChain(params, 1_000_000, draws)
    for i in range(2, liar + after):
        honest.add()
        lying.add(lie if i == liar else "")
    return max(abs(a / b - 1) for a, b in zip(lying.diffs[liar:], honest.diffs[liar:]))


@pytest.mark.parametrize("lie", ["ahead", "behind"])
def test_attack_one_lying_timestamp_moves_difficulty_a_few_percent(lie: str) -> None:
    """A miner stamps its block 15 s ahead (the most validators accept) or at its
    parent's + 1 s: over every later block's difficulty (the window passes the lie at
    both ends), the largest change against the same chain without the lie stays under
    3 %, at many positions and random block times. (The per-block rule this replaced let
    a block 10 s ahead lower its own difficulty by 20 %.)"""
    full = DifficultyParams(5, 100, 25, 20)  # the default window and smoothing
    swings = [
        _worst_swing(full, lie, seed, liar=liar, after=full.window + full.smoothing + 20)
        for seed in range(6) for liar in (150, 201, 257)
    ]
    assert max(swings) < 0.03, sorted(swings)[-5:]


# --- in the chain ---------------------------------------------------------------------------


def test_header_difficulty_follows_its_own_branch() -> None:
    """A side branch's child is retargeted over the side branch's ancestors (not the
    canonical ones at the same heights), and import checks exactly that value."""
    genesis = dev_genesis(minimumDifficulty=1000, initialDifficulty=10**6)
    chain = open_chain(genesis=genesis)
    for _ in range(8):
        mine(chain, dt=5)
    fork_point = chain.head()
    for _ in range(6):
        mine(chain, dt=5)  # canonical: on target
    side = fork_point
    side_blocks = []
    for _ in range(5):
        block = mine(chain, parent_hash=side.hash, dt=2, coinbase=OTHER_MINER)  # fast: harder
        side_blocks.append(block)
        side = block.header
    times = [chain.get_header_by_hash(h).timestamp for h in _branch_hashes(chain, side.hash)]
    diffs = [chain.get_header_by_hash(h).difficulty for h in _branch_hashes(chain, side.hash)]
    expected = next_difficulty(diffs[-1], spans_of(times, diffs, window_pairs(len(times) - 1, genesis.difficulty_params)),
                               genesis.difficulty_params)
    assert chain.difficulty_for_child(side) == expected
    assert expected > chain.head().difficulty  # the side branch's fast blocks raised it
    child = mine(chain, parent_hash=side.hash, dt=5, do_import=False)
    assert child.header.difficulty == expected
    with pytest.raises(InvalidDifficulty) as info:
        chain.import_block(with_header(child, difficulty=expected - 1))
    assert info.value.expected == expected


def _branch_hashes(chain, tip_hash) -> list:
    hashes = [tip_hash]
    while chain.get_header_by_hash(hashes[-1]).block_number > 0:
        hashes.append(chain.get_header_by_hash(hashes[-1]).parent_hash)
    return hashes[::-1]


def test_blocks_a_second_apart_reach_the_ceiling_and_stay_valid() -> None:
    """A dev chain stamping blocks 1 s apart (automine) drove the old rule past 2**256
    and froze the head; now difficulty rises to maximumDifficulty and every block imports."""
    genesis = dev_genesis(initialDifficulty=2**60, minimumDifficulty=2**20, maximumDifficulty=2**64)
    chain = open_chain(genesis=genesis)
    for _ in range(40):
        mine(chain, dt=1)
    assert chain.head().difficulty == 2**64
    assert chain.score(chain.head().hash) < 2**256
    top = dev_genesis(initialDifficulty=MAXIMUM_DIFFICULTY_LIMIT // 2, maximumDifficulty=MAXIMUM_DIFFICULTY_LIMIT)
    chain = open_chain(genesis=top)
    for _ in range(12):
        mine(chain, dt=1)
    assert chain.head().difficulty == MAXIMUM_DIFFICULTY_LIMIT


def test_fork_choice_by_cumulative_difficulty() -> None:
    """A shorter branch with more work beats a longer one with less; ties go to the
    first seen. (Difficulty reads ancestors only: the branches share a prefix, and the
    clamp allows doubling, so a branch's own fast blocks can raise its difficulty.)"""
    genesis = pouw_genesis(expected_steps=3, k=2, maxAdjustUpPercent=100, maxAdjustDownPercent=20)
    chain = open_pouw_chain(genesis)
    mine_block(chain, MINER, dt=5)
    root = mine_block(chain, MINER, dt=5).block.header
    slow = [mine_block(chain, MINER, dt=10) for _ in range(2)]  # slower: difficulty at the floor
    fast = mine_block(chain, OTHER_MINER, parent_hash=root.hash, dt=1, do_import=False)  # faster: harder
    chain.import_block(fast.block, fast.payload)
    assert chain.head().hash == slow[-1].block.hash  # 1 block is not yet heavier than 2
    assert chain.score(slow[-1].block.hash) > chain.score(fast.block.hash)
    fast2 = mine_block(chain, OTHER_MINER, parent_hash=fast.block.hash, dt=1, do_import=False)
    chain.import_block(fast2.block, fast2.payload)
    assert chain.score(fast2.block.hash) > chain.score(slow[-1].block.hash)
    assert chain.head().hash == fast2.block.hash  # two hard blocks outweigh two easy ones
