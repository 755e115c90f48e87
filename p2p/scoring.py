"""Per-peer rate limits, scores and bans, by identity and by remote address.

A peer starts at score 0. Each violation subtracts its penalty; at ``ban_score`` the
peer is disconnected and banned for ``ban_seconds``. Bans are kept by peer identity:
the node id it announced and its dialable address (host and announced listen port),
so a banned peer cannot come straight back on another connection.

Node ids are self-chosen, so identity alone is shed for free. The offences that cost a
validator real work (an invalid block, a blob that does not match its hash: penalties of
``PENALTY_INVALID_BLOCK`` and more) are therefore also counted against the remote IP
address (:class:`AddressStrikes`): ``strikes`` of them within ``window_s``, from any
identities, ban the address itself, for ``ban_seconds`` doubled on each further ban (up
to a day). Cheaper offences (rate, malformed frames) never count against an address, so
several honest nodes behind one address are not cut off by one noisy neighbour, and the
addresses of the node's static peers (operator-configured, e.g. every node of a loopback
devnet on 127.0.0.1) are never banned as a whole: their identities still are.
"""
from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Iterable, Optional

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


@dataclass
class AddressRecord:
    strikes: deque[float] = field(default_factory=deque)
    """Monotonic times of the expensive offences still inside the window."""
    bans: int = 0
    banned_until: float = 0.0
    ban_reason: str = ""


class AddressStrikes:
    """Expensive offences (invalid blocks, corrupt blobs) per remote IP address, whatever
    node id the peer announced; ``strikes`` within ``window_s`` ban the address."""

    MAX_BAN_S = 24 * 3600.0

    def __init__(
        self, strikes: int, window_s: float, ban_seconds: float, exempt: Iterable[str] = (),
        clock: Callable[[], float] = time.monotonic, max_addresses: int = 65536,
    ) -> None:
        self.strikes = strikes
        self.window_s = window_s
        self.ban_seconds = ban_seconds
        self.exempt = set(exempt)
        self.clock = clock
        self.max_addresses = max_addresses
        self.records: dict[str, AddressRecord] = {}

    def strike(self, address: str, reason: str) -> Optional[float]:
        """Count one expensive offence from ``address``; the ban's length in seconds when
        this one bans it, else None. Exempt addresses are never counted."""
        if address in self.exempt:
            return None
        now = self.clock()
        record = self.records.get(address)
        if record is None:
            if len(self.records) >= self.max_addresses:
                self._forget_idle(now)
            record = self.records[address] = AddressRecord()
        while record.strikes and record.strikes[0] <= now - self.window_s:
            record.strikes.popleft()
        record.strikes.append(now)
        if len(record.strikes) < self.strikes:
            return None
        length = min(self.MAX_BAN_S, self.ban_seconds * 2**record.bans)
        record.bans += 1
        record.banned_until = now + length
        record.ban_reason = f"{len(record.strikes)} invalid blocks or blobs from {address} (last: {reason})"
        record.strikes.clear()
        return length

    def banned(self, address: str) -> Optional[str]:
        """The reason ``address`` is banned now, or None."""
        record = self.records.get(address)
        if record is None or record.banned_until <= self.clock() or address in self.exempt:
            return None
        return record.ban_reason

    def _forget_idle(self, now: float) -> None:
        """Bound the table: drop addresses neither banned nor struck within the window."""
        for address in [a for a, r in self.records.items()
                        if r.banned_until <= now and (not r.strikes or r.strikes[-1] <= now - self.window_s)]:
            del self.records[address]
