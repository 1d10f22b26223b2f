"""Vendor definitions to the compacted ``catalog_vendors`` topic (key = vendor id, tombstone on delete).

The Flink job needs them to call vendors, and every node applies them to its own SQLite so nodes agree. A change
made while the broker is away is kept and published when it returns: the local write has already happened, and
failing the admin call would leave the node and the topic disagreeing anyway. Each time the broker becomes
reachable (start-up included) every vendor of this node is published again: vendors registered before this runtime
was switched on reach the job, and a broker that lost its storage gets them back. Republishing an unchanged
definition is harmless (compacted topic, nodes skip definitions they already hold); the price is that a node which
missed a deletion while it was down publishes that vendor again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import orjson

from app.adapters.kafka.queue import KafkaRequestQueue
from app.domain.changelog import vendor_to_dict
from app.domain.models import Vendor
from app.errors import ServiceUnavailable

log = logging.getLogger(__name__)


class KafkaVendorFeed:
    def __init__(self, queue: KafkaRequestQueue, topic: str, vendors: Callable[[], list[Vendor]]) -> None:
        self._queue = queue
        self._topic = topic
        self._vendors = vendors
        # vendor id -> definition still to publish (None: a tombstone)
        self._pending: dict[str, Vendor | None] = {}
        queue.on_reconnect(self.republish)

    @property
    def pending(self) -> int:
        return len(self._pending)

    async def saved(self, vendor: Vendor) -> None:
        self._pending[vendor.id] = vendor
        await self.flush()

    async def deleted(self, vendor_id: str) -> None:
        self._pending[vendor_id] = None
        await self.flush()

    async def republish(self) -> None:
        for vendor in self._vendors():
            self._pending.setdefault(vendor.id, vendor)
        await self.flush()

    async def flush(self) -> None:
        for vendor_id, vendor in list(self._pending.items()):
            value = None if vendor is None else orjson.dumps(vendor_to_dict(vendor))
            try:
                await self._queue.send(self._topic, vendor_id, value)
            except ServiceUnavailable as exc:
                log.info("vendor definition %s kept for later: %s", vendor_id, exc.message)
                return
            if self._pending.get(vendor_id) is vendor:  # not changed again while it was being sent
                del self._pending[vendor_id]
