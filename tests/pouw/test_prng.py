"""pouw.prng: known answers, stream consistency, unbiased reduction, batch indices."""
from __future__ import annotations

import math

import numpy as np
import pytest
from eth_utils import keccak

from pouw.prng import (
    batch_indices,
    derive_key,
    keccak256,
    prng_bytes,
    prng_u64,
    prng_words,
    uniform_below,
)

KEY = bytes(range(32))


def test_keccak_is_ethereum_keccak() -> None:
    assert keccak256(b"").hex() == "c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470"
    assert keccak256(b"abc") == keccak(b"abc")


def test_prng_u64_known_answers() -> None:
    assert [prng_u64(KEY, c) for c in range(5)] == [
        0x8ECDE30AF40EC971,
        0x9A0DD0F9E5732CE0,
        0x9BAB3ECF290D7A67,
        0xC4BBBF294ECEC649,
        0xD36E78737663BD49,
    ]


def test_prng_u64_is_the_documented_construction() -> None:
    for c in (0, 1, 3, 4, 7, 1000, 2**40 + 5):
        block = keccak(KEY + (c // 4).to_bytes(8, "big"))
        assert prng_u64(KEY, c) == int.from_bytes(block[8 * (c % 4) : 8 * (c % 4) + 8], "big")


def test_words_bytes_and_u64_agree() -> None:
    for start in (0, 1, 2, 3, 5, 17):
        words = prng_words(KEY, start, 11)
        assert [int(w) for w in words] == [prng_u64(KEY, c) for c in range(start, start + 11)]
    raw = prng_bytes(KEY, 8 * 9)
    assert [int.from_bytes(raw[8 * c : 8 * c + 8], "big") for c in range(9)] == [prng_u64(KEY, c) for c in range(9)]
    assert prng_words(KEY, 5, 0).shape == (0,)


def test_derive_key_known_answer() -> None:
    assert derive_key(KEY, b"x").hex() == "87a94ed7d455d888a769b428867792243c1be4cc3fa87a74e1e53b17d4b4da77"
    assert derive_key(KEY, b"x") == keccak(KEY + b"x")


def test_batch_indices_known_answers() -> None:
    assert batch_indices(KEY, 1, 8, 1000) == [346, 416, 433, 788, 576, 866, 218, 966]
    assert batch_indices(KEY, 2, 8, 1000) == [443, 904, 404, 641, 93, 336, 190, 773]
    assert batch_indices(KEY, 1, 5, 7) == [5, 1, 4, 6, 6]


def test_batch_indices_construction() -> None:
    step_key = keccak(KEY + b"pouw/batch" + (3).to_bytes(8, "big"))
    n = 1797
    limit = 2**64 - (2**64 % n)
    want, c = [], 0
    while len(want) < 40:
        w = prng_u64(step_key, c)
        c += 1
        if w < limit:
            want.append(w % n)
    assert batch_indices(KEY, 3, 40, n) == want


def test_rejection_sampling_skips_words_above_the_limit() -> None:
    # n = 2**63 + 1: the accepted range is [0, 2**63 + 1), so about half the words are rejected
    n = 2**63 + 1
    words = [prng_u64(KEY, c) for c in range(64)]
    want = [w % n for w in words if w < 2**64 - (2**64 % n)]
    assert len(want) < 64
    assert uniform_below(KEY, n, len(want)) == want


def test_power_of_two_needs_no_rejection() -> None:
    assert uniform_below(KEY, 256, 10) == [prng_u64(KEY, c) % 256 for c in range(10)]


def test_uniformity_chi_square() -> None:
    n, draws = 10, 20000
    counts = np.bincount(uniform_below(KEY, n, draws), minlength=n)
    expected = draws / n
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < 27.9  # p = 0.001 for 9 degrees of freedom


def test_batch_indices_in_range_and_deterministic() -> None:
    for n in (1, 2, 3, 1500, 60000):
        idx = batch_indices(KEY, 9, 256, n)
        assert len(idx) == 256 and all(0 <= v < n for v in idx)
        assert idx == batch_indices(KEY, 9, 256, n)
    assert batch_indices(KEY, 1, 32, 1500) != batch_indices(KEY, 2, 32, 1500)
    assert batch_indices(KEY, 1, 32, 1500) != batch_indices(bytes(32), 1, 32, 1500)


def test_batch_is_a_prefix_of_a_larger_batch() -> None:
    assert batch_indices(KEY, 4, 256, 999)[:32] == batch_indices(KEY, 4, 32, 999)


def test_mean_of_indices_is_unbiased() -> None:
    n = 1000
    idx = np.array([v for s in range(1, 41) for v in batch_indices(KEY, s, 256, n)])
    # mean of 10240 uniform draws in [0, 1000): sd of the mean ~ 2.85
    assert abs(idx.mean() - (n - 1) / 2) < 6 * math.sqrt((n * n - 1) / 12 / idx.size)


def test_invalid_arguments() -> None:
    with pytest.raises(ValueError):
        batch_indices(KEY, 1, 0, 10)
    with pytest.raises(ValueError):
        batch_indices(KEY, 1, 4, 0)
    with pytest.raises(ValueError):
        batch_indices(KEY, -1, 4, 10)
    with pytest.raises(ValueError):
        prng_u64(KEY, 2**66)
