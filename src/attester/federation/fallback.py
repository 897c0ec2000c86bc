"""Upstream lookups on a local miss: the core's ``Upstreams``.

``Fallback.ask`` is called by ``Core.lookup`` only when nothing local answers. Steps:

1. Decide whether to ask at all: some upstream must take this kind of lookup, an email's
   domain must pass the operator's ``DomainPolicy``, and no standing answer may be cached
   (hits stand for ``upstream_hit_ttl_seconds``, misses for the shorter
   ``upstream_miss_ttl_seconds``).
2. One request per query at a time in this process (concurrent identical misses wait for
   the first and then read what it stored).
3. Ask every eligible upstream whose circuit is not open, concurrently, and wait at most
   ``upstream_deadline_seconds`` in total; a late upstream's answer is dropped (its request
   ends at its own timeout, which is never longer than the deadline).
4. Store what was accepted in one transaction, through the one ingest path
   (``Ingest.from_peer``: merged with source ``upstream:<name>``, plus the user IDs that
   upstream published). Nothing becomes attested. Then record the answer in the cache.

The core then reads the results back through the same queries as mirrored keys, so
every source reaches the client through one decision point.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field

from attester.config import Settings
from attester.federation.errors import UpstreamError
from attester.federation.metrics import Metrics
from attester.federation.policy import DomainPolicy
from attester.federation.upstream import Fetched, GuardedUpstream, Lookup
from attester.openpgp import CertificateError
from attester.service.core import Core
from attester.service.ingest import vouched_user_ids
from attester.service.query import EmailQuery, FingerprintQuery, KeyIDQuery
from attester.store.views import Origin, OriginKind

log = logging.getLogger("attester.federation")


def query_key(query: Lookup) -> str:
    """The cache key of a query: a hash, so the cache holds no address in clear."""
    match query:
        case EmailQuery(email):
            text = f"email:{email.address}"
        case FingerprintQuery(fpr):
            text = f"fpr:{fpr.hex}"
        case KeyIDQuery(kid):
            text = f"kid:{kid.hex}"
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass
class _Flight:
    lock: threading.Lock = field(default_factory=threading.Lock)
    waiters: int = 0


class Fallback:
    def __init__(
        self,
        settings: Settings,
        core: Core,
        clients: Iterable[GuardedUpstream],
        metrics: Metrics,
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.core = core
        self.clock = core.clock
        self.origins = core.origins
        self.policy = DomainPolicy(settings.upstream_allow_domains, settings.upstream_deny_domains)
        self.clients = list(clients)  # in the configured order
        self._pool = ThreadPoolExecutor(
            max_workers=settings.upstream_concurrency, thread_name_prefix="upstream"
        )
        self._guard = threading.Lock()
        self._flights: dict[str, _Flight] = {}

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def ask(self, query: Lookup) -> bool:
        """Ask the upstreams about ``query`` unless step 1 says not to; store what they
        vouch for. True when the store may hold something new for the query."""
        eligible = [c for c in self.clients if c.serves(query)]
        if not eligible:
            self.metrics.lookups.labels("not_served").inc()
            return False
        if isinstance(query, EmailQuery) and not self.policy.allows(query.email):
            self.metrics.lookups.labels("domain_refused").inc()
            return False
        key = query_key(query)
        if self.origins.cached(key, self.clock()) is not None:
            self.metrics.lookups.labels("cached").inc()
            return False
        with self._single_flight(key):
            if self.origins.cached(key, self.clock()) is not None:
                # Another request asked while this one waited: read what it stored.
                self.metrics.lookups.labels("cached").inc()
                return True
            self.metrics.lookups.labels("asked").inc()
            answers, failed = self._ask_all(eligible, query)
            self._store(key, answers, failed)
        return True

    @contextmanager
    def _single_flight(self, key: str) -> Iterator[None]:
        with self._guard:
            flight = self._flights.setdefault(key, _Flight())
            flight.waiters += 1
        try:
            with flight.lock:
                yield
        finally:
            with self._guard:
                flight.waiters -= 1
                if not flight.waiters:
                    del self._flights[key]

    def _ask_all(self, clients: list[GuardedUpstream], query: Lookup) -> tuple[list[Fetched], int]:
        deadline = self.settings.upstream_deadline_seconds
        futures: dict[Future[Fetched], GuardedUpstream] = {
            self._pool.submit(c.fetch, query, min(c.config.timeout_seconds, deadline)): c
            for c in clients
        }
        done, late = wait(futures, timeout=deadline)
        answers: list[Fetched] = []
        failed = len(late)
        for f in late:
            f.cancel()
            log.info("upstream %s missed the %.1fs deadline", futures[f].name, deadline)
        for f in done:
            try:
                fetched = f.result()
            except UpstreamError as e:
                log.info("upstream lookup failed: %s", e)
                failed += 1
                continue
            for r in fetched.refused:
                log.warning(
                    "upstream %s sent a certificate not taken: %s", fetched.upstream, r.detail
                )
            answers.append(fetched)
        return answers, failed

    def _store(self, key: str, answers: list[Fetched], failed: int) -> None:
        now = self.clock()
        found = False
        with self.core.store.write() as tx:
            for answer in answers:
                origin = Origin(OriginKind.UPSTREAM, answer.upstream)
                for cert in answer.accepted:
                    try:
                        self.core.ingest.from_peer(tx, cert, origin, vouched_user_ids(cert), now)
                    except CertificateError as e:
                        # The merged certificate would exceed a limit: keep what is stored.
                        log.warning("certificate from %s not merged: %s", answer.upstream, e)
                        continue
                    found = True
            # A miss stands only when some upstream really answered; if all failed, the
            # next lookup asks again (the breakers keep a dead upstream from being hammered).
            if found or answers:
                ttl = (
                    self.settings.upstream_hit_ttl_seconds
                    if found
                    else self.settings.upstream_miss_ttl_seconds
                )
                tx.origins.remember_lookup(key, found, now, ttl)
        if failed and not found:
            log.info("%d upstream(s) failed or missed the deadline; nothing found", failed)
