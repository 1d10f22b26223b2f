"""Which broker a checkpoint belongs to, so a restarted job never resumes from offsets of another one.

A checkpoint holds the job's source offsets. Resumed against a broker that is not the one they were read from (a
memory broker restarted empty, a Kafka cluster rebuilt, topics deleted and created again), those offsets point past
the end of the new topics, and the job waits there forever, processing nothing and saying nothing. Kafka Connect and
Debezium guard against the same trap by storing offsets beside the cluster id they belong to; the job does the
same: each start records the broker's identity (cluster id and the ids of the topics the job reads) beside its
checkpoints in ``broker.json``, and the next start resumes only when the broker is still that one. Otherwise the
checkpoints are moved aside (to ``<folder>.stale``, the previous stale copy replaced) and the job starts from its
group's committed offsets, or the topics' start where there are none, with a log line that says why.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from confluent_kafka import KafkaException, TopicCollection
from confluent_kafka.admin import AdminClient

from app.distributed.kafka.config import ADMIN_TIMEOUT_S

log = logging.getLogger(__name__)

IDENTITY_FILE = "broker.json"
NO_TOPIC_ID = "AAAAAAAAAAAAAAAAAAAAAA"  # the null UUID, as brokers without topic ids report it


@dataclass(frozen=True)
class BrokerIdentity:
    cluster_id: str | None
    #: topic name -> topic id (None where the broker has no topic ids)
    topics: dict[str, str | None] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps({"v": 1, "cluster_id": self.cluster_id, "topics": self.topics}, indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, raw: str) -> BrokerIdentity:
        data = json.loads(raw)
        if not isinstance(data, dict) or data.get("v") != 1 or not isinstance(data.get("topics"), dict):
            raise ValueError(f"not a broker identity: {raw[:200]!r}")
        return cls(data.get("cluster_id"), {str(k): v for k, v in data["topics"].items()})

    def differences(self, now: BrokerIdentity) -> list[str]:
        """Why a checkpoint made against ``self`` does not fit ``now`` (empty: it fits)."""
        found = []
        if self.cluster_id != now.cluster_id:
            found.append(f"cluster id {self.cluster_id} is now {now.cluster_id}")
        for topic, was in sorted(self.topics.items()):
            if topic not in now.topics:
                found.append(f"topic {topic} is gone")
            elif was is not None and now.topics[topic] is not None and was != now.topics[topic]:
                found.append(f"topic {topic} was recreated (id {was} is now {now.topics[topic]})")
        return found


def broker_identity(admin: AdminClient, topics: Iterable[str], timeout_s: float = ADMIN_TIMEOUT_S) -> BrokerIdentity:
    """The cluster id and topic ids the broker reports now (raises ``KafkaException`` when it does not answer)."""
    names = sorted(set(topics))
    cluster_id = admin.list_topics(timeout=timeout_s).cluster_id
    described = admin.describe_topics(TopicCollection(names), request_timeout=timeout_s)
    ids: dict[str, str | None] = {}
    for name, future in described.items():
        try:
            topic_id = str(future.result(timeout=timeout_s * 2).topic_id)
        except KafkaException:
            continue  # missing: the job creates its topics before it asks
        ids[name] = None if topic_id in ("", "None", NO_TOPIC_ID) else topic_id
    return BrokerIdentity(cluster_id, ids)


def latest_checkpoint(checkpoints: Path) -> Path | None:
    """The newest completed checkpoint under ``checkpoints`` (``<job id>/chk-N/_metadata``), if any."""
    found = [meta.parent for meta in checkpoints.glob("*/chk-*/_metadata")]
    return max(found, key=lambda chk: chk.stat().st_mtime) if found else None


def checkpoint_to_resume(checkpoints: Path, broker: BrokerIdentity, *, bootstrap: str = "") -> Path | None:
    """The checkpoint to resume from, if it belongs to ``broker``; records ``broker`` for the checkpoints to come.

    A checkpoint of another broker, or one without a record of its broker (made before this check existed), is
    moved aside with a warning that says why; then None.
    """
    resume = latest_checkpoint(checkpoints)
    marker = checkpoints / IDENTITY_FILE
    if resume is not None:
        why: list[str]
        try:
            why = BrokerIdentity.from_json(marker.read_text()).differences(broker)
        except FileNotFoundError:
            why = [f"it does not say which broker it belongs to (no {IDENTITY_FILE})"]
        except ValueError as exc:
            why = [f"its {IDENTITY_FILE} is unreadable ({exc})"]
        if why:
            stale = checkpoints.with_name(checkpoints.name + ".stale")
            shutil.rmtree(stale, ignore_errors=True)
            checkpoints.rename(stale)
            log.warning(
                "not resuming from checkpoint %s: it belongs to another broker than %s (%s); moved to %s, starting "
                "from the group's committed offsets, or the topics' start where it has none",
                resume,
                bootstrap or "this one",
                "; ".join(why),
                stale,
            )
            resume = None
    checkpoints.mkdir(parents=True, exist_ok=True)
    marker.write_text(broker.to_json() + "\n")
    return resume
