"""A clock tests can move forward: real time plus an offset, so background work (the
outbox worker's retries) still sees time pass while a test jumps past an expiry."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


class Clock:
    def __init__(self) -> None:
        self.offset = timedelta(0)

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset

    @property
    def now(self) -> datetime:
        return self()

    @now.setter
    def now(self, value: datetime) -> None:
        # ``clock.now += timedelta(hours=1)`` moves the clock an hour ahead.
        self.offset = value - datetime.now(UTC)

    def advance(self, seconds: float) -> None:
        self.offset += timedelta(seconds=seconds)

    def reset(self) -> None:
        """Back to real time (one clock serves the session's app across tests)."""
        self.offset = timedelta(0)
