"""`catalog broker` runs a Kafka-protocol broker that real clients use; the client settings librdkafka accepts."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import certifi
import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient

from app.distributed.flink.checkpoints import broker_identity
from app.distributed.kafka.admin import ensure_topics, topic_specs
from app.distributed.kafka.broker import DevBroker, port_open
from app.distributed.kafka.config import admin_config, client_config, consumer_config, group_id, producer_config
from app.settings import Settings
from tests.kafka_support import consume, produce
from tests.support import ROOT, free_port, service_env


class CatalogBroker:
    """``catalog broker`` as a shell runs it, its output read up to the bootstrap line it prints."""

    def __init__(self, tmp_path: Path, *args: str) -> None:
        self.port = free_port()
        env = service_env(tmp_path / "unused.db")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "broker", "--port", str(self.port), *args],
            cwd=ROOT,
            env={**env, "COLUMNS": "250", "NO_COLOR": "1"},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert self.proc.stdout is not None
        self.lines: list[str] = []
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            self.lines.append(line)
            if line.startswith("CATALOG_KAFKA_BOOTSTRAP=") or not line:
                break

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def said(self, prefix: str) -> str:
        return next((line.strip() for line in self.lines if line.startswith(prefix)), "")

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=15)
        finally:
            if self.proc.stdout is not None:
                self.proc.stdout.close()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def _tail(log: Path, lines: int = 40) -> str:
    """The end of the broker's log (Tansu and its object store), for a failure message."""
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:]) if log.exists() else f"no {log}"


@pytest.mark.kafka
def test_catalog_broker_keeps_its_data_across_restarts_and_says_where(tmp_path: Path) -> None:
    data = tmp_path / "broker"
    first = CatalogBroker(tmp_path, "--data", str(data))
    try:
        assert first.lines[-1].strip() == f"CATALOG_KAFKA_BOOTSTRAP={first.bootstrap}", first.lines
        assert first.said("data:") == f"data: {data.resolve()} (S3 objects served by localbucket)", first.lines
        admin = AdminClient({"bootstrap.servers": first.bootstrap})
        topics = admin.list_topics(timeout=5).topics
        cluster = admin.list_topics(timeout=5).cluster_id
        del admin
        assert set(topic_specs(Settings())) <= set(topics)
        assert len(topics["product_updates"].partitions) == Settings().kafka_partitions
        produce(first.bootstrap, "vendor_requests", [("v1", {"hello": "broker"})])
        assert consume(first.bootstrap, "vendor_requests", count=1) == [("v1", {"hello": "broker"})]
        assert first.stop() == 0
        assert not port_open("127.0.0.1", first.port)
    finally:
        first.kill()

    second = CatalogBroker(tmp_path, "--data", str(data))
    try:
        assert second.said("topics created:") == "topics created: none (all exist)", second.lines
        admin = AdminClient({"bootstrap.servers": second.bootstrap})
        assert admin.list_topics(timeout=5).cluster_id == cluster  # the same broker, restarted
        del admin
        # A restarted broker lists and reads its objects back from the store; on a loaded machine the first fetch
        # can take a while, so the read-back has a wide window and names what the broker logged if it fails.
        got = consume(second.bootstrap, "vendor_requests", count=1, timeout=60)
        assert got == [("v1", {"hello": "broker"})], _tail(data / "broker.log")
        assert second.stop() == 0
    finally:
        second.kill()


@pytest.mark.kafka
def test_catalog_broker_serves_debians_kcat_as_it_is(tmp_path: Path) -> None:
    """kcat 1.7.1's librdkafka cannot read Tansu 0.6.0's ApiVersions answer; the broker's proxy makes it readable."""
    kcat = shutil.which("kcat")
    if kcat is None:
        pytest.skip("Debian's kcat is not installed (make install installs it: apt-get install -y kcat)")
    broker = CatalogBroker(tmp_path, "--memory")
    try:
        assert broker.said("data:") == "data: memory (gone when it stops)", broker.lines
        line = b'{"v": 1, "id": "r_kcat_1", "kind": "catalog", "vendor_id": "northwind", "full": true}\n'

        def run(*args: str, given: bytes | None = None) -> bytes:
            return subprocess.run([kcat, *args], input=given, capture_output=True, timeout=30, check=True).stdout

        run("-P", "-b", broker.bootstrap, "-t", "vendor_requests", "-k", "northwind", given=line)
        out = run("-C", "-b", broker.bootstrap, "-t", "vendor_requests", "-e", "-f", "%k %s\n")
        assert out.decode().strip() == "northwind " + line.decode().strip()
        assert broker.stop() == 0
    finally:
        broker.kill()


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


@pytest.mark.kafka
def test_the_broker_identity_tells_a_restarted_memory_broker_from_the_same_one() -> None:
    """What the Flink job compares before resuming a checkpoint: recreated topics get new ids."""
    settings = Settings(kafka_partitions=1)
    topics = [settings.kafka_topic_vendor_requests, settings.kafka_topic_product_requests]
    with DevBroker(free_port()) as broker:
        settings = settings.model_copy(update={"kafka_bootstrap": broker.bootstrap})
        admin = AdminClient(admin_config(settings))
        ensure_topics(settings, admin)
        first = broker_identity(admin, topics)
        assert first.cluster_id == broker.cluster_id
        assert set(first.topics) == set(topics) and all(first.topics.values())
        assert broker_identity(admin, topics).differences(first) == []  # asked again: the same broker
        broker.stop()
        broker.start()  # memory: empty again, the topics created anew
        ensure_topics(settings, admin)
        again = broker_identity(admin, topics)
        reasons = first.differences(again)
        assert any(r.startswith("cluster id") for r in reasons), reasons
        assert sum("was recreated" in r for r in reasons) == len(topics), reasons
