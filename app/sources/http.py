"""The one HTTP client every vendor source goes through.

Vendors are other people's servers: they time out, rate-limit, return truncated or non-JSON bodies and
sometimes die. All of that is absorbed here, once, so a sick vendor costs a bounded number of attempts and a
typed ``VendorError`` instead of a hung worker or a bare 500 somewhere up the stack. Sources only say *what*
to fetch; this module decides how hard to try.

Vendors may also be hostile (or compromised), so this is where their answers are bounded and their URLs checked:
- a body is streamed and counted, on the wire and unpacked (gzip/deflate are unpacked here, in bounded steps), and
  refused past ``max_response_bytes``: a 200 MB answer or a gzip bomb costs a bounded buffer, never the process;
- every URL goes through the outbound policy (``app.sources.safety``), and an absolute URL (a pagination link)
  must stay on the vendor's origin, so its auth headers never reach another host; redirects are not followed;
- errors carry the request's path and status, never the query (it may hold credentials), the host or the body.
"""

from __future__ import annotations

import asyncio
import logging
import random as _random
import time
import zlib
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
import orjson

from app.domain.lanes import interactive_work
from app.errors import (
    VendorAddressRefused,
    VendorAuthError,
    VendorBadResponse,
    VendorError,
    VendorNotFound,
    VendorRateLimited,
    VendorTimeout,
)
from app.sources.limiter import LaneLimiter
from app.sources.safety import GuardedTransport, OutboundPolicy

#: How long a shopper's vendor call may keep bulk work stepping aside (``InteractiveWork.away``): longer than a
#: healthy vendor's answer (1-50 ms), so a miss stays as fast as it was, short against a slow vendor's seconds.
AWAY_AFTER_S = 0.1

logger = logging.getLogger(__name__)

QueryParams = Mapping[str, str | int | float | bool | None]
Sleep = Callable[[float], Awaitable[None]]

_BODY_EXCERPT_CHARS = 300
#: What an error answer is read up to (for the log's excerpt); the rest is not downloaded.
_ERROR_BODY_BYTES = 4096
#: Unpacked in steps of at most this many bytes, so a compressed bomb never inflates beyond the limit plus a step.
_INFLATE_STEP = 1 << 20

#: Shopify's leaky bucket drains this many calls per second (standard plans); above this share of the bucket
#: we slow down before Shopify starts answering 429.
SHOPIFY_LEAK_PER_S = 2.0
SHOPIFY_SLOW_DOWN_AT = 0.8


@dataclass(frozen=True, slots=True)
class HttpPolicy:
    """How patient to be with one vendor.

    ``timeout_s`` bounds a whole attempt (connect, send, read): httpx's read timeout alone does not fire on a
    server that trickles bytes, and a hung vendor must not hold a sync worker. ``max_attempts`` counts the
    first try. Back-off is "full jitter" (uniform in ``[0, min(max, base * 2**n)]``) so many workers retrying
    one vendor do not hit it in lock-step. A ``Retry-After`` longer than ``max_retry_after_s`` is not waited
    out: the caller gets ``VendorRateLimited`` and can reschedule the whole sync instead of parking a worker.
    """

    timeout_s: float = 10.0
    connect_timeout_s: float | None = None
    max_attempts: int = 4
    backoff_base_s: float = 0.2
    backoff_max_s: float = 5.0
    max_concurrency: int = 4
    max_retry_after_s: float = 30.0
    #: Largest answer accepted, counted both as sent (compressed) and unpacked.
    max_response_bytes: int = 32 * 1024 * 1024
    #: Most items one page may carry (sources check it before mapping a page).
    max_items_per_page: int = 5000

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be >= 1")
        if self.max_concurrency < 1:
            raise ValueError("max_concurrency must be >= 1")
        if self.timeout_s <= 0:
            raise ValueError("timeout_s must be > 0")
        if self.max_response_bytes < 1 or self.max_items_per_page < 1:
            raise ValueError("max_response_bytes and max_items_per_page must be >= 1")

    def httpx_timeout(self) -> httpx.Timeout:
        connect = self.connect_timeout_s if self.connect_timeout_s is not None else self.timeout_s
        return httpx.Timeout(self.timeout_s, connect=connect)


