"""`LruCache`: a thread-safe store by string key that drops the least recently used entries beyond its capacity."""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Callable, Generic, TypeVar

T = TypeVar("T")


class LruCache(Generic[T]):
    """At most `capacity` in the units `size(item)` counts (default: one per item; 0 keeps nothing; an item larger
    than the capacity is not kept). `hits` / `misses` count lookups."""

    def __init__(self, capacity: int, size: Callable[[T], int] = lambda item: 1):
        self.capacity = max(0, int(capacity))
        self.size = size
        self._items: OrderedDict[str, tuple[T, int]] = OrderedDict()
        self._used = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: str) -> T | None:
        with self._lock:
            entry = self._items.get(key)
            if entry is None:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return entry[0]

    def put(self, key: str, item: T) -> None:
        size = self.size(item)
        if size > self.capacity:
            return
        with self._lock:
            old = self._items.pop(key, None)
            self._used += size - (old[1] if old is not None else 0)
            self._items[key] = (item, size)
            while self._used > self.capacity:
                _, (_, dropped) = self._items.popitem(last=False)
                self._used -= dropped

    def __len__(self) -> int:
        return len(self._items)

    @property
    def used(self) -> int:
        """What the entries kept take, in the units of `size`."""
        return self._used
