"""``/ldap-relay``: FlowCrypt's browser asks its Attester to look an address up in a
company's LDAP directory (``?server=keys.<domain>&search=<address>``) before ``/pub``.

An open relay would let anyone make this server connect to any host, so only directories
the operator lists in ``ldap_relay_servers`` are ever contacted; any other ``server`` gets
the same 404 as "nothing found" (the browser reads a 404, and a 500, as "no key there").
Each lookup is an ``ldap`` upstream lookup (``federation.ldap``): bounded by the server's
``timeout_seconds`` and ``ldap_max_results``, guarded by a circuit breaker, and every key
checked as an upstream's answer is (unrevoked, with a valid user ID carrying exactly the
address asked about). At most ``ldap_relay_concurrency`` lookups run at once per process;
more are told to come back (429).

Relay answers are passed through and never stored: storing them would make a directory's
keys findable through every protocol (as if this server vouched for them) and let any
client copy a company's directory into this server one address at a time. A directory
whose keys should be served from here is configured as an ``ldap`` upstream instead, where
the domain policy, the cache and origin marking apply.
"""

from __future__ import annotations

import logging
import threading

from attester.config import Settings, Upstream
from attester.federation.breaker import CircuitBreaker
from attester.federation.errors import UpstreamError
from attester.federation.ldap import LdapUpstream
from attester.federation.metrics import Metrics
from attester.openpgp import ParsedCert, armor, publishable
from attester.openpgp.types import Email
from attester.service.errors import NotFound, RateLimited, Unavailable
from attester.service.ingest import vouched_user_ids
from attester.service.query import EmailQuery

log = logging.getLogger("attester.federation")


def _host(server: str) -> str:
    return server.strip().lower().rstrip(".")


class LdapRelay:
    def __init__(self, settings: Settings, metrics: Metrics) -> None:
        self.clients: dict[str, LdapUpstream] = {}
        for s in settings.ldap_relay_servers:
            config = Upstream.model_validate(
                {
                    "name": s.server,
                    "kind": "ldap",
                    "url": s.connect_url,
                    "timeout_seconds": s.timeout_seconds,
                    "lookups": ("email",),
                    "bind_dn": s.bind_dn,
                    "bind_password": s.bind_password,
                    "starttls": s.starttls,
                    "base_dn": s.base_dn,
                    "ca_file": s.ca_file,
                }
            )
            self.clients[s.server] = LdapUpstream(
                config,
                settings.limits,
                metrics,
                CircuitBreaker(
                    settings.upstream_breaker_failures, settings.upstream_breaker_reset_seconds
                ),
                max_results=settings.ldap_max_results,
                name=f"ldap-relay:{s.server}",
            )
        self._slots = threading.BoundedSemaphore(settings.ldap_relay_concurrency)

    def lookup(self, server: str, email: Email) -> list[ParsedCert]:
        """The keys the directory ``server`` has for ``email``, checked. Blocking (run it
        in a worker thread). Raises ``NotFound`` (no such relay server, or no key),
        ``RateLimited`` (too many lookups at once) or ``Unavailable`` (the directory
        failed)."""
        client = self.clients.get(_host(server))
        if client is None:
            raise NotFound(f"{server.strip()[:255]} is not a directory this server relays to")
        if not self._slots.acquire(blocking=False):
            raise RateLimited("Too many directory lookups are running; try again in a moment.", 1)
        try:
            fetched = client.fetch(EmailQuery(email), client.config.timeout_seconds)
        except UpstreamError as e:
            log.info("LDAP relay lookup failed: %s", e)
            raise Unavailable(f"The directory {client.config.name} could not be asked.") from e
        finally:
            self._slots.release()
        for r in fetched.refused:
            log.warning("LDAP relay: %s sent a key not passed on: %s", client.name, r.detail)
        unique = {c.fingerprint: c for c in fetched.accepted}
        if not unique:
            raise NotFound(f"No key for {email} in the directory {client.config.name}")
        return list(unique.values())


def armored(cert: ParsedCert) -> str:
    """What the relay serves of a checked key: its own clean form with the user IDs the
    directory published, as a peer's copy is served."""
    return armor(publishable(cert, vouched_user_ids(cert)))