@dataclass(slots=True)
class HttpStats:
    """Counters a sync status can show, so "the vendor is flaky" is visible before it becomes "down"."""

    requests: int = 0
    attempts: int = 0
    retries: int = 0
    failures: int = 0
    timeouts: int = 0
    rate_limited: int = 0
    server_errors: int = 0
    bad_responses: int = 0
    transport_errors: int = 0
    #: Answers refused for their size (bytes, or items in a page) and URLs refused by the outbound policy.
    too_large: int = 0
    refused_urls: int = 0
    backoff_s: float = 0.0
    throttled_s: float = 0.0
    last_error: str | None = None


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP-date); ``None`` if unusable."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        if seconds != seconds or seconds in (float("inf"), float("-inf")):  # NaN / inf are not a delay
            return None
        return max(0.0, seconds)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    now = now or datetime.now(UTC)
    return max(0.0, (when - now).total_seconds())


def rate_limit_pause(headers: Mapping[str, str]) -> float | None:
    """Seconds to hold the vendor's next call, from the platform's own rate-limit headers; ``None``: go on.

    Shopify reports its leaky bucket (``X-Shopify-Shop-Api-Call-Limit: used/limit``): near the top we wait
    until it has drained to half. BigCommerce reports the calls left in its window and when the window resets:
    with (almost) none left we wait for the reset.
    """
    bucket = headers.get("X-Shopify-Shop-Api-Call-Limit")
    if bucket:
        used_s, _, limit_s = bucket.partition("/")
        try:
            used, limit = float(used_s), float(limit_s)
        except ValueError:
            used = limit = 0.0
        if limit > 0 and used / limit >= SHOPIFY_SLOW_DOWN_AT:
            return max(0.0, (used - 0.5 * limit) / SHOPIFY_LEAK_PER_S)
    left = headers.get("X-Rate-Limit-Requests-Left")
    if left is not None:
        try:
            requests_left = int(left.strip())
        except ValueError:
            return None
        if requests_left <= 1:
            return _reset_ms(headers)
    return None


def _reset_ms(headers: Mapping[str, str]) -> float | None:
    try:
        ms = float(headers.get("X-Rate-Limit-Time-Reset-Ms", ""))
    except ValueError:
        return None
    return max(0.0, ms / 1000) if ms == ms and ms != float("inf") else None


def _excerpt(body: bytes) -> str:
    """The start of an error answer, for the log only: never for API clients (vendors' bodies are theirs)."""
    text = " ".join(body[: _BODY_EXCERPT_CHARS * 4].decode("utf-8", errors="replace").split())
    return text[:_BODY_EXCERPT_CHARS]


def path_of(url: str) -> str:
    """What an error may say about a URL: its path, without host, user info or query (credentials live there)."""
    try:
        return httpx.URL(url).path or "/"
    except (httpx.InvalidURL, TypeError, ValueError):
        return "?"


class _Inflater:
    """Unpacks a ``Content-Encoding`` in bounded steps; only what we asked for (gzip, deflate) is accepted."""

    def __init__(self, encoding: str) -> None:
        self._encodings = [e.strip().lower() for e in encoding.split(",") if e.strip() and e.strip() != "identity"]
        if len(self._encodings) > 1 or any(e not in ("gzip", "x-gzip", "deflate") for e in self._encodings):
            raise VendorBadResponse(f"vendor answered with an encoding we did not ask for ({encoding[:40]!r})")
        self._deflate = self._encodings == ["deflate"]
        self._d = self._new()
        self._first = True

    def _new(self) -> Any:
        if not self._encodings:
            return None
        return zlib.decompressobj(zlib.MAX_WBITS if self._deflate else 16 + zlib.MAX_WBITS)

    def feed(self, data: bytes) -> Iterator[bytes]:
        if self._d is None:
            yield data
            return
        while data:
            try:
                out = self._d.decompress(data, _INFLATE_STEP)
            except zlib.error as exc:
                if self._deflate and self._first:  # some servers send raw deflate without the zlib header
                    self._d, self._first = zlib.decompressobj(-zlib.MAX_WBITS), False
                    continue
                raise VendorBadResponse("vendor sent a body that does not unpack") from exc
            self._first = False
            yield out
            data = self._d.unconsumed_tail
            if self._d.eof and self._d.unused_data:  # a second gzip member
                data, self._d = self._d.unused_data, self._new()


