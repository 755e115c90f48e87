"""A least-recently-used map bounded by the sizes its values are given (bytes).

What the verified-dataset cache (consensus/jobs.py) and the eth_call answer cache
(rpc/call_cache.py) keep their entries in. Thread-safe (one short lock per operation).
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Callable, Generic, Hashable, Optional, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class SizedLRU(Generic[K, V]):
    """``key -> value`` with a size each; the least recently used go first so that the
    sizes add up to at most ``max_bytes``; a value larger than that alone is not kept."""

    def __init__(self, max_bytes: int, size_of: Optional[Callable[[V], int]] = None) -> None:
        self.max_bytes = max_bytes
        self.size_of = size_of
        self.bytes = 0
        self._items: OrderedDict[K, tuple[V, int]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: K) -> Optional[V]:
        with self._lock:
            item = self._items.get(key)
            if item is None:
                return None
            self._items.move_to_end(key)
            return item[0]

    def put(self, key: K, value: V, size: Optional[int] = None) -> bool:
        """Keep ``value`` (replacing the key's old one), evicting the oldest to fit;
        False, and nothing changed, when its size alone is over the bound. ``size``
        defaults to ``size_of(value)``."""
        if size is None:
            if self.size_of is None:
                raise TypeError("put needs a size: this map has no size_of")
            size = self.size_of(value)
        if size > self.max_bytes:
            return False
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self.bytes -= old[1]
            self._items[key] = (value, size)
            self.bytes += size
            while self.bytes > self.max_bytes:
                _, (_, freed) = self._items.popitem(last=False)
                self.bytes -= freed
        return True

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self.bytes = 0

    def __contains__(self, key: object) -> bool:
        with self._lock:
            return key in self._items

    def __len__(self) -> int:
        return len(self._items)
