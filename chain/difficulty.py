"""Difficulty retargeting: a windowed average that steers toward the genesis block time.

Difficulty ``D`` is measured in *work units* (the cost model's units of training work):
a block is expected to need about ``D`` work units of steps before one of them is a
winning ticket. Cumulative difficulty (the *score*) is the fork-choice rule, so the
retarget is exact integer arithmetic that every node computes identically, and it reads
only the block's ancestors: a miner cannot choose its own difficulty with its timestamp.

The rule (docs/protocol.md section 16), for the child of block ``P`` (its parent)::

    n     = min(window, P - 1)              # blocks per span (block 0 never counts:
    k     = min(smoothing, P - n)           #   its timestamp is the genesis file's)
    spans = [(P - j, P - j - n) for j in 0..k-1]     # k spans of n blocks, newest first
    work  = sum(score(end) - score(start))  # work units done in the spans
    time  = sum(ts(end) - ts(start))        # seconds they took (> 0: timestamps increase)
    proposed = work * targetBlockTime // time
    low   = D - D * maxAdjustDownPercent // 100          # D: the parent's difficulty
    high  = D + max(1, D * maxAdjustUpPercent // 100)
    D'    = clamp(clamp(proposed, low, high), minimumDifficulty, maximumDifficulty)

With ``P < 2`` there is no span yet and ``proposed = D``.

Why it resists a lying timestamp: block timestamps strictly increase and may be at most
15 s ahead of a validator's clock, so a liar can move one timestamp forward by at most
15 s (pulling the next few honest timestamps along while the clock catches up) or
backward to its parent's + 1. Only the two ends of the spans read timestamps, and each
end is the average of ``smoothing`` consecutive timestamps, so one lie moves the measured
time by its error over ``smoothing``, against ``window * targetBlockTime`` seconds. With
the defaults (90 blocks, 15 ends, 5 s: a 7.5-minute window) a +15 s lie moved later
difficulties by 0.7 % (median) and 2.4 % (worst) in tests/consensus/test_difficulty.py's
simulation, a lie backward by 0.2 % at most; the per-block rule this replaced let a
block 10 s ahead lower its own difficulty by 20 %. ``maximumDifficulty`` keeps every value far
below 2**256 (and the score below 2**256 for 2**64 blocks) whatever the genesis, however
fast blocks come (a dev chain stamping blocks a second apart rises to it and stays).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from genesis.format import (  # the rule's parameters are the genesis file's
    DEFAULT_MAXIMUM_DIFFICULTY,
    DEFAULT_SMOOTHING,
    DEFAULT_WINDOW,
    MAXIMUM_DIFFICULTY_LIMIT,
    DifficultyParams,
)

@dataclass(frozen=True)
class BlockPoint:
    """What the rule reads of an ancestor."""

    timestamp: int
    score: int
    """Cumulative difficulty up to and including the block."""


def window_pairs(parent_number: int, params: DifficultyParams) -> list[tuple[int, int]]:
    """Block numbers ``(end, start)`` of the spans the child of block ``parent_number``
    is retargeted over, newest first; empty while the chain is too short (block 0 is
    never used: its timestamp is the genesis file's, not a time anyone mined at)."""
    if parent_number < 2:
        return []
    n = min(params.window, parent_number - 1)
    k = min(params.smoothing, parent_number - n)
    return [(parent_number - j, parent_number - j - n) for j in range(k)]


def next_difficulty(
    parent_difficulty: int,
    spans: Sequence[tuple[BlockPoint, BlockPoint]],
    params: DifficultyParams,
) -> int:
    """The difficulty a child block must carry, from its parent's difficulty and the
    ``(end, start)`` points :func:`window_pairs` names (see the module docstring)."""
    proposed = parent_difficulty
    if spans:
        work = sum(end.score - start.score for end, start in spans)
        elapsed = sum(end.timestamp - start.timestamp for end, start in spans)
        proposed = work * params.target_block_time // max(1, elapsed)
    low = parent_difficulty - parent_difficulty * params.max_adjust_down_percent // 100
    high = parent_difficulty + max(1, parent_difficulty * params.max_adjust_up_percent // 100)
    clamped = min(high, max(low, proposed))
    return max(params.minimum_difficulty, min(params.maximum_difficulty, clamped))
