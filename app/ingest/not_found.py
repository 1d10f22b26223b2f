"""Products a vendor said it does not have, remembered for a short time: the one rule both runtimes keep.

A 404 cannot be stored like a product, so without a memory every miss for an id that does not exist is another
vendor call, and any client can spend a vendor's rate limit by asking for made-up ids. The embedded runtime and
every kafka node remember them in their ``RequestTracker`` (what a miss joins instead of asking again); the Flink
job remembers them too, so the requests of several nodes for one unknown id cost the vendor one call. Bounded (oldest
first out) and short-lived (``not_found_ttl_s``): a product the vendor adds later is found once the time is up, and
sooner by a sync or a webhook, which store it (stored products are read before this memory is asked).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

V = TypeVar("V")
#: (vendor id, vendor product id)
ProductKey = tuple[str, str]


class NotFoundMemory(Generic[V]):
    def __init__(self, ttl_s: float, *, max_entries: int = 20_000, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_s = ttl_s
        self._max_entries = max_entries
        self._clock = clock
        self._entries: OrderedDict[ProductKey, tuple[V, float]] = OrderedDict()

    def get(self, vendor_id: str, vendor_product_id: str) -> V | None:
        """What was remembered for this product, while its time lasts."""
        key = (vendor_id, vendor_product_id)
        entry = self._entries.get(key)
        if entry is None:
            return None
        value, until = entry
        if self._clock() < until:
            return value
        del self._entries[key]
        return None

    def remember(self, vendor_id: str, vendor_product_id: str, value: V) -> None:
        if self.ttl_s <= 0:
            return
        key = (vendor_id, vendor_product_id)
        self._entries.pop(key, None)
        self._entries[key] = (value, self._clock() + self.ttl_s)
        while len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)

    def forget_vendor(self, vendor_id: str) -> None:
        """A vendor removed or redefined (another base URL may well have the product)."""
        for key in [k for k in self._entries if k[0] == vendor_id]:
            del self._entries[key]

    def __len__(self) -> int:
        return len(self._entries)
