"""Bulk writes cut by time, not by count: how many offers make one part of about ``slice_s``.

One transaction for many offers is what makes a sync fast (each commit rewrites the index pages it touched), but
while it runs SQLite's one writer is taken and a shopper's miss waits. So a sync's batch is written in parts of about
``slice_s`` each, and between two parts the writer lets a waiting interactive write in (``Connections.bulk``: it
commits only then, so an idle service still writes the whole batch in one transaction). The number of offers per
part follows the measured write rate (a moving average): a slow disk or a heavy index gets smaller parts.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TypeVar

T = TypeVar("T")
U = TypeVar("U")

#: Bounds of one transaction's offers: never so few that commits dominate, never so many a miss waits long.
MIN_OFFERS = 10
MAX_OFFERS = 5000
START_RATE = 20_000.0  # offers/s before anything was measured


class BulkSlicer:
    def __init__(self, slice_s: float) -> None:
        self.slice_s = slice_s
        self.rate = START_RATE

    @property
    def size(self) -> int:
        return max(MIN_OFFERS, min(MAX_OFFERS, int(self.rate * self.slice_s)))

    def took(self, offers: int, seconds: float) -> None:
        if offers >= MIN_OFFERS and seconds > 0:
            self.rate = 0.7 * self.rate + 0.3 * (offers / seconds)

    def parts(self, items: list[T]) -> Iterator[list[T]]:
        """Consecutive parts of about ``size`` items (the size read afresh for each part)."""
        start = 0
        while start < len(items):
            end = start + self.size
            yield items[start:end]
            start = end

    def groups(self, batches: Sequence[tuple[U, Sequence[T]]]) -> Iterator[Sequence[tuple[U, Sequence[T]]]]:
        """Consecutive batches, kept whole (a changelog message is one position), grouped up to ``size`` items."""
        group: list[tuple[U, Sequence[T]]] = []
        count = 0
        for batch in batches:
            if group and count + len(batch[1]) > self.size:
                yield group
                group, count = [], 0
            group.append(batch)
            count += len(batch[1])
        if group:
            yield group
