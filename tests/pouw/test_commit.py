"""pouw.commit: encodings (known answers), points and segments, ticket boundary, challenge draws."""
from __future__ import annotations

import pytest
from eth_utils import keccak

from pouw.commit import (
    accumulator_chain,
    anchored_segments,
    batch_accumulator_index,
    challenge_segments,
    is_valid_end,
    is_winning_ticket,
    max_segment_steps,
    next_accumulator,
    next_point,
    required_segments,
    seal_seed,
    ticket_target,
    ticket_value,
    trajectory_points,
)
from pouw.prng import derive_key, prng_u64

TEMPLATE = b"\x11" * 32
COINBASE = b"\x22" * 20
H0 = b"\x33" * 32
C1 = b"\x44" * 32


def test_seal_seed_known_answer_and_encoding() -> None:
    seed = seal_seed(TEMPLATE, COINBASE, 7, H0, 4)
    assert seed == keccak(TEMPLATE + COINBASE + (7).to_bytes(32, "big") + H0 + (4).to_bytes(4, "big"))
    assert seal_seed(TEMPLATE, COINBASE, (7).to_bytes(32, "big"), H0, 4) == seed
    assert seed.hex() == "ec23d70f13da23f64f5aa547a4df52b475a82be8b131c2b902e8036a03f2fa86"


def test_accumulator_known_answers() -> None:
    seed = seal_seed(TEMPLATE, COINBASE, 7, H0, 4)
    a1 = next_accumulator(seed, C1)
    assert a1 == keccak(seed + C1)
    assert ticket_value(a1) == int.from_bytes(keccak(a1), "big")
    assert accumulator_chain(seed, [C1]) == [seed, a1]
    assert a1.hex() == "20dc7f4d70e57bff8c99a0b87e8a66b98d13a8b50399f686ecb08c5e386d1ca0"
    assert ticket_value(a1) == 0x882AA3A6611DB510358648E80EA816D8566F2FC8942171BA8BDEFF9055C56A6


def test_challenge_known_answers() -> None:
    a1 = next_accumulator(seal_seed(TEMPLATE, COINBASE, 7, H0, 4), C1)
    assert challenge_segments(a1, 1000, 8) == [21, 23, 36, 324, 499, 585, 819, 874]
    assert challenge_segments(a1, 12, 8) == [2, 3, 4, 5, 6, 7, 8, 9]


def test_accumulator_commits_to_order() -> None:
    seed = seal_seed(TEMPLATE, COINBASE, 7, H0, 1)
    assert accumulator_chain(seed, [H0, C1])[-1] != accumulator_chain(seed, [C1, H0])[-1]


def test_seed_binds_every_input() -> None:
    base = seal_seed(TEMPLATE, COINBASE, 7, H0, 1)
    assert seal_seed(b"\x12" * 32, COINBASE, 7, H0, 1) != base
    assert seal_seed(TEMPLATE, b"\x23" * 20, 7, H0, 1) != base
    assert seal_seed(TEMPLATE, COINBASE, 8, H0, 1) != base
    assert seal_seed(TEMPLATE, COINBASE, 7, C1, 1) != base
    assert seal_seed(TEMPLATE, COINBASE, 7, H0, 2) != base


def test_invalid_encodings_refused() -> None:
    with pytest.raises(ValueError):
        seal_seed(TEMPLATE[:31], COINBASE, 7, H0, 1)
    with pytest.raises(ValueError):
        seal_seed(TEMPLATE, COINBASE + b"\x00", 7, H0, 1)
    with pytest.raises(ValueError):
        seal_seed(TEMPLATE, COINBASE, 2**256, H0, 1)
    for m in (0, -1, 2**16 + 1, True):
        with pytest.raises(ValueError):
            seal_seed(TEMPLATE, COINBASE, 7, H0, m)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        next_accumulator(H0, C1 + b"\x00")


def test_points_are_multiples_of_m_and_the_budget() -> None:
    assert trajectory_points(12, 4, None) == [4, 8, 12]
    assert trajectory_points(12, 4, 6) == [4, 6, 8, 12]
    assert trajectory_points(6, 4, 6) == [4, 6]
    assert trajectory_points(12, 4, 12) == [4, 8, 12]
    assert trajectory_points(12, 4, 40) == [4, 8, 12]
    assert trajectory_points(3, 1, None) == [1, 2, 3]
    assert next_point(0, 4, 3) == 3 and next_point(3, 4, 3) == 4 and next_point(4, 4, 3) == 8


def test_a_block_ends_at_a_point() -> None:
    assert is_valid_end(8, 4, None) and is_valid_end(6, 4, 6) and not is_valid_end(7, 4, 6)
    assert not is_valid_end(0, 4, None)
    with pytest.raises(ValueError):
        trajectory_points(7, 4, None)
    with pytest.raises(ValueError):
        is_valid_end(8, 4, 0)


def test_batches_come_from_two_points_back() -> None:
    assert [batch_accumulator_index(j) for j in (1, 2, 3, 4, 10)] == [0, 0, 1, 2, 8]
    with pytest.raises(ValueError):
        batch_accumulator_index(0)


def test_ticket_boundary_is_inclusive() -> None:
    a = C1
    v = ticket_value(a)
    # choose D so that 2**256 * w / D == v exactly: w = v, D = 2**256
    assert is_winning_ticket(a, v, 2**256)
    assert not is_winning_ticket(a, v - 1, 2**256)
    assert ticket_target(v, 2**256) == v


