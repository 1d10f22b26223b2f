"""The arena cap is applied where glibc is (these machines), and asking for none changes nothing."""

from __future__ import annotations

import platform

import pytest

from app.allocator import limit_malloc_arenas


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt(M_ARENA_MAX) is glibc's")
def test_glibc_accepts_the_cap() -> None:
    assert limit_malloc_arenas(2) is True


def test_zero_leaves_the_default() -> None:
    assert limit_malloc_arenas(0) is False
