"""Circuit breakers, one per vendor: stop calling a vendor that keeps failing, and try it again later.

A dead vendor otherwise costs every miss a full round of HTTP retries and every sync a worker for as long as
its timeouts last. Once a vendor has failed ``failures`` times in a row, calls to it are refused at once
(misses answer 503 with ``Retry-After``, syncs and background refreshes are skipped) for a cool-down that
doubles each time it re-opens, up to ``max_open_s``. After the cool-down exactly one call is let through as a
probe: its success closes the breaker, its failure opens it again.

Only a call that ended in a ``VendorError`` after the HTTP client's own retries is a failure (a timeout is one).
A ``VendorNotFound`` (404) is neither: the vendor answered, so it is no failure, but a 404 is what any client can
cause at will by asking for ids that do not exist, so it must not count as a success either, or a stream of such
misses would keep resetting the count of a vendor that is failing every real call (and close its breaker after a
cool-down without any real call having succeeded). A 404 is ``NEUTRAL``: the count stays as it is, and a probe
that ends in one only frees the probe slot (the next call probes again). A catalog page answered 404 is neutral
too: it fails its sync, but says no more about the vendor's health than a product's 404. An item the vendor did
send that cannot be used is a success (a 200). Pure: the clock is injected.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from app.domain.models import utcnow
from app.errors import ServiceUnavailable, VendorError, VendorNotFound

Clock = Callable[[], datetime]


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class Verdict(StrEnum):
    """What one finished vendor call says about the vendor's health."""

    SUCCESS = "success"
    FAILURE = "failure"
    NEUTRAL = "neutral"  # a 404: the vendor answered, about an item any client may name


class CircuitOpen(ServiceUnavailable):
    code = "vendor_unavailable"


@dataclass(frozen=True, slots=True)
class BreakerSnapshot:
    state: BreakerState
    consecutive_failures: int
    opened_at: datetime | None
    retry_at: datetime | None


class CircuitBreaker:
    def __init__(
        self,
        vendor_id: str = "",
        *,
        failures: int = 5,
        open_s: float = 30.0,
        max_open_s: float = 600.0,
        clock: Clock = utcnow,
    ) -> None:
        if failures < 1:
            raise ValueError("failures must be >= 1")
        self.vendor_id = vendor_id
        self._threshold = failures
        self._open_s = open_s
        self._max_open_s = max(open_s, max_open_s)
        self._clock = clock
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._opens = 0  # consecutive opens without a success in between: the back-off exponent
        self._opened_at: datetime | None = None
        self._retry_at: datetime | None = None
        self._probing = False

    @property
    def state(self) -> BreakerState:
        return self._state

    def snapshot(self) -> BreakerSnapshot:
        return BreakerSnapshot(self._state, self._failures, self._opened_at, self._retry_at)

    def retry_after_s(self) -> float:
        """How long callers should wait before asking again (0 when calls are let through)."""
        if self._state is BreakerState.OPEN and self._retry_at is not None:
            return max(0.0, (self._retry_at - self._clock()).total_seconds())
        return 1.0 if self._probing else 0.0

    def blocked(self) -> bool:
        """Whether a call would be refused now; does not take the probe slot (admission checks use it)."""
        if self._state is BreakerState.OPEN:
            return self._retry_at is not None and self._clock() < self._retry_at
        return self._state is BreakerState.HALF_OPEN and self._probing

    def try_acquire(self) -> bool:
        """Take the right to call the vendor now; after the cool-down the first caller becomes the probe."""
        if self._state is BreakerState.CLOSED:
            return True
        if self.blocked():
            return False
        self._state = BreakerState.HALF_OPEN
        self._probing = True
        return True

    def record_success(self) -> None:
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._opens = 0
        self._opened_at = None
        self._retry_at = None
        self._probing = False

    def record_failure(self) -> None:
        self._failures += 1
        if self._state is BreakerState.HALF_OPEN or (
            self._state is BreakerState.CLOSED and self._failures >= self._threshold
        ):
            self._open()

    def record(self, verdict: Verdict) -> None:
        if verdict is Verdict.SUCCESS:
            self.record_success()
        elif verdict is Verdict.FAILURE:
            self.record_failure()
        else:
            self.release()

    def release(self) -> None:
        """A call that ended without a verdict (cancelled, not the vendor's fault): free the probe slot."""
        self._probing = False

    def refusal(self) -> CircuitOpen:
        return CircuitOpen(
            f"vendor {self.vendor_id!r} is failing; not calling it until it has cooled down",
            retry_after=max(1.0, self.retry_after_s()),
            details={"vendor_id": self.vendor_id, "breaker": self._state.value},
        )

    @contextlib.contextmanager
    def call(self) -> Iterator[None]:
        """Guard one vendor call (``with breaker.call(): await ...``); raises ``CircuitOpen`` when refused."""
        if not self.try_acquire():
            raise self.refusal()
        try:
            yield
        except VendorNotFound:
            self.record(Verdict.NEUTRAL)
            raise
        except VendorError:
            self.record_failure()
            raise
        except BaseException:
            self.release()
            raise
        self.record_success()

    def _open(self) -> None:
        now = self._clock()
        self._opens += 1
        duration = min(self._max_open_s, self._open_s * 2.0 ** min(self._opens - 1, 30))
        self._state = BreakerState.OPEN
        self._opened_at = now
        self._retry_at = now + timedelta(seconds=duration)
        self._probing = False


class BreakerRegistry:
    """The breakers of all vendors, created on first use with the same settings."""

    def __init__(self, **settings: Any) -> None:
        self._settings = settings
        self._breakers: dict[str, CircuitBreaker] = {}

    def get(self, vendor_id: str) -> CircuitBreaker:
        breaker = self._breakers.get(vendor_id)
        if breaker is None:
            breaker = self._breakers[vendor_id] = CircuitBreaker(vendor_id, **self._settings)
        return breaker

    def drop(self, vendor_id: str) -> None:
        self._breakers.pop(vendor_id, None)
