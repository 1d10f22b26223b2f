"""librdkafka configuration from ``Settings``: connection and security shared by every client, then per role.

The defaults favour latency and quick recovery on small machines: producers do not linger, consumers do not wait
long for a fetch, a short session timeout makes the first group join quick (Tansu answers it after about half of
``session.timeout.ms``), and reconnect back-off is capped at a second so a returning broker is noticed at once.
"""

from __future__ import annotations

import socket
from typing import Any

from app.settings import Settings

#: How long a request publish waits for the broker's acknowledgement before the API answers 503.
DELIVERY_TIMEOUT_S = 5.0
#: Timeout of every admin / metadata call (an admin call without one can hang against Tansu).
ADMIN_TIMEOUT_S = 2.0


def node_id(settings: Settings) -> str:
    return settings.node_id or f"{socket.gethostname()}-{settings.port}"


def group_id(settings: Settings) -> str:
    """Each node has its own group, so every node receives every update."""
    return f"catalog-node-{node_id(settings)}"


def client_config(settings: Settings) -> dict[str, Any]:
    config: dict[str, Any] = {
        "bootstrap.servers": settings.kafka_bootstrap,
        "client.id": f"catalog-{node_id(settings)}",
        "security.protocol": settings.kafka_security_protocol,
        "reconnect.backoff.ms": 100,
        "reconnect.backoff.max.ms": 1000,
        "socket.connection.setup.timeout.ms": 5000,
        "topic.metadata.refresh.interval.ms": 5000,
    }
    if settings.kafka_sasl_mechanism:
        config["sasl.mechanism"] = settings.kafka_sasl_mechanism
    if settings.kafka_sasl_username is not None:
        config["sasl.username"] = settings.kafka_sasl_username
    if settings.kafka_sasl_password is not None:
        config["sasl.password"] = settings.kafka_sasl_password
    if settings.kafka_ssl_ca_location is not None:
        config["ssl.ca.location"] = str(settings.kafka_ssl_ca_location)
    return config


def producer_config(settings: Settings) -> dict[str, Any]:
    """Not idempotent on purpose: a broker that restarts empty (Tansu's memory storage) forgets producer ids, which
    is fatal to an idempotent producer; requests are de-duplicated by the tracker and updates applied idempotently."""
    return {
        **client_config(settings),
        "acks": "all",
        "linger.ms": 1,
        # The Java client's partitioner (murmur2 of the key): a node's updates of a vendor land on the partition of
        # the Flink job's updates of that vendor, so they keep their order (librdkafka's default hashes with CRC32).
        "partitioner": "murmur2_random",
        # Undelivered messages are dropped a little after the API gave up on them (it answered 503 by then).
        "message.timeout.ms": int(DELIVERY_TIMEOUT_S * 1000) + 1000,
    }


def consumer_config(settings: Settings, group: str) -> dict[str, Any]:
    """At-least-once: offsets are stored only after the update was applied, and committed in the background.

    ``earliest`` because a new node must read the whole changelog (and Tansu's "latest" is wrong anyway).
    """
    return {
        **client_config(settings),
        "group.id": group,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": True,
        "enable.auto.offset.store": False,
        "auto.commit.interval.ms": 1000,
        "session.timeout.ms": settings.kafka_session_timeout_ms,
        "heartbeat.interval.ms": max(500, settings.kafka_session_timeout_ms // 3),
        "fetch.wait.max.ms": 10,
    }


def admin_config(settings: Settings) -> dict[str, Any]:
    return client_config(settings)
