"""pouw.commit: encodings (known answers), ticket boundary, challenge draws."""
from __future__ import annotations

import pytest
from eth_utils import keccak

from pouw.commit import (
    accumulator_chain,
    challenge_indices,
    initial_accumulator,
    is_winning_ticket,
    next_accumulator,
    seal_seed,
    ticket_target,
    ticket_value,
)
from pouw.prng import derive_key, prng_u64

TEMPLATE = b"\x11" * 32
COINBASE = b"\x22" * 20
H0 = b"\x33" * 32
H1 = b"\x44" * 32


def test_seal_seed_known_answer_and_encoding() -> None:
    seed = seal_seed(TEMPLATE, COINBASE, 7, H0)
    assert seed.hex() == "f05fefbf923ce57028aa05503911a14db312a79011b5c07b4c423d16651db5b2"
    assert seed == keccak(TEMPLATE + COINBASE + (7).to_bytes(32, "big") + H0)
    assert seal_seed(TEMPLATE, COINBASE, (7).to_bytes(32, "big"), H0) == seed


def test_accumulator_known_answers() -> None:
    seed = seal_seed(TEMPLATE, COINBASE, 7, H0)
    a0 = initial_accumulator(seed, H0)
    assert a0.hex() == "b0060ee9ee6f3d36cf8a42f4c20c8f72ca36559330e362b27106b21bf4aa7cd2"
    a1 = next_accumulator(a0, H1)
    assert a1.hex() == "5be27c86a247b20cecd37f8a0799747d5a0d0aa1fd0fcc2cdab863cbb492e6ab"
    assert a1 == keccak(a0 + H1)
    assert ticket_value(a1) == 0xB1712D79A7F0A76DBF7BB9AC7D9D69E8F26289A0E394F698795A3DA2B0098958
    assert accumulator_chain(seed, H0, [H1]) == [a0, a1]


def test_accumulator_commits_to_order() -> None:
    seed = seal_seed(TEMPLATE, COINBASE, 7, H0)
    assert accumulator_chain(seed, H0, [H0, H1])[-1] != accumulator_chain(seed, H0, [H1, H0])[-1]


def test_seed_binds_every_input() -> None:
    base = seal_seed(TEMPLATE, COINBASE, 7, H0)
    assert seal_seed(b"\x12" * 32, COINBASE, 7, H0) != base
    assert seal_seed(TEMPLATE, b"\x23" * 20, 7, H0) != base
    assert seal_seed(TEMPLATE, COINBASE, 8, H0) != base
    assert seal_seed(TEMPLATE, COINBASE, 7, H1) != base


def test_invalid_encodings_refused() -> None:
    with pytest.raises(ValueError):
        seal_seed(TEMPLATE[:31], COINBASE, 7, H0)
    with pytest.raises(ValueError):
        seal_seed(TEMPLATE, COINBASE + b"\x00", 7, H0)
    with pytest.raises(ValueError):
        seal_seed(TEMPLATE, COINBASE, 2**256, H0)
    with pytest.raises(ValueError):
        next_accumulator(H0, H1 + b"\x00")


def test_ticket_boundary_is_inclusive() -> None:
    a = H1
    v = ticket_value(a)
    # choose D so that 2**256 * w / D == v exactly: w = v, D = 2**256
    assert is_winning_ticket(a, v, 2**256)
    assert not is_winning_ticket(a, v - 1, 2**256)
    assert ticket_target(v, 2**256) == v


def test_ticket_extremes() -> None:
    assert is_winning_ticket(H1, 5, 5)  # w >= D always wins
    assert is_winning_ticket(H1, 10, 5)
    assert not is_winning_ticket(H1, 0, 5) or ticket_value(H1) == 0
    with pytest.raises(ValueError):
        is_winning_ticket(H1, 1, 0)
    with pytest.raises(ValueError):
        is_winning_ticket(H1, -1, 5)


def test_win_rate_is_w_over_d() -> None:
    wins = sum(is_winning_ticket(i.to_bytes(32, "big"), 1, 20) for i in range(4000))
    assert 120 <= wins <= 280  # expected 200


def test_challenge_known_answers() -> None:
    a = next_accumulator(initial_accumulator(seal_seed(TEMPLATE, COINBASE, 7, H0), H0), H1)
    assert challenge_indices(a, 1000, 8) == [130, 139, 349, 380, 416, 433, 850, 971]
    assert challenge_indices(a, 10, 8) == [1, 2, 3, 4, 5, 7, 8, 9]


def test_challenge_construction() -> None:
    a, t, k = H1, 50, 6
    key = keccak(a + b"challenge")
    assert key == derive_key(a, b"challenge")
    n = t - 1
    limit = 2**64 - (2**64 % n)
    chosen: list[int] = []
    c = 0
    while len(set(chosen)) < k:
        w = prng_u64(key, c)
        c += 1
        if w < limit and (w % n) + 1 not in chosen:
            chosen.append(w % n + 1)
    assert challenge_indices(a, t, k) == sorted(chosen)


def test_challenge_small_trajectories() -> None:
    assert challenge_indices(H1, 1, 8) == []
    assert challenge_indices(H1, 5, 8) == [1, 2, 3, 4]
    assert challenge_indices(H1, 9, 8) == list(range(1, 9))
    assert challenge_indices(H1, 1000, 0) == []


def test_challenges_distinct_in_range_and_exclude_t() -> None:
    for seed in range(50):
        a = seed.to_bytes(32, "big")
        got = challenge_indices(a, 20, 8)
        assert len(got) == 8 == len(set(got))
        assert all(1 <= i <= 19 for i in got)


def test_invalid_challenge_arguments() -> None:
    with pytest.raises(ValueError):
        challenge_indices(H1, 0, 8)
    with pytest.raises(ValueError):
        challenge_indices(H1, 10, -1)
    with pytest.raises(ValueError):
        challenge_indices(H1[:5], 10, 2)


def test_detection_rate_of_a_cheater_matches_theory() -> None:
    """A miner faking a fraction f of steps 1..t-1 passes k challenges with probability
    C(n-F, k) / C(n, k) (draws without replacement), which is at most (1-f)^k."""
    from math import comb

    from pouw.prng import uniform_below

    t, k, f = 201, 8, 0.1
    n = t - 1
    faked = set()
    draws = iter(uniform_below(b"\x09" * 32, n, 10 * n))
    while len(faked) < int(f * n):
        faked.add(next(draws) + 1)
    trials = 3000
    detected = sum(
        bool(set(challenge_indices(keccak(trial.to_bytes(8, "big")), t, k)) & faked) for trial in range(trials)
    )
    rate = detected / trials
    exact = 1 - comb(n - len(faked), k) / comb(n, k)
    bound = 1 - (1 - f) ** k
    sd = (exact * (1 - exact) / trials) ** 0.5
    assert abs(rate - exact) < 4 * sd, (rate, exact)
    assert exact >= bound  # without replacement detects at least as often as (1-f)^k predicts
    assert abs(exact - bound) < 0.02
