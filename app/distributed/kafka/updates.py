"""A node's own updates to ``product_updates``: the changes of the webhooks it receives, the placeholders of the
images it thumbnails first and the admins' unification overrides (runtime=kafka).

Keyed by vendor id like the Flink job's updates, so one vendor's changes stay in order with its syncs; every node,
the publishing one included, applies them through its changelog consumer. ``publish`` returns once the broker has
acknowledged the message and raises ``ServiceUnavailable`` when it cannot (the vendor then delivers it again).
"""

from __future__ import annotations

from app.distributed.kafka.queue import KafkaRequestQueue
from app.domain.matching import OverrideChange
from app.domain.queries import StoredImage
from app.domain.webhooks import WebhookChange
from app.domain.wire import encode, override_message, placeholder_message, webhook_message


class KafkaChangePublisher:
    def __init__(self, queue: KafkaRequestQueue, topic: str) -> None:
        self._queue = queue
        self._topic = topic

    async def publish(self, change: WebhookChange) -> None:
        await self._queue.send(self._topic, change.vendor_id, encode(webhook_message(change)))

    async def publish_placeholder(self, image: StoredImage, placeholder: str) -> None:
        """Every node (this one too) applies it from the changelog, at the same position."""
        await self._queue.send(self._topic, image.vendor_id, encode(placeholder_message(image, placeholder)))

    async def publish_override(self, change: OverrideChange) -> None:
        await self._queue.send(self._topic, change.offer[0], encode(override_message(change)))
