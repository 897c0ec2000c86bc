"""A per-upstream circuit breaker, kept in process.

Closed: every request goes out. After ``failures`` consecutive failures it opens: no
request goes out for ``reset_seconds``. Then it is half-open: one trial request goes out;
its success closes the circuit, its failure opens it again for another period.
"""

from __future__ import annotations

import enum
import threading
import time
from collections.abc import Callable


class State(enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    def __init__(
        self,
        failures: int,
        reset_seconds: float,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.threshold = failures
        self.reset_seconds = reset_seconds
        self._now = monotonic
        self._lock = threading.Lock()
        self._failures = 0
        self._opened_at: float | None = None
        self._trial = False  # a half-open trial request is out

    @property
    def state(self) -> State:
        with self._lock:
            return self._state()

    def _state(self) -> State:
        if self._opened_at is None:
            return State.CLOSED
        if self._now() - self._opened_at >= self.reset_seconds:
            return State.HALF_OPEN
        return State.OPEN

    def allow(self) -> bool:
        """May a request go out now? In half-open state only one at a time may."""
        with self._lock:
            state = self._state()
            if state is State.CLOSED:
                return True
            if state is State.HALF_OPEN and not self._trial:
                self._trial = True
                return True
            return False

    def success(self) -> None:
        with self._lock:
            self._failures = 0
            self._opened_at = None
            self._trial = False

    def failure(self) -> None:
        with self._lock:
            self._failures += 1
            self._trial = False
            if self._opened_at is not None or self._failures >= self.threshold:
                self._opened_at = self._now()
