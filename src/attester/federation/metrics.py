"""Prometheus metrics of federation, in a registry of their own per application (so two
applications in one process, as in tests, never share counters). ``/metrics`` serves it."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        self.request_seconds = Histogram(
            "attester_upstream_request_seconds",
            "Time an upstream took to answer a lookup (answered or failed).",
            ["upstream"],
            registry=r,
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5, 10),
        )
        self.requests = Counter(
            "attester_upstream_requests",
            "Upstream lookups by outcome: found, not_found, timeout, unreachable, refused, "
            "circuit_open.",
            ["upstream", "outcome"],
            registry=r,
        )
        self.refused_certificates = Counter(
            "attester_upstream_refused_certificates",
            "Certificates an upstream sent that were not taken, by reason.",
            ["upstream", "reason"],
            registry=r,
        )
        self.circuit_open = Gauge(
            "attester_upstream_circuit_open",
            "1 while the upstream's circuit breaker keeps requests from going out.",
            ["upstream"],
            registry=r,
        )
        self.lookups = Counter(
            "attester_upstream_lookups",
            "Local misses by what happened: cached (a standing answer), asked, "
            "domain_refused (policy), not_served (no upstream takes such lookups).",
            ["result"],
            registry=r,
        )
        self.mirror_refreshes = Counter(
            "attester_mirror_refreshes",
            "Pull-mirror fetches by result: new, updated, unchanged, withdrawn, failed.",
            ["peer", "result"],
            registry=r,
        )
