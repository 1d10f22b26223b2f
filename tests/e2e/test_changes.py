"""The change feed against the service as a subprocess: a whole catalog through the feed, only what changed after a
token, the same token after a restart, tombstones, the stream, and tokens the API did not issue."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from simulators.server import SimulatorServer
from tests.support import ServiceProcess, Sim, admin, assert_error, service_env, sim_config, wait_synced, wait_until

pytestmark = pytest.mark.e2e

SIZE = 40


def walk(client: httpx.Client, since: str | None = None, limit: int = 7) -> tuple[list[dict[str, Any]], str]:
    """Every change after ``since``, page by page, and the token after the last page."""
    changes: list[dict[str, Any]] = []
    for _ in range(1000):
        params: dict[str, Any] = {"limit": limit, **({"since": since} if since else {})}
        page = client.get("/changes", params=params)
        assert page.status_code == 200, page.text
        body = page.json()
        changes += body["changes"]
        since = body["next"]
        if not body["more"]:
            assert since is not None
            return changes, since
    raise AssertionError("the feed never ended")


@pytest.fixture(scope="module")
def sim() -> Iterator[Sim]:
    with SimulatorServer(sim_config("dummyjson", size=SIZE)) as server:
        yield Sim(server)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return service_env(
        tmp_path_factory.mktemp("changes") / "catalog.db",
        CATALOG_SCHEDULER_ENABLED="false",
        CATALOG_CHANGES_STREAM_MAX_S="5",
        CATALOG_CHANGES_POLL_S="0.05",
    )


def start(env: dict[str, str], log: Path) -> ServiceProcess:
    return ServiceProcess(env, log).start()


def test_the_feed_resumes_across_a_restart_and_lists_only_what_changed(
    sim: Sim, env: dict[str, str], tmp_path: Path
) -> None:
    service = start(env, tmp_path / "1.log")
    try:
        with httpx.Client(base_url=service.base_url, timeout=10) as client:
            assert client.post("/vendors", json=sim.vendor_body("dj"), headers=admin()).status_code == 201
            wait_synced(client, "dj")
            everything, token = walk(client)
            ids = [c["id"] for c in everything]
            assert len(ids) == len(set(ids)) == SIZE
            assert all(not c["deleted"] and c["product"]["id"] == c["id"] for c in everything)
            listed = {p["id"]: p for p in client.get("/products", params={"limit": 100}).json()["items"]}
            assert {c["id"]: c["product"] for c in everything} == listed
            # nothing changed since: an empty page, and the same token again
            again = client.get("/changes", params={"since": token}).json()
            assert again == {"changes": [], "next": token, "more": False}
        service.terminate()
    finally:
        service.kill()

    changed_ids = sim.tick()  # the vendor changes prices and stock while the service is down
    assert changed_ids
    service = start(env, tmp_path / "2.log")
    try:
        with httpx.Client(base_url=service.base_url, timeout=10) as client:
            assert client.post("/vendors/dj/sync", headers=admin()).status_code == 202
            wait_synced(client, "dj", syncs_ok=2)
            changes, after = walk(client, token)
            expected = {
                client.get(f"/vendors/dj/products/{vpid}").json()["id"] for vpid in {str(i) for i in changed_ids}
            }
            assert {c["id"] for c in changes} == expected
            for change in changes:
                detail = client.get(f"/products/{change['id']}").json()
                assert change["product"]["min_price"] == detail["min_price"]
                assert change["product"]["in_stock"] == detail["in_stock"]

            # the stream from that point: live events, each with the token that resumes after it
            events = stream_events(client, after, until=lambda evs: len(evs) >= 1, act=lambda: delete_vendor(client))
            assert events[0]["data"]["deleted"] is True
            rest, _ = walk(client, events[0]["id"])
            assert len(rest) == SIZE - 1 and all(c["deleted"] and c["product"] is None for c in rest)
            assert {events[0]["data"]["id"], *(c["id"] for c in rest)} == {c["id"] for c in everything}
        service.terminate()
    finally:
        service.kill()


def delete_vendor(client: httpx.Client) -> None:
    assert client.delete("/vendors/dj", headers=admin()).status_code == 204


def stream_events(
    client: httpx.Client,
    since: str,
    *,
    until: Any,
    act: Any,
) -> list[dict[str, Any]]:
    """Open ``/changes/stream``, run ``act`` once it is open, collect events until ``until(events)``."""
    events: list[dict[str, Any]] = []
    with client.stream("GET", "/changes/stream", params={"since": since}, timeout=10) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        event: dict[str, Any] = {}
        acted = False
        for line in response.iter_lines():
            if line.startswith("retry:") and not acted:
                act()
                acted = True
            elif line.startswith("id: "):
                event["id"] = line[4:]
            elif line.startswith("data: "):
                event["data"] = json.loads(line[6:])
            elif line == "" and event:
                events.append(event)
                event = {}
                if until(events):
                    break
    return events


def test_tokens_it_did_not_issue_are_400_and_a_token_of_another_catalog_410(
    sim: Sim, env: dict[str, str], tmp_path: Path
) -> None:
    other = {**env, "CATALOG_DB_PATH": str(tmp_path / "other.db")}
    first, second = start(env, tmp_path / "a.log"), start(other, tmp_path / "b.log")
    try:
        with httpx.Client(base_url=first.base_url) as a, httpx.Client(base_url=second.base_url) as b:
            token = a.get("/changes").json()["next"]
            payload, mac = token.rsplit(".", 1)
            for bad in (f"{payload}.{'A' * 22}", f"{payload[:-2]}.{mac}"):
                assert_error(a.get("/changes", params={"since": bad}), 400, "invalid_token")
                assert_error(a.get("/changes/stream", params={"since": bad}), 400, "invalid_token")
            assert_error(a.get("/changes", params={"since": "not a token"}), 422, "invalid_input")
            # the same key signs both files' tokens, but the other file's positions are not this file's: resync
            error = assert_error(b.get("/changes", params={"since": token}), 410, "resync_required")
            assert error["details"] == {"reason": "epoch"}
            wait_until(lambda: b.get("/health").status_code == 200, timeout=5, what="b up")
    finally:
        for service in (first, second):
            service.kill()
