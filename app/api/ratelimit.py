"""Per-client rate limits: what an anonymous client may cost us (vendor calls) and how often it may guess the key.

Three limits, all token buckets keyed by the client's address (``client_address``):
- the public miss path: a request for a listing the store does not hold costs a vendor call, so each client gets
  ``CATALOG_RATE_LIMIT_MISSES_PER_MIN`` of them (bursts of ``..._MISS_BURST``); reads of stored data are not limited;
- thumbnails not in the cache (a vendor download and a render each; a client could otherwise ask for every width
  of every image): ``CATALOG_RATE_LIMIT_THUMBNAILS_PER_MIN`` (bursts of ``..._THUMBNAIL_BURST``, a few list screens);
- admin authentication failures: ``CATALOG_RATE_LIMIT_ADMIN_FAILURES_PER_MIN`` (bursts of ``..._ADMIN_BURST``); once
  a client is out of tokens every admin call of it answers 429 until it has one again, the right key included, so
  a key cannot be guessed at network speed.

Over a limit: 429 in the API's error shape with ``Retry-After``. The buckets live in this process (a client spread
over N nodes gets N times the rate: put the limit at the load balancer too when that matters); at most
``MAX_CLIENTS`` are remembered, the least recently seen forgotten first.

Behind a reverse proxy every request comes from the proxy's address: list the proxies in
``CATALOG_TRUSTED_PROXIES`` and the client is the right-most ``X-Forwarded-For`` entry that is not one of them.
``X-Forwarded-For`` from anyone else is ignored (a client could otherwise pick a fresh address per request).
"""

from __future__ import annotations

import ipaddress
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable

from fastapi import Request

MAX_CLIENTS = 100_000

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class TokenBucket:
    """``per_minute`` tokens a minute per key, at most ``burst`` saved up; 0 per minute: no limit."""

    def __init__(
        self, per_minute: float, burst: int, *, clock: Callable[[], float] = time.monotonic, max_keys: int = MAX_CLIENTS
    ) -> None:
        self.rate = per_minute / 60.0
        self.burst = max(1, burst)
        self._clock = clock
        self._max_keys = max_keys
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # key -> (tokens, when)

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    def _tokens(self, key: str) -> float:
        now = self._clock()
        tokens, when = self._buckets.get(key, (float(self.burst), now))
        return min(float(self.burst), tokens + (now - when) * self.rate)

    def _store(self, key: str, tokens: float) -> None:
        self._buckets[key] = (tokens, self._clock())
        self._buckets.move_to_end(key)
        while len(self._buckets) > self._max_keys:
            self._buckets.popitem(last=False)

    def wait(self, key: str) -> float | None:
        """Seconds until ``key`` has a token again, or ``None`` when it has one (nothing is taken)."""
        if not self.enabled:
            return None
        tokens = self._tokens(key)
        return None if tokens >= 1 else (1 - tokens) / self.rate

    def take(self, key: str) -> float | None:
        """Take a token: ``None`` when there was one, else the seconds until there is."""
        if not self.enabled:
            return None
        tokens = self._tokens(key)
        if tokens < 1:
            self._store(key, tokens)
            return (1 - tokens) / self.rate
        self._store(key, tokens - 1)
        return None


class ClientAddress:
    """Who a request comes from, trusting ``X-Forwarded-For`` only from the configured proxies."""

    def __init__(self, trusted_proxies: Iterable[str] = ()) -> None:
        self._trusted: tuple[Network, ...] = tuple(
            ipaddress.ip_network(p.strip(), strict=False) for p in trusted_proxies if p.strip()
        )

    def _is_trusted(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self._trusted)

    def of(self, request: Request) -> str:
        peer = request.client.host if request.client is not None else "unknown"
        if not self._trusted or not self._is_trusted(peer):
            return peer
        hops = [h.strip() for h in ",".join(request.headers.getlist("x-forwarded-for")).split(",") if h.strip()]
        for hop in reversed(hops):  # right to left: the entries our own proxies appended come last
            if not self._is_trusted(hop):
                return hop
        return peer


class RateLimits:
    """The service's limits, built from settings once (``app.bootstrap``) and shared by the endpoints."""

    def __init__(
        self,
        misses: TokenBucket,
        admin_failures: TokenBucket,
        clients: ClientAddress,
        thumbnails: TokenBucket | None = None,
    ) -> None:
        self.misses = misses
        self.admin_failures = admin_failures
        self.clients = clients
        #: thumbnails not made yet (each a vendor download and a render); cached ones are not limited
        self.thumbnails = thumbnails or TokenBucket(0, 1)
