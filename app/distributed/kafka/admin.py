"""Topics the service needs, created when missing (every admin call carries a timeout)."""

from __future__ import annotations

import logging

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from app.distributed.kafka.config import ADMIN_TIMEOUT_S, admin_config
from app.settings import Settings

log = logging.getLogger(__name__)


def topic_specs(settings: Settings) -> dict[str, dict[str, str]]:
    """Name -> topic configs. Vendor definitions are compacted: the latest definition (or tombstone) per vendor."""
    return {
        settings.kafka_topic_vendor_requests: {},
        settings.kafka_topic_product_requests: {},
        settings.kafka_topic_updates: {},
        settings.kafka_topic_interactive_updates: {},
        settings.kafka_topic_vendors: {"cleanup.policy": "compact"},
        settings.kafka_topic_dead_letters: {},
        settings.kafka_topic_scheduler: {},
    }


def partitions(settings: Settings, topic: str) -> int:
    """The scheduler's topic has one partition (one owner); the others ``kafka_partitions``."""
    return 1 if topic == settings.kafka_topic_scheduler else settings.kafka_partitions


def existing_topics(admin: AdminClient, timeout_s: float = ADMIN_TIMEOUT_S) -> set[str]:
    """Raises ``KafkaException`` when the broker does not answer within ``timeout_s``."""
    return set(admin.list_topics(timeout=timeout_s).topics)


def ensure_topics(
    settings: Settings, admin: AdminClient | None = None, timeout_s: float = ADMIN_TIMEOUT_S
) -> list[str]:
    """Create the missing topics with ``kafka_partitions`` partitions; returns the names created."""
    admin = admin or AdminClient(admin_config(settings))
    specs = topic_specs(settings)
    existing = existing_topics(admin, timeout_s)  # one metadata request for all of them
    missing = [name for name in specs if name not in existing]
    if not missing:
        return []
    futures = admin.create_topics(
        [
            NewTopic(
                name,
                num_partitions=partitions(settings, name),
                replication_factor=settings.kafka_replication_factor,
                config=specs[name],
            )
            for name in missing
        ],
        operation_timeout=timeout_s,
        request_timeout=timeout_s,
    )
    created = []
    for name, future in futures.items():
        try:
            future.result(timeout=timeout_s * 2)
            created.append(name)
        except KafkaException as exc:
            if exc.args and getattr(exc.args[0], "name", lambda: "")() == "TOPIC_ALREADY_EXISTS":
                continue  # another node created it in between
            raise
    if created:
        log.info("created Kafka topics %s (%d partitions)", ", ".join(created), settings.kafka_partitions)
    return created
