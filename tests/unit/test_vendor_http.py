"""VendorHttp's retry, back-off, Retry-After and status mapping, against httpx.MockTransport."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Callable, Coroutine
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest

from app.errors import (
    VendorAddressRefused,
    VendorAuthError,
    VendorBadResponse,
    VendorError,
    VendorNotFound,
    VendorRateLimited,
    VendorTimeout,
)
from app.sources.http import HttpPolicy, VendorHttp, parse_retry_after

BASE = "https://vendor.example"
Handler = Callable[[httpx.Request], Coroutine[None, None, httpx.Response]]


class Sleeps:
    """Records back-off delays instead of waiting them out."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


class Script:
    """A vendor that answers each call with the next scripted response (the last one repeats)."""

    def __init__(self, *responses: httpx.Response | Exception) -> None:
        self.responses = list(responses)
        self.requests: list[httpx.Request] = []

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        index = min(len(self.requests), len(self.responses)) - 1
        answer = self.responses[index]
        if isinstance(answer, Exception):
            raise answer
        return answer

    @property
    def calls(self) -> int:
        return len(self.requests)


def ok(body: object = None) -> httpx.Response:
    return httpx.Response(200, json={"ok": True} if body is None else body)


def status(code: int, text: str = "", headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(code, text=text, headers=headers)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
async def make(sleeps: Sleeps) -> AsyncIterator[Callable[..., VendorHttp]]:
    clients: list[httpx.AsyncClient] = []

    def factory(handler: Handler, policy: HttpPolicy | None = None, rnd: float = 0.5) -> VendorHttp:
        client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
        clients.append(client)
        return VendorHttp(BASE, policy=policy, client=client, vendor_id="v1", sleep=sleeps, random=lambda: rnd)

    yield factory
    for client in clients:
        await client.aclose()


async def test_success_returns_body_and_response(make: Callable[..., VendorHttp]) -> None:
    script = Script(ok({"products": [1, 2]}))
    http = make(script)
    body, response = await http.get_json("/products", params={"limit": 5}, headers={"X-Token": "t"})
    assert body == {"products": [1, 2]}
    assert response.status_code == 200
    [request] = script.requests
    assert str(request.url) == f"{BASE}/products?limit=5"
    assert request.headers["X-Token"] == "t"
    assert http.stats.requests == 1
    assert http.stats.attempts == 1
    assert http.stats.retries == 0


async def test_absolute_url_on_the_vendors_origin_is_used_as_is(make: Callable[..., VendorHttp]) -> None:
    script = Script(ok())
    await make(script).get_json(f"{BASE}/x.json?page_info=abc")
    assert str(script.requests[0].url) == f"{BASE}/x.json?page_info=abc"


@pytest.mark.parametrize(
    "link", ["https://other.example/x.json?page_info=abc", "http://vendor.example/x", "https://vendor.example:8443/x"]
)
async def test_a_link_to_another_origin_is_never_requested(make: Callable[..., VendorHttp], link: str) -> None:
    """A vendor's pagination link elsewhere would carry the vendor's auth headers there (blind SSRF)."""
    script = Script(ok())
    http = make(script)
    with pytest.raises(VendorAddressRefused, match="leaves the vendor's origin") as info:
        await http.get_json(link, headers={"X-Auth": "secret"})
    assert script.calls == 0
    assert "other.example" not in str(info.value.to_dict()) and "page_info" not in str(info.value.to_dict())
    assert http.stats.refused_urls == 1


async def test_5xx_retried_with_bounded_jittered_backoff(make: Callable[..., VendorHttp], sleeps: Sleeps) -> None:
    script = Script(status(500), status(502), status(504), ok())
    http = make(script, rnd=0.5)
    body, _ = await http.get_json("/p")
    assert body == {"ok": True}
    assert script.calls == 4
    # full jitter: random() * min(max, base * 2**n) -> 0.5 * (0.2, 0.4, 0.8)
    assert sleeps.delays == pytest.approx([0.1, 0.2, 0.4])
    assert http.stats.retries == 3
    assert http.stats.backoff_s == pytest.approx(0.7)
    assert http.stats.attempts == 4
    assert http.stats.server_errors == 3


async def test_backoff_is_capped_and_jittered() -> None:
    policy = HttpPolicy(max_attempts=12, backoff_base_s=0.2, backoff_max_s=5.0)
    rng = random.Random(7)
    http = VendorHttp(BASE, policy=policy, random=rng.random)
    try:
        delays = [http.backoff(n) for n in range(1, 12)]
    finally:
        await http.aclose()
    ceilings = [min(5.0, 0.2 * 2 ** (n - 1)) for n in range(1, 12)]
    assert all(0 <= d <= c for d, c in zip(delays, ceilings, strict=True))
    assert max(delays) <= 5.0
    assert len(set(delays)) == len(delays)  # jittered, not a fixed ladder
    top = VendorHttp(BASE, policy=policy, random=lambda: 0.999999)
    await top.aclose()
    assert top.backoff(30) == pytest.approx(5.0, rel=1e-3)


async def test_5xx_exhausted_raises_vendor_error_with_status(make: Callable[..., VendorHttp], sleeps: Sleeps) -> None:
    script = Script(status(503, "upstream down"))
    http = make(script, HttpPolicy(max_attempts=3))
    with pytest.raises(VendorError) as info:
        await http.get_json("/p")
    assert type(info.value) is VendorError
    assert info.value.details["status"] == 503
    assert "upstream down" not in str(info.value.to_dict())  # the vendor's body is for the log, not for clients
    assert info.value.details["attempts"] == 3
    assert info.value.details["vendor_id"] == "v1"
    assert script.calls == 3
    assert len(sleeps.delays) == 2
    assert http.stats.failures == 1
    assert http.stats.last_error


async def test_429_honours_retry_after_seconds(make: Callable[..., VendorHttp], sleeps: Sleeps) -> None:
    script = Script(status(429, headers={"Retry-After": "2"}), ok())
    http = make(script)
    await http.get_json("/p")
    assert sleeps.delays == [2.0]
    assert http.stats.rate_limited == 1


async def test_429_honours_retry_after_http_date(make: Callable[..., VendorHttp], sleeps: Sleeps) -> None:
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=5), usegmt=True)
    script = Script(status(429, headers={"Retry-After": when}), ok())
    await make(script).get_json("/p")
    [delay] = sleeps.delays
    assert 3.0 <= delay <= 5.0


