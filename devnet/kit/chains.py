"""Chains in one process whose time the caller controls.

Block import refuses a block whose timestamp is too far ahead of the node's clock, and
block building stamps the clock's time. Kit chains run on a :class:`FixedClock` set far
ahead of the genesis, and their blocks are stamped ``BLOCK_TIME`` seconds apart, so a
thousand blocks build in a second of wall time and every run builds the same blocks.
"""
from __future__ import annotations

BLOCK_TIME = 5
"""Seconds between the timestamps of consecutive kit blocks (the default genesis' target)."""

FAR_AHEAD = 10**7
"""How far past the genesis timestamp kit clocks stand: room for 2,000,000 blocks."""


class FixedClock:
    """A clock that stands still until its owner moves ``now`` by hand."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


__all__ = ["BLOCK_TIME", "FAR_AHEAD", "FixedClock"]
