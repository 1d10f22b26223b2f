"""The development broker's proxy rewrites two things and nothing else: Tansu's ApiVersions answer and, for S3
storage, a Fetch's ``max_wait_ms`` below the floor."""

from __future__ import annotations

import struct

from app.distributed.kafka.proxy import raise_fetch_wait

#: The first 40 bytes of a real Fetch v16 request of confluent-kafka 2.16 (client id "rdkafka", max_wait_ms 20),
#: captured through the proxy.
FETCH_V16 = bytes.fromhex("0001001000000006000772646b61666b61000000001400000001032000000100000000ffffffff02")


def fetch_v11(max_wait_ms: int) -> bytes:
    """A non-flexible Fetch (v11): header v1 (no tagged fields), body starting with replica_id."""
    header = struct.pack(">hhih", 1, 11, 42, 3) + b"abc"
    return header + struct.pack(">iii", -1, max_wait_ms, 1) + b"rest"


def test_a_flexible_fetch_below_the_floor_waits_the_floor_and_keeps_every_other_byte() -> None:
    raised = raise_fetch_wait(FETCH_V16, 250)
    assert struct.unpack(">i", raised[18:22])[0] == 250  # after the header's client id and empty tagged fields
    assert raised[:18] == FETCH_V16[:18] and raised[22:] == FETCH_V16[22:]


def test_an_older_fetch_is_rewritten_after_its_replica_id() -> None:
    raised = raise_fetch_wait(fetch_v11(10), 250)
    assert raised == fetch_v11(250)


def test_a_fetch_that_already_waits_longer_is_untouched() -> None:
    assert raise_fetch_wait(fetch_v11(500), 250) == fetch_v11(500)
    assert raise_fetch_wait(FETCH_V16, 20) == FETCH_V16
