"""Request bodies over CATALOG_MAX_BODY_BYTES answer 413 before the application reads them (issue 11: "no request body
has a size limit; webhooks read the whole body before checking the signature"), over real HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support import ApiServer, admin, assert_error, fast_settings

LIMIT = 4096
JSON = {"Content-Type": "application/json"}


@pytest.fixture
def client(tmp_path: Path) -> Iterator[httpx.Client]:
    with (
        ApiServer(fast_settings(tmp_path / "catalog.db", max_body_bytes=LIMIT)) as api,
        httpx.Client(base_url=api.base_url, timeout=20) as client,
    ):
        yield client


def chunks(total: int) -> Iterator[bytes]:
    """A body without Content-Length (chunked): only counting while reading can stop it."""
    for _ in range(total // 1024):
        yield b" " * 1024


def test_a_declared_body_over_the_limit_is_refused_before_the_application_sees_it(client: httpx.Client) -> None:
    big = b" " * (LIMIT + 1)
    # A webhook for a vendor that does not exist, unsigned: refused for its size, before the vendor or signature.
    for path, headers in (("/webhooks/shopify/nobody", JSON), ("/vendors", {**JSON, **admin()})):
        error = assert_error(client.post(path, content=big, headers=headers), 413, "payload_too_large")
        assert error["details"] == {"limit": LIMIT}
    assert_error(client.post("/webhooks/shopify/nobody", content=b"{}", headers=JSON), 404)  # at the limit: read


def test_a_chunked_body_over_the_limit_is_refused_while_it_is_read(client: httpx.Client) -> None:
    for path, headers in (("/webhooks/shopify/nobody", JSON), ("/vendors", {**JSON, **admin()})):
        assert_error(client.post(path, content=chunks(LIMIT * 4), headers=headers), 413, "payload_too_large")
    assert client.post("/vendors", content=chunks(1024), headers={**JSON, **admin()}).status_code == 422
