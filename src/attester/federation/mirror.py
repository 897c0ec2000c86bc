"""Pull mirroring: keep the keys a peer supplied up to date by asking it again.

A VKS server such as keys.openpgp.org publishes no dumps, so a mirror of it is kept by
re-fetching, on a schedule, every fingerprint we know from it (fetched on a miss, imported
with ``attester import --mirror NAME``, or seeded by ``attester mirror-refresh NAME FPR``),
at most ``refresh_per_second`` requests a second. Each answer is merged like any other
(so a revocation reaches every copy), and replaces what the peer vouches for; a 404 means
the peer no longer publishes the key, so it vouches for none of its addresses any more.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta

from anyio import to_thread

from attester.federation.errors import CircuitOpen, UpstreamError
from attester.federation.metrics import Metrics
from attester.federation.upstream import GuardedUpstream
from attester.openpgp import CertificateError, ParsedCert
from attester.openpgp.types import Fingerprint
from attester.service.core import Core
from attester.service.ingest import vouched_user_ids
from attester.service.query import FingerprintQuery
from attester.store.errors import DatabaseUnavailable
from attester.store.views import Origin, OriginKind

log = logging.getLogger("attester.federation")


@dataclass
class RefreshSummary:
    new: int = 0
    updated: int = 0
    unchanged: int = 0
    withdrawn: int = 0  # the peer no longer serves the key
    failed: int = 0

    @property
    def total(self) -> int:
        return self.new + self.updated + self.unchanged + self.withdrawn + self.failed


class Mirror:
    """Pull mirroring of one upstream (its ``refresh_seconds`` > 0, or run by hand)."""

    def __init__(
        self,
        client: GuardedUpstream,
        core: Core,
        metrics: Metrics,
    ) -> None:
        self.client = client  # shared with the fallback: one circuit breaker per upstream
        self.config = client.config
        self.name = client.name
        self.metrics = metrics
        self.core = core
        self.clock = core.clock

    def due(self, limit: int) -> list[Fingerprint]:
        before = self.clock() - timedelta(seconds=self.config.refresh_seconds)
        return self.core.origins.due_for_refresh(self.name, before, limit)

    def refresh(
        self, fingerprints: Iterable[Fingerprint], stop: threading.Event | None = None
    ) -> RefreshSummary:
        """Fetch each fingerprint from the peer, no faster than its rate, and merge the
        answers. Stops early when ``stop`` is set or the peer's circuit opens."""
        summary = RefreshSummary()
        interval = 1.0 / self.config.refresh_per_second
        stop = stop or threading.Event()
        next_at = time.monotonic()
        for fpr in fingerprints:
            delay = next_at - time.monotonic()
            if stop.wait(delay) if delay > 0 else stop.is_set():
                break
            next_at = time.monotonic() + interval
            try:
                fetched = self.client.fetch(FingerprintQuery(fpr), self.config.timeout_seconds)
            except CircuitOpen:
                summary.failed += 1
                break
            except UpstreamError as e:
                log.info("mirror refresh of %s failed: %s", fpr, e)
                summary.failed += 1
                self.metrics.mirror_refreshes.labels(self.name, "failed").inc()
                continue
            result = self._merge(fpr, fetched.accepted)
            setattr(summary, result, getattr(summary, result) + 1)
            self.metrics.mirror_refreshes.labels(self.name, result).inc()
        return summary

    def _merge(self, fpr: Fingerprint, accepted: Iterable[ParsedCert]) -> str:
        now = self.clock()
        origin = Origin(OriginKind.MIRROR, self.name)
        certs = [c for c in accepted if c.fingerprint == fpr]
        with self.core.store.write() as tx:
            if not certs:
                self.core.ingest.withdraw(tx, fpr, self.name, now)
                return "withdrawn"
            cert = certs[0]
            try:
                merged = self.core.ingest.from_peer(tx, cert, origin, vouched_user_ids(cert), now)
            except CertificateError as e:
                log.warning("mirror refresh of %s not merged: %s", fpr, e)
                return "failed"
        return merged.result.value


class Mirrors:
    """Every upstream with ``refresh_seconds`` > 0, refreshed in the background."""

    def __init__(self, mirrors: list[Mirror]) -> None:
        self.mirrors = mirrors
        self._stop = threading.Event()

    @property
    def tick_seconds(self) -> float:
        shortest = min(m.config.refresh_seconds for m in self.mirrors)
        return min(60.0, max(1.0, shortest / 10))

    def run_once(self) -> dict[str, RefreshSummary]:
        """One round: each mirror refreshes what is due, as much as its rate allows in
        about one tick."""
        out: dict[str, RefreshSummary] = {}
        for m in self.mirrors:
            if self._stop.is_set():
                break
            batch = max(1, int(m.config.refresh_per_second * self.tick_seconds))
            out[m.name] = m.refresh(m.due(batch), self._stop)
        return out

    async def run_forever(self) -> None:
        while not self._stop.is_set():
            try:
                # anyio's run_sync, not asyncio.to_thread: cancelled through an anyio
                # cancel scope (app.py) it waits for the round's thread instead of
                # abandoning it with a database connection checked out.
                await to_thread.run_sync(self.run_once)
            except DatabaseUnavailable as e:  # said once per round; the next round retries
                log.warning("pull mirroring round skipped: %s", e)
            except Exception:  # a bad round must not end mirroring for good
                log.exception("pull mirroring round failed")
            await asyncio.sleep(self.tick_seconds)

    def stop(self) -> None:
        self._stop.set()
