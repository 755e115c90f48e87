"""eth_subscribe: per-connection subscriptions and what each sends on chain events."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from eth.abc import SignedTransactionAPI

from rpc import encoding
from rpc.hexcodec import data as hexdata
from rpc.errors import LimitExceeded
from rpc.events import ChainChange
from rpc.filters import LogCriteria, new_id


@dataclass(frozen=True)
class Subscription:
    kind: str  # "newHeads" | "logs" | "newPendingTransactions"
    criteria: LogCriteria | None = None
    #: newPendingTransactions with ``true``: send whole transactions, not hashes.
    full_transactions: bool = False


class SubscriptionSet:
    """The subscriptions of one connection, capped at ``limit``."""

    def __init__(self, limit: int, send: Callable[[str, object], None]) -> None:
        self.limit = limit
        self.send = send
        self.active: dict[str, Subscription] = {}

    def add(self, subscription: Subscription) -> str:
        if len(self.active) >= self.limit:
            raise LimitExceeded(f"too many subscriptions on this connection (at most {self.limit})")
        sub_id = new_id()
        self.active[sub_id] = subscription
        return sub_id

    def remove(self, sub_id: str) -> bool:
        return self.active.pop(sub_id, None) is not None

    def on_chain_change(self, change: ChainChange) -> None:
        for sub_id, sub in list(self.active.items()):
            if sub.kind == "newHeads":
                for block, _ in change.added:
                    self.send(sub_id, encoding.header_json(block.header))
            elif sub.kind == "logs" and sub.criteria is not None:
                for log in sub.criteria.logs_of_change(change):
                    self.send(sub_id, log)

    def on_new_transaction(self, tx: SignedTransactionAPI) -> None:
        for sub_id, sub in list(self.active.items()):
            if sub.kind == "newPendingTransactions":
                self.send(sub_id, encoding.transaction_json(tx) if sub.full_transactions else hexdata(tx.hash))
