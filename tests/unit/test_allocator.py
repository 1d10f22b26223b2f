"""The arena cap is applied where glibc is (these machines), and asking for none changes nothing."""

from __future__ import annotations

import platform
from pathlib import Path

import pytest

from app.allocator import limit_malloc_arenas, release_free_memory


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt(M_ARENA_MAX) is glibc's")
def test_glibc_accepts_the_cap() -> None:
    assert limit_malloc_arenas(2) is True


def test_zero_leaves_the_default() -> None:
    assert limit_malloc_arenas(0) is False


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc_trim is glibc's")
def test_freed_memory_goes_back_to_the_system() -> None:
    """A large freed allocation's pages leave the resident set when trimmed."""

    def rss_kb() -> int:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError("no VmRSS")

    chunks = [bytes(20_000) for _ in range(3_000)]  # ~60 MB under the mmap threshold: on the heap itself
    del chunks[::2]  # freed in the middle of the heap: nothing for free() itself to give back
    before = rss_kb()
    assert release_free_memory() is True
    assert rss_kb() < before - 10_000
