"""Vendor definitions to the compacted ``catalog_vendors`` topic (key = vendor id, tombstone on delete).

The Flink job needs them to call vendors, and every node applies them to its own SQLite so nodes agree. A change
made while the broker is away is kept and published when it returns: the local write has already happened, and
failing the admin call would leave the node and the topic disagreeing anyway.

Every vendor of this node is published again only when this node had to create ``catalog_vendors`` (start-up on a
new broker, or a broker that lost its storage, as the memory-only Tansu does on a restart): the topic is the
definitions' only record for the job and the other nodes. It is not republished on a plain reconnect or a restart
with the topic present: a node that missed a deletion while it was away would bring the deleted vendor back for
everyone. The consequence: vendors registered on a node before the kafka runtime was switched on reach the topic only
if that node creates it (or when saved again); other nodes receive them from the topic.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection

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
        queue.on_reconnect(self.reconnected)

    @property
    def pending(self) -> int:
        return len(self._pending)

    async def saved(self, vendor: Vendor) -> None:
        self._pending[vendor.id] = vendor
        await self.flush()

    async def deleted(self, vendor_id: str) -> None:
        self._pending[vendor_id] = None
        await self.flush()

    async def reconnected(self, created: Collection[str]) -> None:
        """Changes kept while the broker was away go out; all definitions only into a topic created just now."""
        if self._topic in created:
            await self.republish()
        else:
            await self.flush()

    async def republish(self) -> None:
        vendors = self._vendors()
        log.info("publishing this node's %d vendor definitions to %s", len(vendors), self._topic)
        for vendor in vendors:
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