async def test_429_without_retry_after_uses_backoff(make: Callable[..., VendorHttp], sleeps: Sleeps) -> None:
    script = Script(status(429), ok())
    await make(script, rnd=0.5).get_json("/p")
    assert sleeps.delays == pytest.approx([0.1])


async def test_429_beyond_cap_raises_rate_limited_without_waiting(
    make: Callable[..., VendorHttp], sleeps: Sleeps
) -> None:
    script = Script(status(429, headers={"Retry-After": "120"}), ok())
    http = make(script, HttpPolicy(max_retry_after_s=30))
    with pytest.raises(VendorRateLimited) as info:
        await http.get_json("/p")
    assert info.value.retry_after == 120
    assert script.calls == 1
    assert sleeps.delays == []


async def test_429_exhausted_raises_rate_limited(make: Callable[..., VendorHttp], sleeps: Sleeps) -> None:
    script = Script(status(429, headers={"Retry-After": "1"}))
    with pytest.raises(VendorRateLimited) as info:
        await make(script, HttpPolicy(max_attempts=3)).get_json("/p")
    assert info.value.retry_after == 1
    assert script.calls == 3
    assert sleeps.delays == [1.0, 1.0]


@pytest.mark.parametrize(
    ("code", "error"),
    [(404, VendorNotFound), (401, VendorAuthError), (403, VendorAuthError)],
)
async def test_client_errors_are_not_retried(
    make: Callable[..., VendorHttp], sleeps: Sleeps, code: int, error: type[VendorError]
) -> None:
    script = Script(status(code), ok())
    with pytest.raises(error) as info:
        await make(script).get_json("/p")
    assert info.value.details["status"] == code
    assert script.calls == 1
    assert sleeps.delays == []


async def test_other_4xx_is_vendor_error_with_the_excerpt_in_the_log_only(
    make: Callable[..., VendorHttp], sleeps: Sleeps, caplog: pytest.LogCaptureFixture
) -> None:
    script = Script(status(400, '{"errors": "page_info is invalid"}' + "x" * 1000), ok())
    with caplog.at_level("INFO", logger="app.sources.http"), pytest.raises(VendorError) as info:
        await make(script).get_json("/p?consumer_secret=cs_123")
    assert type(info.value) is VendorError
    assert info.value.details["status"] == 400
    assert info.value.details["path"] == "/p"
    assert "page_info is invalid" not in str(info.value.to_dict()) and "cs_123" not in str(info.value.to_dict())
    logged = [r.getMessage() for r in caplog.records if "page_info is invalid" in r.getMessage()]
    assert logged and all(len(m) < 400 and "cs_123" not in m for m in logged)
    assert "400" in info.value.message
    assert script.calls == 1
    assert sleeps.delays == []


