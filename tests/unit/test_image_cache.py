"""The thumbnail disk cache: bounded in bytes, least recently used out first, the order kept across a restart."""

from __future__ import annotations

import os
from pathlib import Path

from app.images.cache import DiskCache


def test_the_least_recently_used_goes_first_and_the_size_stays_bounded(tmp_path: Path) -> None:
    cache = DiskCache(tmp_path, max_bytes=300)
    cache.open()
    for key in "abc":
        cache.put(key, key.encode() * 100)
    assert cache.get("a") == b"a" * 100  # a is now the most recent
    cache.put("d", b"d" * 100)
    assert "b" not in cache and cache.get("b") is None
    assert [cache.get(k) is not None for k in "acd"] == [True, True, True]
    assert cache.size == 300 == sum(f.stat().st_size for f in tmp_path.iterdir())
    assert cache.evictions == 1


def test_a_body_larger_than_the_cache_is_not_kept(tmp_path: Path) -> None:
    cache = DiskCache(tmp_path, max_bytes=10)
    cache.open()
    cache.put("big", b"x" * 11)
    assert len(cache) == 0 and list(tmp_path.iterdir()) == []


def test_a_restart_keeps_the_entries_and_their_order(tmp_path: Path) -> None:
    first = DiskCache(tmp_path, max_bytes=300)
    first.open()
    for i, key in enumerate("abc"):
        first.put(key, b"." * 100)
        os.utime(tmp_path / key, ns=(i * 10**9, i * 10**9))  # distinct times, oldest first
    again = DiskCache(tmp_path, max_bytes=300)
    again.open()
    assert again.size == 300
    again.put("d", b"." * 100)
    assert "a" not in again and {"b", "c", "d"} <= {p.name for p in tmp_path.iterdir()}


def test_a_smaller_cap_after_a_restart_evicts_at_once(tmp_path: Path) -> None:
    first = DiskCache(tmp_path, max_bytes=1000)
    first.open()
    for key in "abcd":
        first.put(key, b"." * 100)
    smaller = DiskCache(tmp_path, max_bytes=250)
    smaller.open()
    assert smaller.size <= 250 and len(list(tmp_path.iterdir())) == 2
