"""`catalog broker` runs a Kafka-protocol broker that real clients use; the client settings librdkafka accepts."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import certifi
import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient

from app.distributed.kafka.admin import topic_specs
from app.distributed.kafka.broker import port_open
from app.distributed.kafka.config import client_config, consumer_config, group_id, producer_config
from app.settings import Settings
from tests.kafka_support import consume, produce
from tests.support import ROOT, free_port, service_env


@pytest.mark.kafka
def test_catalog_broker_serves_kafka_clients_until_sigterm(tmp_path: Path) -> None:
    port = free_port()
    env = service_env(tmp_path / "unused.db")
    proc = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "broker", "--port", str(port)],
        cwd=ROOT,
        env={**env, "COLUMNS": "250", "NO_COLOR": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        lines = []
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            lines.append(line)
            if line.startswith("CATALOG_KAFKA_BOOTSTRAP="):
                break
        bootstrap = f"127.0.0.1:{port}"
        assert lines[-1].strip() == f"CATALOG_KAFKA_BOOTSTRAP={bootstrap}", lines
        admin = AdminClient({"bootstrap.servers": bootstrap})
        topics = admin.list_topics(timeout=5).topics
        del admin
        assert set(topic_specs(Settings())) <= set(topics)
        assert len(topics["product_updates"].partitions) == Settings().kafka_partitions
        produce(bootstrap, "vendor_requests", [("v1", {"hello": "broker"})])
        assert consume(bootstrap, "vendor_requests", count=1) == [("v1", {"hello": "broker"})]

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
        assert not port_open("127.0.0.1", port)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        if proc.stdout is not None:
            proc.stdout.close()


def test_security_settings_become_librdkafka_settings_it_accepts() -> None:
    ca = Path(certifi.where())  # a real CA bundle: librdkafka loads it when the client is built
    settings = Settings(
        kafka_bootstrap="kafka-1.example:9093,kafka-2.example:9093",
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism="SCRAM-SHA-512",
        kafka_sasl_username="catalog",
        kafka_sasl_password="s3cret",
        kafka_ssl_ca_location=ca,
        node_id="eu-1",
    )
    config = client_config(settings)
    assert config["bootstrap.servers"] == "kafka-1.example:9093,kafka-2.example:9093"
    assert (config["security.protocol"], config["sasl.mechanism"]) == ("SASL_SSL", "SCRAM-SHA-512")
    assert (config["sasl.username"], config["sasl.password"]) == ("catalog", "s3cret")
    assert config["ssl.ca.location"] == str(ca)
    assert group_id(settings) == "catalog-node-eu-1"
    consumer = consumer_config(settings, group_id(settings))
    assert consumer["session.timeout.ms"] == 6000 and consumer["auto.offset.reset"] == "earliest"
    assert consumer["enable.auto.offset.store"] is False
    # librdkafka validates every property when a client is built (without connecting): a typo would raise here.
    Producer(producer_config(settings))
    AdminClient(client_config(Settings(node_id="plain")))
    assert "sasl.mechanism" not in client_config(Settings())
