"""Where the service says "what lookups serve has changed" for changes outside the usual
write path of one certificate: removals from distribution made or lifted, which may touch
thousands of certificates at once, from any process (the CLI, another app server).

Nothing is cached today: every lookup reads the store, so a removal committed by any
process is in effect for the next request. A lookup cache must keep that promise (a
removal takes effect on every running server within 2 s): it subscribes here for changes
made in its own process, and needs its own cross-process signal for the others (e.g.
PostgreSQL ``NOTIFY`` sent from ``LookupInvalidation.changed``'s callers, or a short
time-to-live). ``Removals`` calls ``changed`` once per removal or restoration, after its
transaction committed.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger("attester.service")


@dataclass(frozen=True)
class Change:
    """What changed: certificates by primary fingerprint (hex), addresses, domains."""

    fingerprints: frozenset[str] = frozenset()
    emails: frozenset[str] = frozenset()
    domains: frozenset[str] = frozenset()


Listener = Callable[[Change], None]


class LookupInvalidation:
    def __init__(self) -> None:
        self._listeners: list[Listener] = []
        self._lock = threading.Lock()

    def subscribe(self, listener: Listener) -> None:
        with self._lock:
            self._listeners.append(listener)

    def changed(self, change: Change) -> None:
        """Tell every listener; one that fails is logged and does not stop the others (the
        change itself is committed already)."""
        with self._lock:
            listeners = list(self._listeners)
        for listener in listeners:
            try:
                listener(change)
            except Exception:
                log.exception("a lookup invalidation listener failed")