async def test_malformed_json_is_retried_then_succeeds(make: Callable[..., VendorHttp], sleeps: Sleeps) -> None:
    script = Script(httpx.Response(200, content=b'{"products": [{"id": 1'), ok())
    http = make(script)
    body, _ = await http.get_json("/p")
    assert body == {"ok": True}
    assert script.calls == 2
    assert len(sleeps.delays) == 1
    assert http.stats.bad_responses == 1


async def test_malformed_json_exhausted_raises_bad_response(make: Callable[..., VendorHttp], sleeps: Sleeps) -> None:
    script = Script(httpx.Response(200, content=b"<html>oops</html>"))
    with pytest.raises(VendorBadResponse) as info:
        await make(script, HttpPolicy(max_attempts=4)).get_json("/p")
    assert "oops" not in str(info.value.to_dict())
    assert script.calls == 4
    assert len(sleeps.delays) == 3


async def test_timeouts_retried_then_vendor_timeout(make: Callable[..., VendorHttp], sleeps: Sleeps) -> None:
    script = Script(httpx.ReadTimeout("slow"))
    http = make(script, HttpPolicy(max_attempts=3))
    with pytest.raises(VendorTimeout):
        await http.get_json("/p")
    assert script.calls == 3
    assert len(sleeps.delays) == 2
    assert http.stats.timeouts == 3


async def test_hung_vendor_hits_the_attempt_deadline(make: Callable[..., VendorHttp], sleeps: Sleeps) -> None:
    calls = 0

    async def hang(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        await asyncio.sleep(30)
        return ok()

    http = make(hang, HttpPolicy(timeout_s=0.05, max_attempts=2))
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(VendorTimeout):
        await http.get_json("/p")
    assert loop.time() - started < 2
    assert calls == 2


async def test_transport_errors_retried(make: Callable[..., VendorHttp], sleeps: Sleeps) -> None:
    script = Script(httpx.ConnectError("refused"), httpx.RemoteProtocolError("eof"), ok())
    http = make(script)
    body, _ = await http.get_json("/p")
    assert body == {"ok": True}
    assert http.stats.transport_errors == 2
    assert len(sleeps.delays) == 2


async def test_transport_errors_exhausted(make: Callable[..., VendorHttp]) -> None:
    script = Script(httpx.ConnectError("refused"))
    with pytest.raises(VendorError) as info:
        await make(script, HttpPolicy(max_attempts=2)).get_json("/p")
    assert "unreachable" in info.value.message
    assert script.calls == 2


async def test_concurrency_limit_respected(make: Callable[..., VendorHttp]) -> None:
    in_flight = 0
    peak = 0

    async def slow(request: httpx.Request) -> httpx.Response:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.01)
        in_flight -= 1
        return ok()

    http = make(slow, HttpPolicy(max_concurrency=3))
    await asyncio.gather(*(http.get_json(f"/p/{i}") for i in range(12)))
    assert peak == 3
    assert http.stats.attempts == 12


async def test_injected_client_is_not_closed_but_owned_one_is() -> None:
    shared = httpx.AsyncClient(transport=httpx.MockTransport(Script(ok())))
    http = VendorHttp(BASE, client=shared)
    await http.aclose()
    assert not shared.is_closed
    await shared.aclose()
    async with VendorHttp(BASE) as owned:
        client = owned._client
    assert client.is_closed


def test_policy_defaults() -> None:
    p = HttpPolicy()
    assert (p.timeout_s, p.max_attempts, p.backoff_base_s, p.backoff_max_s, p.max_concurrency) == (
        10.0,
        4,
        0.2,
        5.0,
        4,
    )
    assert p.max_retry_after_s == 30.0
    with pytest.raises(ValueError):
        HttpPolicy(max_attempts=0)


def test_parse_retry_after() -> None:
    now = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
    assert parse_retry_after(None) is None
    assert parse_retry_after("") is None
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after("1.5") == 1.5
    assert parse_retry_after("-4") == 0.0
    assert parse_retry_after("Wed, 01 Jan 2025 12:00:10 GMT", now) == 10.0
    assert parse_retry_after("Wed, 01 Jan 2025 11:00:00 GMT", now) == 0.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after("nan") is None


async def test_unusable_url_fails_at_once_without_retries(sleeps: Sleeps) -> None:
    async with VendorHttp("ftp://vendor.invalid", policy=HttpPolicy(max_attempts=4), sleep=sleeps) as http:
        with pytest.raises(VendorAddressRefused, match="only http and https"):
            await http.get_json("/products")
        assert http.stats.attempts == 0
    assert sleeps.delays == []
