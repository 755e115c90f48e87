"""Difficulty retargeting: every block steers toward the genesis block time.

Difficulty ``D`` is measured in *work units* (the cost model's units of training work):
a block is expected to need about ``D`` work units of steps before one of them is a
winning ticket. Cumulative difficulty is the fork-choice score, so the rule must be
exact integer arithmetic that every node computes identically.

The rule, for a child of a parent with difficulty ``D`` whose timestamps are
``parent_timestamp`` and ``timestamp``::

    actual   = max(1, timestamp - parent_timestamp)         # seconds, at least 1
    proposed = D * target // actual                         # proportional control
    low      = D - D * maxAdjustDownPercent // 100          # at most down% easier
    high     = D + max(1, D * maxAdjustUpPercent // 100)    # at most up% harder
    D'       = max(minimumDifficulty, min(high, max(low, proposed)))

The clamps bound how far a single block (whose timestamp its miner chooses, within
the header rules) can move the difficulty; ``high`` is at least ``D + 1`` so a tiny
difficulty can still grow. ``minimumDifficulty`` keeps difficulty (and thus every
block's contribution to the score) positive.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DifficultyParams:
    """The genesis parameters of the retarget rule."""

    target_block_time: int
    """Seconds the chain aims for between blocks."""
    minimum_difficulty: int
    """Floor for every block's difficulty (>= 1: every block adds to the score)."""
    max_adjust_up_percent: int
    """Largest increase from one block to the next, in percent of the parent's."""
    max_adjust_down_percent: int
    """Largest decrease from one block to the next, in percent of the parent's (< 100)."""


def next_difficulty(
    parent_difficulty: int,
    parent_timestamp: int,
    timestamp: int,
    params: DifficultyParams,
) -> int:
    """The difficulty a child block must carry (see the module docstring for the rule)."""
    actual = max(1, timestamp - parent_timestamp)
    proposed = parent_difficulty * params.target_block_time // actual
    low = parent_difficulty - parent_difficulty * params.max_adjust_down_percent // 100
    high = parent_difficulty + max(1, parent_difficulty * params.max_adjust_up_percent // 100)
    return max(params.minimum_difficulty, min(high, max(low, proposed)))
