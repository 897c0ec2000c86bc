"""What the application runs for federation, built once in its lifespan: the HTTP client
for upstreams, one client (and circuit breaker) per configured upstream (HTTP or LDAP), the
fallback the core asks on a local miss, the pull mirrors, the LDAP relay of FlowCrypt's
browser, and their metrics."""

from __future__ import annotations

from typing import Any

import httpx

from attester import __version__
from attester.config import Settings
from attester.federation.breaker import CircuitBreaker
from attester.federation.fallback import Fallback
from attester.federation.ldap import LdapUpstream
from attester.federation.metrics import Metrics
from attester.federation.mirror import Mirror, Mirrors
from attester.federation.relay import LdapRelay
from attester.federation.upstream import GuardedUpstream, UpstreamClient
from attester.outbound import tls_context
from attester.service.core import Core


class Federation:
    def __init__(
        self,
        settings: Settings,
        core: Core,
        *,
        metrics: Metrics | None = None,
        transport: httpx.BaseTransport | None = None,
        async_transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.metrics = metrics or Metrics()
        common: dict[str, Any] = {
            "follow_redirects": True,
            "max_redirects": 3,
            "headers": {"User-Agent": f"Attester/{__version__} (federation)"},
            "verify": tls_context(),
            "limits": httpx.Limits(
                max_connections=settings.upstream_max_connections,
                max_keepalive_connections=settings.upstream_keepalive_connections,
            ),
        }
        self.http = httpx.Client(transport=transport, **common)  # pull mirroring (threads)
        self.ahttp = httpx.AsyncClient(transport=async_transport, **common)  # lookups
        self.clients: dict[str, GuardedUpstream] = {}
        for u in settings.upstreams:
            breaker = CircuitBreaker(
                settings.upstream_breaker_failures, settings.upstream_breaker_reset_seconds
            )
            self.clients[u.name] = (
                LdapUpstream(
                    u, settings.limits, self.metrics, breaker, max_results=settings.ldap_max_results
                )
                if u.kind == "ldap"
                else UpstreamClient(
                    u, self.http, settings.limits, self.metrics, breaker, ahttp=self.ahttp
                )
            )
        # Nothing leaves the server unless the operator configured an upstream.
        self.fallback = (
            Fallback(settings, core, self.clients.values(), self.metrics) if self.clients else None
        )
        mirrors = [
            Mirror(c, core, self.metrics)
            for c in self.clients.values()
            if c.config.refresh_seconds > 0
        ]
        self.mirrors = Mirrors(mirrors) if mirrors else None
        # /ldap-relay only for the directories the operator listed: never an open relay.
        self.relay = LdapRelay(settings, self.metrics) if settings.ldap_relay_servers else None
        self._core = core

    def mirror(self, name: str) -> Mirror:
        """Pull mirroring of one configured upstream, scheduled or not (the CLI)."""
        return Mirror(self.clients[name], self._core, self.metrics)

    def close(self) -> None:
        if self.mirrors is not None:
            self.mirrors.stop()
        self.http.close()

    async def aclose(self) -> None:
        """``close``, and the client lookups use (made and used on the app's loop)."""
        self.close()
        if self.fallback is not None:
            await self.fallback.aclose()
        await self.ahttp.aclose()
