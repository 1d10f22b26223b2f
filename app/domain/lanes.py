"""Interactive and bulk work: which lane the code running now belongs to.

A shopper's miss or a webhook (interactive) must never wait behind a catalog sync (bulk). The lane travels as a
context variable, so the pieces that arbitrate between the two (the in-process queue's workers, the vendor's HTTP
concurrency limit, the SQLite writer) see it without every call in between passing it on. Anything not marked bulk is
interactive: an admin write or a webhook is short and a person waits for it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from enum import StrEnum


class Lane(StrEnum):
    INTERACTIVE = "interactive"
    BULK = "bulk"


_current: ContextVar[Lane] = ContextVar("catalog_lane", default=Lane.INTERACTIVE)


def current_lane() -> Lane:
    return _current.get()


@contextlib.contextmanager
def in_lane(lane: Lane) -> Iterator[None]:
    """Run the block (and the tasks it starts) as ``lane`` work."""
    token = _current.set(lane)
    try:
        yield
    finally:
        _current.reset(token)
