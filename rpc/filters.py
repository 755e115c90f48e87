"""Log criteria, and the filters clients install and poll (eth_newFilter and friends).

Filters are fed by head changes and pool events (``rpc/server.py`` routes them here) and
hand back what arrived since the last poll. A filter not polled for ``filter_timeout_s``
(5 minutes, like geth) is removed by the periodic sweep.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Iterable, Literal, Sequence, Union

from eth.abc import BlockAPI, LogAPI, ReceiptAPI
from eth_bloom import BloomFilter

from rpc import encoding
from rpc.hexcodec import data as hexdata
from rpc.errors import InvalidParams, LimitExceeded, ResourceNotFound
from rpc.events import ChainChange
from rpc.hexcodec import parse_address, parse_hash
from rpc.jsontypes import JsonObject

if TYPE_CHECKING:
    from rpc.params import FilterQuery

#: At most this many undelivered items kept per filter (oldest dropped first).
MAX_BUFFERED = 10_000


@dataclass(frozen=True)
class LogCriteria:
    """Which logs match: any of ``addresses`` (empty = any), and per topic position
    None (any) or a set of accepted 32-byte topics."""

    addresses: frozenset[bytes] = frozenset()
    topics: tuple[frozenset[bytes] | None, ...] = ()

    @classmethod
    def parse(cls, obj: JsonObject) -> "LogCriteria":
        raw_address = obj.get("address")
        if raw_address is None:
            addresses: frozenset[bytes] = frozenset()
        elif isinstance(raw_address, list):
            addresses = frozenset(parse_address(a) for a in raw_address)
        else:
            addresses = frozenset({parse_address(raw_address)})
        raw_topics = obj.get("topics")
        if raw_topics is None:
            raw_topics = []
        if not isinstance(raw_topics, list):
            raise InvalidParams("topics must be an array")
        if len(raw_topics) > 4:
            raise InvalidParams("too many topics (at most 4)")
        topics: list[frozenset[bytes] | None] = []
        for position in raw_topics:
            if position is None:
                topics.append(None)
            elif isinstance(position, list):
                topics.append(frozenset(parse_hash(t) for t in position if t is not None) if None not in position else None)
            else:
                topics.append(frozenset({parse_hash(position)}))
        return cls(addresses, tuple(topics))

    def matches(self, log: LogAPI) -> bool:
        """Does a py-evm log (address bytes, int topics) match?"""
        if self.addresses and log.address not in self.addresses:
            return False
        if len(self.topics) > len(log.topics):
            return False
        for wanted, topic in zip(self.topics, log.topics):
            if wanted is not None and _topic_bytes(topic) not in wanted:
                return False
        return True

    def may_match_bloom(self, bloom: int) -> bool:
        """False when the block's bloom proves no log of it can match."""
        bloom_filter = BloomFilter(bloom)
        if self.addresses and not any(a in bloom_filter for a in self.addresses):
            return False
        for wanted in self.topics:
            if wanted is not None and not any(t in bloom_filter for t in wanted):
                return False
        return True

    def logs_of(self, block: BlockAPI, receipts: Sequence[ReceiptAPI], *, removed: bool = False) -> list[encoding.LogJson]:
        """The matching logs of one block as JSON objects."""
        out: list[encoding.LogJson] = []
        log_index = 0
        for tx_index, (tx, receipt) in enumerate(zip(block.transactions, receipts)):
            for log in receipt.logs:
                if self.matches(log):
                    position = encoding.LogPosition(block.hash, block.number, tx.hash, tx_index, log_index, block.header.timestamp)
                    out.append(encoding.log_json(log, position, removed=removed))
                log_index += 1
        return out

    def logs_of_change(self, change: ChainChange) -> list[encoding.LogJson]:
        """Logs a head change removed (``removed: true``, newest first) then added."""
        out: list[encoding.LogJson] = []
        for block, receipts in change.removed:
            out.extend(self.logs_of(block, receipts, removed=True))
        for block, receipts in change.added:
            out.extend(self.logs_of(block, receipts))
        return out


def _topic_bytes(topic: int | bytes) -> bytes:
    return int(topic).to_bytes(32, "big") if isinstance(topic, int) else bytes(topic)


def new_id() -> str:
    """A random 128-bit id as a hex quantity (no leading zeros), like geth's ids."""
    return hex(int.from_bytes(os.urandom(16), "big") or 1)


FilterKind = Literal["logs", "blocks", "pending"]
FilterItem = Union[str, encoding.LogJson]
"""What a filter hands back: block or transaction hashes, or log objects."""


@dataclass
class Filter:
    """An installed filter and what it has collected since the last poll."""

    kind: FilterKind
    criteria: LogCriteria | None = None
    #: For log filters: the eth_newFilter query, replayed by eth_getFilterLogs.
    query: "FilterQuery | None" = None
    buffer: list[FilterItem] = field(default_factory=list)
    last_poll: float = field(default_factory=time.monotonic)

    def push(self, items: Iterable[FilterItem]) -> None:
        self.buffer.extend(items)
        if len(self.buffer) > MAX_BUFFERED:
            del self.buffer[: len(self.buffer) - MAX_BUFFERED]


class FilterManager:
    """All installed filters of one app."""

    def __init__(self, max_filters: int, timeout_s: float) -> None:
        self.max_filters = max_filters
        self.timeout_s = timeout_s
        self.filters: dict[str, Filter] = {}

    def install(self, flt: Filter) -> str:
        if len(self.filters) >= self.max_filters:
            raise LimitExceeded(f"too many filters (at most {self.max_filters})")
        filter_id = new_id()
        self.filters[filter_id] = flt
        return filter_id

    def get(self, filter_id: str) -> Filter:
        flt = self.filters.get(filter_id)
        if flt is None:
            raise ResourceNotFound("filter not found")
        return flt

    def poll(self, filter_id: str) -> list[FilterItem]:
        """What arrived since the last poll; resets the idle clock."""
        flt = self.get(filter_id)
        flt.last_poll = time.monotonic()
        items, flt.buffer = flt.buffer, []
        return items

    def uninstall(self, filter_id: str) -> bool:
        return self.filters.pop(filter_id, None) is not None

    def on_chain_change(self, change: ChainChange) -> None:
        for flt in self.filters.values():
            if flt.kind == "blocks":
                flt.push(hexdata(block.hash) for block, _ in change.added)
            elif flt.kind == "logs" and flt.criteria is not None:
                flt.push(flt.criteria.logs_of_change(change))

    def on_new_transaction(self, tx_hash: bytes) -> None:
        for flt in self.filters.values():
            if flt.kind == "pending":
                flt.push([hexdata(tx_hash)])

    def expire(self, now: float | None = None) -> int:
        """Remove filters idle longer than the timeout; returns how many."""
        now = time.monotonic() if now is None else now
        stale = [fid for fid, flt in self.filters.items() if now - flt.last_poll > self.timeout_s]
        for fid in stale:
            del self.filters[fid]
        return len(stale)
