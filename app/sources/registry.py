"""One live source per vendor.

Each vendor gets its own source and HTTP client, so its connection pool and concurrency limit are its own: a
slow vendor cannot starve the others. A source is rebuilt when its vendor's settings change.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from app.domain.models import Vendor
from app.sources.port import VendorSource


class SourceRegistry:
    def __init__(self, factory: Callable[[Vendor], VendorSource]) -> None:
        self._factory = factory
        self._sources: dict[str, tuple[Vendor, VendorSource]] = {}
        self._retired: set[asyncio.Task[None]] = set()

    def get(self, vendor: Vendor) -> VendorSource:
        current = self._sources.get(vendor.id)
        if current is not None and current[0] == vendor:
            return current[1]
        source = self._factory(vendor)
        self._sources[vendor.id] = (vendor, source)
        if current is not None:
            self._retire(current[1])
        return source

    def drop(self, vendor_id: str) -> None:
        current = self._sources.pop(vendor_id, None)
        if current is not None:
            self._retire(current[1])

    def _retire(self, source: VendorSource) -> None:
        """Close a replaced source in the background: requests still using it may finish first."""
        task = asyncio.get_running_loop().create_task(source.aclose())
        self._retired.add(task)
        task.add_done_callback(self._retired.discard)

    async def aclose(self) -> None:
        sources = [s for _, s in self._sources.values()]
        self._sources.clear()
        await asyncio.gather(*(s.aclose() for s in sources), *self._retired, return_exceptions=True)
