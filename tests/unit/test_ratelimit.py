"""Token buckets and client addresses of the per-client rate limits (a fake clock: nothing waits)."""

from __future__ import annotations

from app.api.ratelimit import TokenBucket


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_bucket_allows_its_burst_then_refills_at_its_rate() -> None:
    clock = Clock()
    bucket = TokenBucket(per_minute=6, burst=2, clock=clock)
    assert bucket.take("a") is None and bucket.take("a") is None
    assert bucket.take("a") == 10.0  # one token every 10 s
    assert bucket.take("b") is None  # per client
    clock.now += 5
    assert bucket.wait("a") == 5.0
    clock.now += 5
    assert bucket.wait("a") is None and bucket.take("a") is None


def test_zero_per_minute_is_no_limit_and_clients_are_bounded() -> None:
    assert all(TokenBucket(0, 1).take("a") is None for _ in range(100))
    bucket = TokenBucket(1, 1, clock=Clock(), max_keys=2)
    for key in ("a", "b", "c"):
        bucket.take(key)
    assert bucket.take("a") is None  # forgotten first (least recently seen), so it starts full again