class _Retry(Exception):
    """An attempt failed in a way worth trying again; carries the error to raise if attempts run out."""

    def __init__(self, error: VendorError, delay: float | None = None) -> None:
        super().__init__(error.message)
        self.error = error
        self.delay = delay


class VendorHttp:
    """An ``httpx.AsyncClient`` with a vendor's retry, timeout and concurrency policy around it.

    One instance per vendor: the semaphore is the per-vendor concurrency limit and ``stats`` are that
    vendor's. The underlying client may be shared (pass ``client``) so all vendors use one connection pool;
    only a client created here is closed by ``aclose``. ``sleep``, ``random`` and ``clock`` are injectable so
    tests can check the back-off and the rate-limit pauses without waiting for them.

    When the vendor's rate-limit headers say it is nearly out of calls, this vendor's next requests (and only
    this vendor's: the pause lives on the instance) wait before they are sent, bounded by
    ``max_retry_after_s``.
    """

    def __init__(
        self,
        base_url: str | None = None,
        *,
        policy: HttpPolicy | None = None,
        client: httpx.AsyncClient | None = None,
        headers: Mapping[str, str] | None = None,
        vendor_id: str | None = None,
        sleep: Sleep | None = None,
        random: Callable[[], float] | None = None,
        clock: Callable[[], float] | None = None,
        outbound: OutboundPolicy | None = None,
    ) -> None:
        """``outbound``: where this client may connect (default: public addresses only). A client passed in keeps
        its own transport (tests' mock transports); every URL still goes through the policy's URL checks."""
        self.base_url = base_url.rstrip("/") if base_url else None
        self.policy = policy or HttpPolicy()
        self.outbound = outbound or OutboundPolicy()
        self.vendor_id = vendor_id
        self.stats = HttpStats()
        self._headers = {"Accept-Encoding": "gzip, deflate", **(headers or {})}
        self._origin = _origin(self.base_url) if self.base_url else None
        self._owns_client = client is None
        self._client = client or httpx.AsyncClient(
            timeout=self.policy.httpx_timeout(),
            transport=GuardedTransport(self.outbound),
            follow_redirects=False,
            trust_env=False,  # an environment proxy would connect wherever told, past the address checks
        )
        self._timeout = self.policy.httpx_timeout()
        self._semaphore = LaneLimiter(self.policy.max_concurrency)  # both lanes' calls, interactive first
        self._sleep: Sleep = sleep or asyncio.sleep
        self._random: Callable[[], float] = random or _random.random
        self._clock: Callable[[], float] = clock or time.monotonic
        self._resume_at = 0.0  # clock time before which no request of this vendor is sent

    async def __aenter__(self) -> VendorHttp:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()

    def url(self, path_or_url: str) -> str:
        """The URL to get; an absolute one (a vendor's pagination link) must be on the vendor's own origin, and
        every one passes the outbound policy's URL checks. Raises ``VendorAddressRefused``."""
        if path_or_url.startswith(("http://", "https://")) or "://" in path_or_url[:16]:
            url = path_or_url
            if self._origin is not None and _origin(url) != self._origin:
                raise VendorAddressRefused(
                    "vendor link leaves the vendor's origin (not followed)", details={"path": path_of(url)}
                )
        elif self.base_url is None:
            raise ValueError(f"relative path {path_or_url!r} but no base_url")
        else:
            url = f"{self.base_url}/{path_or_url.lstrip('/')}"
        self.outbound.check_url(url)
        return url

    def bounded_page(self, items: list[Any]) -> list[Any]:
        """A page's item list, refused whole when it holds more than ``max_items_per_page`` (before any mapping:
        the page fails with the reason, what earlier pages stored stays)."""
        if len(items) > self.policy.max_items_per_page:
            self.stats.too_large += 1
            raise VendorBadResponse(
                f"vendor page has {len(items)} items, more than the limit of {self.policy.max_items_per_page}"
                " (CATALOG_VENDOR_MAX_ITEMS_PER_PAGE)",
                details={"items": len(items), "limit": self.policy.max_items_per_page},
            )
        return items

    def backoff(self, retry_number: int) -> float:
        """Full-jitter delay before retry ``retry_number`` (1-based)."""
        p = self.policy
        ceiling = min(p.backoff_max_s, p.backoff_base_s * 2.0 ** min(max(retry_number - 1, 0), 60))
        return max(0.0, min(ceiling, self._random() * ceiling))

    async def get_json(
        self,
        path_or_url: str,
        params: QueryParams | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> tuple[Any, httpx.Response]:
        """GET and decode JSON, retrying what is worth retrying; raises a ``VendorError`` subclass otherwise.

        The ``httpx.Response`` is returned too because pagination lives in headers (``Link``,
        ``X-WP-TotalPages``).
        """
        self.stats.requests += 1
        try:
            url = self.url(path_or_url)
        except VendorAddressRefused as error:
            self.stats.refused_urls += 1
            self._fail(error, 0)
            raise
        merged = {**self._headers, **(headers or {})}
        attempts = self.policy.max_attempts
        waited_turn = False
        for attempt in range(1, attempts + 1):
            try:
                return await self._attempt(url, params, merged, wait_turn=not waited_turn)
            except _Retry as retry:
                if attempt >= attempts:
                    self._fail(retry.error, attempt)
                    raise retry.error from retry.__cause__
                delay = retry.delay if retry.delay is not None else self.backoff(attempt)
                self.stats.retries += 1
                self.stats.backoff_s += delay
                logger.warning(
                    "vendor %s: GET %s attempt %d/%d failed (%s); retrying in %.2fs",
                    self.vendor_id or "?",
                    path_of(url),
                    attempt,
                    attempts,
                    retry.error.message,
                    delay,
                )
                await self._sleep(delay)
                # A vendor-given delay already covered the pause it set for everyone: not waited twice.
                waited_turn = retry.delay is not None
            except VendorError as error:
                self._fail(error, attempt)
                raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _fail(self, error: VendorError, attempt: int) -> None:
        self.stats.failures += 1
        self.stats.last_error = error.message
        error.details.setdefault("attempts", attempt)
        if self.vendor_id is not None:
            error.details.setdefault("vendor_id", self.vendor_id)

    async def _attempt(
        self, url: str, params: QueryParams | None, headers: Mapping[str, str], *, wait_turn: bool = True
    ) -> tuple[Any, httpx.Response]:
        details: dict[str, Any] = {"path": path_of(url)}
        # The vendor's turn and its answer are waits outside the process: a shopper's miss that waits long does not
        # hold bulk work back meanwhile (``interactive_work.away``); it counts again for the mapping and the write.
        with interactive_work.away(AWAY_AFTER_S):
            response, body = await self._exchange(url, params, headers, details, wait_turn=wait_turn)
        return self._handle(response, body, details)

    async def _exchange(
        self,
        url: str,
        params: QueryParams | None,
        headers: Mapping[str, str],
        details: dict[str, Any],
        *,
        wait_turn: bool,
    ) -> tuple[httpx.Response, bytes]:
        async with self._semaphore:
            if wait_turn:
                pause = self._resume_at - self._clock()
                if pause > 0:
                    self.stats.throttled_s += pause
                    await self._sleep(pause)
            self.stats.attempts += 1
            try:
                async with asyncio.timeout(self.policy.timeout_s):
                    request = self._client.build_request(
                        "GET", url, params=params, headers=headers, timeout=self._timeout
                    )
                    response = await self._client.send(request, stream=True)
                    try:
                        body = await self._read(response, details)
                    finally:
                        await response.aclose()
            except (TimeoutError, httpx.TimeoutException) as exc:
                self.stats.timeouts += 1
                raise _Retry(
                    VendorTimeout(f"vendor did not answer within {self.policy.timeout_s}s", details=details)
                ) from exc
            except VendorAddressRefused as exc:
                self.stats.refused_urls += 1
                exc.details.update(details)
                raise
            except (httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
                # A misconfigured base URL: retrying cannot help, so fail at once with a clear message.
                raise VendorError(f"vendor URL is not usable ({type(exc).__name__})", details=details) from exc
            except httpx.TransportError as exc:
                self.stats.transport_errors += 1
                raise _Retry(VendorError(f"vendor unreachable ({type(exc).__name__})", details=details)) from exc
        return response, body

    async def _read(self, response: httpx.Response, details: dict[str, Any]) -> bytes:
        """The body, streamed and counted on the wire and unpacked; an error answer only up to its excerpt."""
        limit = self.policy.max_response_bytes if response.is_success else _ERROR_BODY_BYTES
        declared = response.headers.get("Content-Length", "")
        if response.is_success and declared.isdigit() and int(declared) > limit:
            raise self._too_large(f"vendor announced {int(declared)} bytes", details)
        if response.is_stream_consumed:  # read by a test transport already (httpx.MockTransport reads its answer)
            if response.is_success and len(response.content) > limit:
                raise self._too_large("vendor answer", details)
            return response.content[:limit]
        inflater = _Inflater(response.headers.get("Content-Encoding", ""))
        parts: list[bytes] = []
        size = wire = 0
        async for raw in response.aiter_raw():
            wire += len(raw)
            for part in inflater.feed(raw):
                size += len(part)
                parts.append(part)
                if size > limit or wire > limit:
                    if not response.is_success:
                        return b"".join(parts)[:limit]
                    raise self._too_large("vendor answer", details)
        return b"".join(parts)

    def _too_large(self, what: str, details: dict[str, Any]) -> VendorBadResponse:
        self.stats.too_large += 1
        details["limit_bytes"] = self.policy.max_response_bytes
        return VendorBadResponse(
            f"{what} exceeds the {self.policy.max_response_bytes} byte limit (CATALOG_VENDOR_MAX_RESPONSE_BYTES)",
            details=details,
        )

    def _hold(self, pause: float | None) -> None:
        """Hold this vendor's next requests for ``pause`` seconds (never beyond ``max_retry_after_s``)."""
        if pause is not None and pause > 0:
            until = self._clock() + min(pause, self.policy.max_retry_after_s)
            self._resume_at = max(self._resume_at, until)

    def _log_body(self, status: int, body: bytes) -> None:
        logger.info("vendor %s: HTTP %d, body starts %r", self.vendor_id or "?", status, _excerpt(body))

    def _handle(self, response: httpx.Response, body: bytes, details: dict[str, Any]) -> tuple[Any, httpx.Response]:
        status = response.status_code
        details["status"] = status
        self._hold(rate_limit_pause(response.headers))
        if 200 <= status < 300:
            try:
                return orjson.loads(body), response
            except orjson.JSONDecodeError as exc:
                # Usually a body cut short by a proxy or a dying worker: the next attempt often succeeds.
                self.stats.bad_responses += 1
                self._log_body(status, body)
                raise _Retry(VendorBadResponse("malformed JSON from vendor", details=details)) from exc
        if status == 404:
            raise VendorNotFound("vendor says the item does not exist", details=details)
        if status in (401, 403):
            raise VendorAuthError(f"vendor refused our credentials (HTTP {status})", details=details)
        if status == 429 or status == 503:
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            if retry_after is None and status == 429:
                retry_after = _reset_ms(response.headers)  # BigCommerce says when its window resets instead
            if status == 429:
                self.stats.rate_limited += 1
                self._hold(retry_after)
            else:
                self.stats.server_errors += 1
            if retry_after is not None and retry_after > self.policy.max_retry_after_s:
                details["retry_after"] = retry_after
                raise VendorRateLimited(
                    f"vendor asks to wait {retry_after:.0f}s, longer than we wait inline"
                    f" ({self.policy.max_retry_after_s:.0f}s)",
                    retry_after=retry_after,
                    details=details,
                )
            if status == 429:
                wait = retry_after if retry_after is not None else self.policy.backoff_max_s
                details["retry_after"] = wait
                raise _Retry(
                    VendorRateLimited("vendor rate limit (HTTP 429)", retry_after=wait, details=details),
                    delay=retry_after,
                )
            self._log_body(status, body)
            raise _Retry(VendorError("vendor unavailable (HTTP 503)", details=details), delay=retry_after)
        if status >= 500:
            self.stats.server_errors += 1
            self._log_body(status, body)
            raise _Retry(VendorError(f"vendor server error (HTTP {status})", details=details))
        self._log_body(status, body)
        if 400 <= status < 500:
            raise VendorError(f"vendor rejected the request (HTTP {status})", details=details)
        # 1xx/3xx: redirects are not followed on purpose (auth headers must not leak to another host).
        raise VendorBadResponse(f"unexpected HTTP {status} from vendor", details=details)


def _origin(url: str) -> tuple[str, str, int | None]:
    """Scheme, host and port (the default one spelt out), so ``https://shop`` and ``https://shop:443`` are one."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError):
        return ("", "", None)
    port = parsed.port or {"http": 80, "https": 443}.get(parsed.scheme)
    return (parsed.scheme, parsed.host.lower(), port)
