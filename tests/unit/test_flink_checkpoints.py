"""A checkpoint is resumed only against the broker it was made with (``app.distributed.flink.checkpoints``)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from app.distributed.flink.checkpoints import IDENTITY_FILE, BrokerIdentity, checkpoint_to_resume

BROKER = BrokerIdentity("cluster-a", {"vendor_requests": "id-1", "product_requests": "id-2"})


def checkpoint(folder: Path, job: str = "f00d", n: int = 3) -> Path:
    chk = folder / job / f"chk-{n}"
    chk.mkdir(parents=True)
    (chk / "_metadata").write_bytes(b"offsets")
    return chk


def test_the_same_broker_resumes_from_the_newest_checkpoint(tmp_path: Path) -> None:
    folder = tmp_path / "ingest"
    assert checkpoint_to_resume(folder, BROKER) is None  # nothing yet: the broker is recorded for what comes
    assert BrokerIdentity.from_json((folder / IDENTITY_FILE).read_text()) == BROKER
    chk = checkpoint(folder)
    assert checkpoint_to_resume(folder, BrokerIdentity("cluster-a", dict(BROKER.topics))) == chk


@pytest.mark.parametrize(
    ("now", "reason"),
    [
        (BrokerIdentity("cluster-b", dict(BROKER.topics)), "cluster id cluster-a is now cluster-b"),
        (
            BrokerIdentity("cluster-a", {"vendor_requests": "id-9", "product_requests": "id-2"}),
            "topic vendor_requests was recreated (id id-1 is now id-9)",
        ),
        (BrokerIdentity("cluster-a", {"vendor_requests": "id-1"}), "topic product_requests is gone"),
    ],
)
def test_another_broker_or_recreated_topics_start_clean_and_say_why(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, now: BrokerIdentity, reason: str
) -> None:
    folder = tmp_path / "ingest"
    checkpoint_to_resume(folder, BROKER)
    chk = checkpoint(folder)
    with caplog.at_level(logging.WARNING):
        assert checkpoint_to_resume(folder, now, bootstrap="127.0.0.1:9092") is None
    assert reason in caplog.text and "127.0.0.1:9092" in caplog.text and str(chk) in caplog.text
    stale = tmp_path / "ingest.stale"
    assert (stale / chk.relative_to(folder) / "_metadata").read_bytes() == b"offsets"  # moved, not lost
    assert list(folder.iterdir()) == [folder / IDENTITY_FILE]
    assert BrokerIdentity.from_json((folder / IDENTITY_FILE).read_text()) == now  # what the next checkpoints fit
    # Resumed from nothing, the next start with the same broker resumes its own new checkpoints.
    newer = checkpoint(folder, job="beef", n=1)
    assert checkpoint_to_resume(folder, now) == newer


def test_a_checkpoint_that_names_no_broker_is_not_trusted(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    folder = tmp_path / "ingest"
    checkpoint(folder)  # made before the job recorded its broker
    with caplog.at_level(logging.WARNING):
        assert checkpoint_to_resume(folder, BROKER) is None
    assert "does not say which broker" in caplog.text
    assert (tmp_path / "ingest.stale").is_dir()


def test_a_broker_without_topic_ids_is_judged_by_its_cluster_id() -> None:
    old = BrokerIdentity("cluster-a", {"vendor_requests": None})
    assert old.differences(BrokerIdentity("cluster-a", {"vendor_requests": None})) == []
    assert old.differences(BrokerIdentity("cluster-a", {"vendor_requests": "id-1"})) == []
    assert old.differences(BrokerIdentity("cluster-b", {"vendor_requests": None})) != []
