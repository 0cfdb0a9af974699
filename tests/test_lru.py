"""`LruCache`: least recently used out first, within a capacity counted in items or in the units `size` gives."""

import pytest

from backend.core.lru import LruCache


# capacity, size of an entry (None: one per item), keys put (a key put again is refreshed), keys read → kept
@pytest.mark.parametrize("capacity,size,put,kept", [
    (2, None, "abc", "bc"),
    (2, None, "abac", "ac"),
    (0, None, "ab", ""),
    (5, 2, "abc", "bc"),  # two entries of 2 fit in 5
    (5, 6, "ab", ""),  # an entry larger than the capacity is not kept
])
def test_capacity(capacity, size, put, kept):
    cache = LruCache(capacity) if size is None else LruCache(capacity, lambda item: size)
    for key in put:
        cache.put(key, key.upper())
    assert {k for k in "abc" if cache.get(k) == k.upper()} == set(kept)
    assert len(cache) == len(kept) and cache.used == len(kept) * (size or 1)


def test_a_read_refreshes_and_lookups_are_counted():
    cache = LruCache(2)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1  # a is now the most recent
    cache.put("c", 3)
    assert cache.get("b") is None and cache.get("a") == 1 and cache.get("c") == 3
    assert (cache.hits, cache.misses) == (3, 1)
