"""Fewer glibc malloc arenas, so a sync's threads do not each keep their own heap.

glibc gives every thread that contends for the allocator an arena of its own, up to eight per core, and freed memory
stays in the arena it came from. The service maps a sync's pages in a thread pool, writes on its own thread and
serves reads from a pool: each arena kept the high-water mark of a sync's pages. Measured with a 30k-product first
sync (RSS after it, twice each): 361-362 MB with glibc's default, 317-343 MB with two arenas through the
environment, 318-339 MB through this call (359-363 MB with it off), no slower ingest. Setting
``MALLOC_ARENA_MAX`` in the environment does the same but must be done by whoever starts the process; ``mallopt``
does it from inside, for the arenas created afterwards (the lifespan calls it before any adapter starts a thread).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging
from typing import Any

log = logging.getLogger(__name__)

_M_ARENA_MAX = -8  # <malloc.h>


@functools.cache
def _libc() -> ctypes.CDLL | None:
    """Found once: ``find_library`` runs ``ldconfig`` in a subprocess, and the trim runs at every sync's end."""
    library = ctypes.util.find_library("c")
    if library is None:
        return None
    try:
        return ctypes.CDLL(library)
    except OSError:
        return None


def _libc_function(name: str) -> Any | None:
    return getattr(_libc(), name, None)


def limit_malloc_arenas(arenas: int) -> bool:
    """Cap glibc's arenas at ``arenas`` (0: leave the default); False where there is no glibc (musl, macOS)."""
    mallopt = _libc_function("mallopt") if arenas > 0 else None
    if mallopt is None:
        return False
    applied = bool(mallopt(_M_ARENA_MAX, arenas))
    if not applied:
        log.warning("mallopt(M_ARENA_MAX, %d) refused: glibc's default arenas stay", arenas)
    return applied


def release_free_memory() -> bool:
    """Hand the heap's free pages back to the system (``malloc_trim``); False where there is no glibc.

    Called once the adapters are built: compiling the matcher's 250 trees into one function parses ~40 MB of
    source (its AST is freed at once, the function is small), and without this the process kept about 40 MB of it
    (measured: RSS +59 MB for the compile, -37 MB after the trim). Compiling the trees in parts instead would
    keep less but doubles the cost of every pair scored."""
    trim = _libc_function("malloc_trim")
    return trim is not None and bool(trim(0))
