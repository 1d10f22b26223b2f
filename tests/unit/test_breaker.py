"""The per-vendor circuit breaker's state machine, on an injected clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from app.errors import ServiceUnavailable, VendorError, VendorNotFound, VendorTimeout
from app.ingest.breaker import BreakerRegistry, BreakerState, CircuitBreaker, CircuitOpen, Verdict


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2024, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def fail(breaker: CircuitBreaker, error: Exception | None = None) -> None:
    with pytest.raises(type(error) if error else VendorError), breaker.call():
        raise error or VendorTimeout("slow")


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def breaker(clock: Clock) -> CircuitBreaker:
    return CircuitBreaker("v1", failures=3, open_s=10, max_open_s=35, clock=clock)


def test_opens_after_consecutive_failures_only(breaker: CircuitBreaker, clock: Clock) -> None:
    fail(breaker)
    fail(breaker)
    with breaker.call():
        pass  # a success in between resets the count
    fail(breaker)
    fail(breaker)
    assert breaker.state is BreakerState.CLOSED
    assert breaker.snapshot().consecutive_failures == 2
    fail(breaker)
    snap = breaker.snapshot()
    assert snap.state is BreakerState.OPEN
    assert snap.opened_at == clock.now
    assert snap.retry_at == clock.now + timedelta(seconds=10)


def test_open_refuses_at_once_with_the_remaining_time(breaker: CircuitBreaker, clock: Clock) -> None:
    for _ in range(3):
        fail(breaker)
    clock.advance(4)
    assert breaker.blocked()
    assert breaker.retry_after_s() == pytest.approx(6)
    with pytest.raises(CircuitOpen) as refused, breaker.call():
        raise AssertionError("must not be called")
    assert isinstance(refused.value, ServiceUnavailable)
    assert refused.value.retry_after == pytest.approx(6)


def test_half_open_lets_one_probe_through_and_success_closes(breaker: CircuitBreaker, clock: Clock) -> None:
    for _ in range(3):
        fail(breaker)
    clock.advance(10)
    assert not breaker.blocked()
    assert breaker.try_acquire()
    assert breaker.state is BreakerState.HALF_OPEN
    assert breaker.blocked()
    assert not breaker.try_acquire()  # only one probe at a time
    breaker.record_success()
    snap = breaker.snapshot()
    assert (snap.state, snap.consecutive_failures, snap.opened_at, snap.retry_at) == (
        BreakerState.CLOSED,
        0,
        None,
        None,
    )


def test_failed_probe_reopens_with_doubling_capped_cooldown(breaker: CircuitBreaker, clock: Clock) -> None:
    for _ in range(3):
        fail(breaker)
    durations = []
    for _ in range(4):
        retry_at = breaker.snapshot().retry_at
        assert retry_at is not None
        durations.append((retry_at - clock.now).total_seconds())
        clock.now = retry_at
        fail(breaker)  # the probe fails
        assert breaker.state is BreakerState.OPEN
    assert durations == [10, 20, 35, 35]
    clock.now = breaker.snapshot().retry_at or clock.now
    with breaker.call():
        pass
    assert breaker.state is BreakerState.CLOSED
    for _ in range(3):
        fail(breaker)
    retry_at = breaker.snapshot().retry_at
    assert retry_at == clock.now + timedelta(seconds=10)  # a success resets the back-off


def test_not_found_is_not_a_vendor_failure(breaker: CircuitBreaker) -> None:
    for _ in range(10):
        fail(breaker, VendorNotFound("no such item"))
    assert breaker.state is BreakerState.CLOSED
    assert breaker.snapshot().consecutive_failures == 0


def test_not_found_does_not_reset_a_failing_vendor(breaker: CircuitBreaker) -> None:
    """Misses for ids that do not exist (any client can send them) must not keep a failing vendor's breaker shut."""
    fail(breaker)
    fail(breaker)
    for _ in range(10):
        fail(breaker, VendorNotFound("no such item"))
    assert breaker.snapshot().consecutive_failures == 2
    fail(breaker)
    assert breaker.state is BreakerState.OPEN


def test_a_probe_answered_404_neither_closes_nor_reopens(breaker: CircuitBreaker, clock: Clock) -> None:
    for _ in range(3):
        fail(breaker)
    clock.advance(10)
    fail(breaker, VendorNotFound("no such item"))  # the probe
    assert breaker.state is BreakerState.HALF_OPEN
    assert breaker.snapshot().consecutive_failures == 3
    assert not breaker.blocked()  # the slot is free: the next call is the probe
    with breaker.call():
        pass
    assert breaker.snapshot().state is BreakerState.CLOSED


@pytest.mark.parametrize(
    ("verdict", "state", "failures"),
    [
        (Verdict.SUCCESS, BreakerState.CLOSED, 0),
        (Verdict.FAILURE, BreakerState.OPEN, 3),
        (Verdict.NEUTRAL, BreakerState.CLOSED, 2),
    ],
)
def test_record_takes_a_verdict(breaker: CircuitBreaker, verdict: Verdict, state: BreakerState, failures: int) -> None:
    fail(breaker)
    fail(breaker)
    breaker.record(verdict)
    assert (breaker.state, breaker.snapshot().consecutive_failures) == (state, failures)


def test_probe_ending_without_verdict_frees_the_slot(breaker: CircuitBreaker, clock: Clock) -> None:
    for _ in range(3):
        fail(breaker)
    clock.advance(10)
    with pytest.raises(KeyError), breaker.call():
        raise KeyError("not the vendor's fault")
    assert breaker.state is BreakerState.HALF_OPEN
    assert breaker.try_acquire()


def test_registry_keeps_one_breaker_per_vendor(clock: Clock) -> None:
    registry = BreakerRegistry(failures=1, open_s=5, clock=clock)
    fail(registry.get("a"))
    assert registry.get("a").state is BreakerState.OPEN
    assert registry.get("b").state is BreakerState.CLOSED
    registry.drop("a")
    assert registry.get("a").state is BreakerState.CLOSED
