"""Upstream lookups on a local miss: the core's ``Upstreams``.

``Fallback.ask`` is called by ``Core.lookup`` only when nothing local answers. Steps:

1. Decide whether to ask at all: some upstream must take this kind of lookup, an email's
   domain must be one the operator's policy lets be looked up upstream (the ``upstream``
   of its domain rule, which may also name the only upstreams to ask, e.g. the company
   directory; ``upstream_allow_domains`` / ``upstream_deny_domains`` where no rule says),
   and no standing answer may be cached
   (hits stand for ``upstream_hit_ttl_seconds``, misses for the shorter
   ``upstream_miss_ttl_seconds``).
2. One request per query at a time in this process (concurrent identical misses wait for
   the first and then read what it stored).
3. Ask every eligible upstream whose circuit is not open, concurrently, on the event loop
   (at most ``upstream_concurrency`` requests in flight, none holding a request thread),
   and wait at most ``upstream_deadline_seconds`` in total; a late upstream is cancelled.
   An email lookup ends as soon as one upstream sent a valid key for the address.
4. Store what was accepted in one transaction, through the one ingest path
   (``Ingest.from_peer``: merged with source ``upstream:<name>``, plus the user IDs that
   upstream published). Nothing becomes attested. Then record the answer in the cache.

The core then reads the results back through the same queries as mirrored keys, so
every source reaches the client through one decision point.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from asyncio import FIRST_COMPLETED
from collections.abc import Iterable

from anyio import to_thread

from attester.config import Settings
from attester.federation.errors import UpstreamError
from attester.federation.metrics import Metrics
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
        self.policy = core.policy  # the policy in force, reloadable
        self.clients = list(clients)  # in the configured order
        # Upstream requests in flight at once, over all lookups of this process. They wait
        # on the event loop, not in a thread: a slow upstream holds no request thread.
        self._slots = asyncio.Semaphore(settings.upstream_concurrency)
        self._flights: dict[str, asyncio.Lock] = {}
        self._stragglers: set[asyncio.Task[Fetched]] = set()

    async def ask(self, query: Lookup) -> bool:
        """Ask the upstreams about ``query`` unless step 1 says not to; store what they
        vouch for. True when the store may hold something new for the query."""
        eligible = [c for c in self.clients if c.serves(query)]
        if not eligible:
            self.metrics.lookups.labels("not_served").inc()
            return False
        if isinstance(query, EmailQuery):
            rule = self.policy.current.for_email(query.email)
            eligible = [c for c in eligible if rule.asks(c.name)]
            if not eligible:
                self.metrics.lookups.labels("domain_refused").inc()
                return False
        key = query_key(query)
        if await to_thread.run_sync(self.origins.cached, key, self.clock()) is not None:
            self.metrics.lookups.labels("cached").inc()
            return False
        flight = self._flights.setdefault(key, asyncio.Lock())
        try:
            async with flight:
                if await to_thread.run_sync(self.origins.cached, key, self.clock()) is not None:
                    # Another request asked while this one waited: read what it stored.
                    self.metrics.lookups.labels("cached").inc()
                    return True
                self.metrics.lookups.labels("asked").inc()
                answers, failed = await self._ask_all(eligible, query)
                await to_thread.run_sync(self._store, key, answers, failed)
        finally:
            if not flight.locked():
                self._flights.pop(key, None)
        return True

    async def _one(self, client: GuardedUpstream, query: Lookup, timeout: float) -> Fetched:
        async with self._slots:
            return await client.afetch(query, timeout)

    async def _ask_all(
        self, clients: list[GuardedUpstream], query: Lookup
    ) -> tuple[list[Fetched], int]:
        """Every eligible upstream at once, within the deadline. An email lookup ends as
        soon as one upstream answered with a key that passed the checks; the others are
        cancelled (their answers would only add copies)."""
        deadline = self.settings.upstream_deadline_seconds
        loop = asyncio.get_running_loop()
        end = loop.time() + deadline
        tasks = {
            asyncio.create_task(self._one(c, query, min(c.config.timeout_seconds, deadline))): c
            for c in clients
        }
        pending = set(tasks)
        answers: list[Fetched] = []
        failed = 0
        try:
            while pending:
                done, pending = await asyncio.wait(
                    pending, timeout=max(0.0, end - loop.time()), return_when=FIRST_COMPLETED
                )
                late = not done
                if late:
                    # Each request ends at its own timeout (never past the deadline) and
                    # counts as a timeout; a moment's grace lets it say so.
                    done, pending = await asyncio.wait(pending, timeout=0.2)
                for t in done:
                    try:
                        fetched = t.result()
                    except UpstreamError as e:
                        log.info("upstream lookup failed: %s", e)
                        failed += 1
                        continue
                    for r in fetched.refused:
                        log.warning(
                            "upstream %s sent a certificate not taken: %s",
                            fetched.upstream,
                            r.detail,
                        )
                    answers.append(fetched)
                if late:
                    for t in pending:
                        log.info("upstream %s missed the %.1fs deadline", tasks[t].name, deadline)
                    failed += len(pending)
                    break
                if pending and isinstance(query, EmailQuery) and any(a.accepted for a in answers):
                    # The wait ends; the others finish on their own (within their timeout,
                    # counted as usual), their answers unused.
                    self._stragglers |= pending
                    for t in pending:
                        t.add_done_callback(self._straggler_done)
                    pending = set()
                    break
        finally:
            for t in pending:
                t.cancel()
            if pending:
                await asyncio.wait(pending)
        return answers, failed

    def _straggler_done(self, task: asyncio.Task[Fetched]) -> None:
        self._stragglers.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved: a failure was counted and logged by afetch

    async def aclose(self) -> None:
        """Cancel the requests still running after their lookups were answered."""
        for t in list(self._stragglers):
            t.cancel()
        if self._stragglers:
            await asyncio.wait(list(self._stragglers))

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
