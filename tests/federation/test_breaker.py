"""The per-upstream circuit breaker: closed, open, half-open."""

from __future__ import annotations

from attester.federation.breaker import CircuitBreaker


class FakeTime:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def state(b: CircuitBreaker) -> str:
    return b.state.value


def test_opens_after_consecutive_failures_and_recovers() -> None:
    t = FakeTime()
    b = CircuitBreaker(failures=3, reset_seconds=10, monotonic=t)
    b.failure()
    b.failure()
    b.success()  # a success in between starts the count again
    b.failure()
    b.failure()
    assert state(b) == "closed" and b.allow()
    b.failure()
    assert state(b) == "open" and not b.allow()
    t.t += 9.9
    assert not b.allow()
    t.t += 0.2
    assert state(b) == "half_open"
    assert b.allow()  # one trial request...
    assert not b.allow()  # ...at a time
    b.failure()  # the trial failed: open for another period
    assert state(b) == "open" and not b.allow()
    t.t += 10
    assert b.allow()
    b.success()
    assert state(b) == "closed" and b.allow() and b.allow()