def test_ticket_extremes() -> None:
    assert is_winning_ticket(C1, 5, 5)  # weight >= D always wins
    assert is_winning_ticket(C1, 10, 5)
    assert not is_winning_ticket(C1, 0, 5) or ticket_value(C1) == 0
    with pytest.raises(ValueError):
        is_winning_ticket(C1, 1, 0)
    with pytest.raises(ValueError):
        is_winning_ticket(C1, -1, 5)


def test_win_rate_is_weight_over_d() -> None:
    wins = sum(is_winning_ticket(i.to_bytes(32, "big"), 1, 20) for i in range(4000))
    assert 120 <= wins <= 280  # expected 200
    wins4 = sum(is_winning_ticket(i.to_bytes(32, "big"), 4, 80) for i in range(4000))
    assert 120 <= wins4 <= 280  # a segment of 4 steps at 4x the difficulty: same rate


def test_anchored_segments() -> None:
    assert anchored_segments(1) == [1]
    assert anchored_segments(2) == [1, 2]
    assert anchored_segments(4) == [1, 2, 3, 4]
    assert anchored_segments(10) == [1, 8, 9, 10]
    assert anchored_segments(10, 4) == [1, 4, 8, 9, 10]
    with pytest.raises(ValueError):
        anchored_segments(10, 11)


def test_challenge_construction() -> None:
    a, n, k = C1, 50, 6
    key = keccak(a + b"challenge")
    assert key == derive_key(a, b"challenge")
    candidates = list(range(2, 48))  # 1, 48, 49 and 50 are anchored
    limit = 2**64 - (2**64 % len(candidates))
    chosen: list[int] = []
    c = 0
    while len(set(chosen)) < k:
        w = prng_u64(key, c)
        c += 1
        if w < limit and candidates[w % len(candidates)] not in chosen:
            chosen.append(candidates[w % len(candidates)])
    assert challenge_segments(a, n, k) == sorted(chosen)
    assert required_segments(a, n, k) == sorted(set(chosen) | {1, 48, 49, 50})


def test_challenges_skip_the_budget_segment() -> None:
    for seed in range(30):
        a = seed.to_bytes(32, "big")
        assert challenge_segments(a, 13, 8, budget_segment=5) == [2, 3, 4, 6, 7, 8, 9, 10]  # all 8 candidates
        got = challenge_segments(a, 13, 5, budget_segment=5)
        assert 5 not in got and len(got) == 5 == len(set(got))
        assert set(got) <= set(range(2, 11))


def test_challenge_small_trajectories() -> None:
    assert challenge_segments(C1, 1, 8) == []
    assert challenge_segments(C1, 4, 8) == []
    assert challenge_segments(C1, 6, 8) == [2, 3]
    assert challenge_segments(C1, 1000, 0) == []
    assert required_segments(C1, 6, 8) == [1, 2, 3, 4, 5, 6]


def test_challenges_distinct_in_range() -> None:
    for seed in range(50):
        a = seed.to_bytes(32, "big")
        got = challenge_segments(a, 30, 8)
        assert len(got) == 8 == len(set(got))
        assert all(2 <= j <= 27 for j in got)


def test_invalid_challenge_arguments() -> None:
    with pytest.raises(ValueError):
        challenge_segments(C1, 0, 8)
    with pytest.raises(ValueError):
        challenge_segments(C1, 10, -1)
    with pytest.raises(ValueError):
        challenge_segments(C1[:5], 10, 2)


def test_max_segment_steps_keeps_recomputation_under_two_percent() -> None:
    w, k = 1000, 8
    assert max_segment_steps(w * 100, w, k) == 1  # a short block: one step per segment
    for steps_per_block in (600, 1200, 6000, 60_000):
        m = max_segment_steps(w * steps_per_block, w, k)
        assert m >= 1
        if m > 1:
            assert (k + 5) * m * w * 64 <= w * steps_per_block
    assert max_segment_steps(w * 83_200, w, k) == 100
    assert max_segment_steps(2**200, 1, 8) == 2**16


def test_detection_rate_of_a_cheater_matches_theory() -> None:
    """A miner faking F of the n-4 challengeable segments passes k challenges with
    probability C(N-F, k) / C(N, k) (draws without replacement), at most (1-f)^k."""
    from math import comb

    from pouw.prng import uniform_below

    n, k, f = 203, 8, 0.1
    candidates = list(range(2, n - 2))
    N = len(candidates)
    faked = set()
    draws = iter(uniform_below(b"\x09" * 32, N, 10 * N))
    while len(faked) < int(f * N):
        faked.add(candidates[next(draws)])
    trials = 3000
    detected = sum(
        bool(set(challenge_segments(keccak(trial.to_bytes(8, "big")), n, k)) & faked) for trial in range(trials)
    )
    rate = detected / trials
    exact = 1 - comb(N - len(faked), k) / comb(N, k)
    bound = 1 - (1 - len(faked) / N) ** k
    sd = (exact * (1 - exact) / trials) ** 0.5
    assert abs(rate - exact) < 4 * sd, (rate, exact)
    assert exact >= bound  # without replacement detects at least as often as (1-f)^k predicts
