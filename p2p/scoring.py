"""Per-peer rate limits, scores and bans.

A peer starts at score 0. Each violation subtracts its penalty; at ``ban_score`` the
peer is disconnected and banned for ``ban_seconds``. Bans are kept by peer identity:
the node id it announced and its dialable address (host and announced listen port),
so a banned peer cannot come straight back on another connection. Nothing is banned by
IP alone, since every devnet node shares 127.0.0.1.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Optional

# Penalties (points off the score). An invalid block costs a ban at once.
PENALTY_INVALID_BLOCK = 100
PENALTY_LYING_HEAD = 50
PENALTY_BAD_RESPONSE = 40
PENALTY_RATE = 5
PENALTY_TIMEOUT = 10
PENALTY_BAD_TX = 2


class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` saved up."""

    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.burst = float(burst)
        self.tokens = float(burst)
        self.clock = clock
        self.stamp = clock()

    def take(self, n: float = 1.0) -> bool:
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= n:
            self.tokens -= n
            return True
        return False


@dataclass
class PeerRecord:
    score: int = 0
    banned_until: float = 0.0
    ban_reason: str = ""
    violations: list[str] = field(default_factory=list)


class PeerBook:
    """Scores and bans of every peer this node has met, by identity key."""

    def __init__(self, ban_score: int, ban_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.ban_score = ban_score
        self.ban_seconds = ban_seconds
        self.clock = clock
        self.records: dict[str, PeerRecord] = {}

    def record(self, key: str) -> PeerRecord:
        return self.records.setdefault(key, PeerRecord())

    def penalise(self, keys: tuple[str, ...], penalty: int, reason: str) -> bool:
        """Subtract ``penalty`` from each key's score; True when the peer is now banned."""
        banned = False
        for key in keys:
            rec = self.record(key)
            rec.score -= penalty
            rec.violations = (rec.violations + [reason])[-10:]
            if rec.score <= self.ban_score:
                rec.banned_until = self.clock() + self.ban_seconds
                rec.ban_reason = reason
                banned = True
        return banned

    def ban(self, keys: tuple[str, ...], reason: str) -> None:
        for key in keys:
            rec = self.record(key)
            rec.score = min(rec.score, self.ban_score)
            rec.banned_until = self.clock() + self.ban_seconds
            rec.ban_reason = reason

    def banned(self, keys: tuple[str, ...]) -> Optional[str]:
        """The ban reason if any key is banned now, else None. An expired ban resets
        the score to half the ban threshold: one more offence bans again."""
        now = self.clock()
        for key in keys:
            rec = self.records.get(key)
            if rec is None or not rec.banned_until:
                continue
            if rec.banned_until > now:
                return rec.ban_reason
            rec.banned_until = 0.0
            rec.score = self.ban_score // 2
        return None

    def score(self, key: str) -> int:
        rec = self.records.get(key)
        return 0 if rec is None else rec.score
