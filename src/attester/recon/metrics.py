"""Prometheus metrics of reconciliation, per peer (its name, or its address), in the
registry ``/metrics`` serves (the application's federation registry)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class ReconMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        self.sessions = Counter(
            "attester_recon_sessions",
            "Reconciliation sessions by role (driver: the peer connected; answerer: we did) "
            "and outcome: ok, refused, timeout, unreachable, protocol_error, limit, error.",
            ["peer", "role", "outcome"],
            registry=r,
        )
        self.session_seconds = Histogram(
            "attester_recon_session_seconds",
            "Time one reconciliation session took (not counting key recovery).",
            ["peer", "role"],
            registry=r,
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300),
        )
        self.messages = Counter(
            "attester_recon_messages",
            "Recon messages by direction (in, out) and type (ReconRqstPoly, ReconRqstFull, "
            "Elements, FullElements, SyncFail, Flush, Done, ...): which paths sessions take.",
            ["peer", "direction", "type"],
            registry=r,
        )
        self.elements = Counter(
            "attester_recon_elements",
            "Set differences found: missing_here (keys the peer has and we lack), "
            "missing_there (keys we told the peer it lacks).",
            ["peer", "direction"],
            registry=r,
        )
        self.recovered = Counter(
            "attester_recon_recovered_keys",
            "Keys asked of the peer over /pks/hashquery, by result: new, updated, unchanged, "
            "rejected (failed validation), not_returned, unrequested (sent unasked, dropped), "
            "known (not asked: stored already, or what the peer sent before).",
            ["peer", "result"],
            registry=r,
        )
        self.limits = Counter(
            "attester_recon_limits_exceeded",
            "Peers cut off by a limit: message_bytes, outstanding, session_seconds, "
            "elements (recon_max_missing), hashquery_bytes.",
            ["peer", "limit"],
            registry=r,
        )
        self.refused_connections = Counter(
            "attester_recon_refused_connections",
            "Incoming recon connections closed at once: not_a_partner (address not on the "
            "allow-list), busy (recon_max_sessions reached, or a session with that peer runs).",
            ["reason"],
            registry=r,
        )
        self.last_success = Gauge(
            "attester_recon_last_success_timestamp_seconds",
            "When the last session with the peer completed (Unix time).",
            ["peer"],
            registry=r,
        )
