"""One upstream keyserver as a client sees it: build the request for a query (VKS or HKP),
fetch it over ``httpx``, and check what came back before anything of it is kept.

What an upstream sends is taken only if the certificate parses and has a validly
self-signed component, and only for what was asked: by fingerprint or key id the
certificate must carry that key; by email it must be unrevoked and carry a valid,
unrevoked user ID with exactly that address. Everything else is refused and counted.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from urllib.parse import quote

import httpx

from attester.config import Upstream
from attester.federation.breaker import CircuitBreaker
from attester.federation.errors import (
    CircuitOpen,
    UpstreamError,
    UpstreamRefused,
    UpstreamTimeout,
    UpstreamUnreachable,
)
from attester.federation.metrics import Metrics
from attester.openpgp import CertificateError, Limits, ParsedCert, Rejected, parse_keyring
from attester.service.query import EmailQuery, FingerprintQuery, KeyIDQuery, Query

Lookup = EmailQuery | FingerprintQuery | KeyIDQuery

_KINDS: dict[type[Query], str] = {
    EmailQuery: "email",
    FingerprintQuery: "fingerprint",
    KeyIDQuery: "keyid",
}


@dataclass(frozen=True)
class Refusal:
    reason: str  # a short code, also the metrics label
    detail: str  # a sentence for the log


@dataclass(frozen=True)
class Fetched:
    """One upstream's checked answer: what may be kept, and what was refused."""

    upstream: str
    accepted: tuple[ParsedCert, ...]
    refused: tuple[Refusal, ...] = ()


def request_for(kind: str, query: Lookup) -> tuple[str, dict[str, str]]:
    """Path and query parameters that ask an upstream of this kind for ``query``."""
    if kind == "vks":
        match query:
            case EmailQuery(email):
                return f"/vks/v1/by-email/{quote(email.address, safe='@')}", {}
            case FingerprintQuery(fpr):
                return f"/vks/v1/by-fingerprint/{fpr.hex}", {}
            case KeyIDQuery(kid):
                return f"/vks/v1/by-keyid/{kid.hex}", {}
    match query:
        case EmailQuery(email):
            search, exact = email.address, {"exact": "on"}
        case FingerprintQuery(fpr):
            search, exact = f"0x{fpr.hex}", {}
        case KeyIDQuery(kid):
            search, exact = f"0x{kid.hex}", {}
    return "/pks/lookup", {"op": "get", "options": "mr", "search": search, **exact}


def check(query: Lookup, data: bytes, limits: Limits) -> tuple[list[ParsedCert], list[Refusal]]:
    """Split an upstream's answer into the certificates that answer ``query`` and
    refusals. ``limits`` bound each certificate as an upload would be bound."""
    try:
        items = parse_keyring(data, limits)
    except CertificateError as e:
        return [], [Refusal("unparsable", str(e))]
    accepted: list[ParsedCert] = []
    refused: list[Refusal] = []
    for item in items:
        if isinstance(item, Rejected):
            refused.append(Refusal("invalid", item.reason))
            continue
        problem = _mismatch(query, item)
        if problem:
            refused.append(problem)
        else:
            accepted.append(item)
    return accepted, refused


def _mismatch(query: Lookup, cert: ParsedCert) -> Refusal | None:
    match query:
        case EmailQuery(email):
            if cert.revoked:
                return Refusal("revoked", f"{cert.fingerprint} is revoked")
            if not any(u.email == email and not u.revoked for u in cert.user_ids):
                return Refusal(
                    "wrong_address",
                    f"{cert.fingerprint} has no valid user ID with the address asked for",
                )
        case FingerprintQuery(fpr):
            if fpr not in (cert.fingerprint, *(k.fingerprint for k in cert.subkeys)):
                return Refusal("wrong_key", f"{cert.fingerprint} does not carry key {fpr}")
        case KeyIDQuery(kid):
            if kid not in cert.key_ids:
                return Refusal("wrong_key", f"{cert.fingerprint} does not carry key id {kid}")
    return None


@contextmanager
def _mapped(name: str) -> Iterator[None]:
    """The one place ``httpx`` exceptions become federation errors."""
    try:
        yield
    except httpx.TimeoutException as e:
        raise UpstreamTimeout(name, "no answer in time") from e
    except (httpx.NetworkError, httpx.ProxyError, httpx.UnsupportedProtocol) as e:
        raise UpstreamUnreachable(name, f"cannot connect ({type(e).__name__})") from e
    except (httpx.ProtocolError, httpx.DecodingError, httpx.TooManyRedirects) as e:
        raise UpstreamRefused(name, f"a broken HTTP answer ({type(e).__name__})") from e
    except httpx.HTTPError as e:
        raise UpstreamUnreachable(name, f"the request failed ({type(e).__name__})") from e


class GuardedUpstream:
    """One configured upstream as the fallback and the mirrors see it: asked through
    ``fetch``, guarded by its circuit breaker, counted, and its answer checked. Subclasses
    say how to ask (``_answer``): over HTTP (``UpstreamClient``) or LDAP
    (``federation.ldap.LdapUpstream``)."""

    def __init__(
        self,
        config: Upstream,
        limits: Limits,
        metrics: Metrics,
        breaker: CircuitBreaker,
        *,
        name: str | None = None,  # the metrics label; the configured name by default
    ) -> None:
        self.config = config
        self.name = name or config.name
        self.metrics = metrics
        self.breaker = breaker
        # An answer may hold several certificates (HKP by address); each is bounded alone.
        self.max_body = limits.max_input_bytes * 16
        self.limits = replace(limits, max_input_bytes=self.max_body)
        metrics.circuit_open.labels(self.name).set(0)

    def serves(self, query: Query) -> bool:
        return _KINDS.get(type(query)) in self.config.lookups

    def fetch(self, query: Lookup, timeout: float) -> Fetched:
        """Ask, and check the answer. ``Fetched`` with nothing accepted means the upstream
        has no such key (404) or sent only refused ones; failures raise ``UpstreamError``
        and count against the breaker."""
        if not self.breaker.allow():
            self.metrics.requests.labels(self.name, "circuit_open").inc()
            self.metrics.circuit_open.labels(self.name).set(1)
            raise CircuitOpen(self.name, "skipped: too many recent failures")
        start = time.monotonic()
        try:
            blocks = self._answer(query, timeout)
        except UpstreamError as e:
            self.breaker.failure()
            outcome = {UpstreamTimeout: "timeout", UpstreamUnreachable: "unreachable"}
            self.metrics.requests.labels(self.name, outcome.get(type(e), "refused")).inc()
            raise
        finally:
            self.metrics.request_seconds.labels(self.name).observe(time.monotonic() - start)
            self.metrics.circuit_open.labels(self.name).set(
                0 if self.breaker.state.value == "closed" else 1
            )
        self.breaker.success()
        self.metrics.circuit_open.labels(self.name).set(0)
        if blocks is None:
            self.metrics.requests.labels(self.name, "not_found").inc()
            return Fetched(self.name, ())
        accepted: list[ParsedCert] = []
        refused: list[Refusal] = []
        for block in blocks:  # each on its own: garbage in one spoils none of the others
            good, bad = check(query, block, self.limits)
            accepted += good
            refused += bad
        for r in refused:
            self.metrics.refused_certificates.labels(self.name, r.reason).inc()
        self.metrics.requests.labels(self.name, "found" if accepted else "not_found").inc()
        return Fetched(self.name, tuple(accepted), tuple(refused))

    def _answer(self, query: Lookup, timeout: float) -> list[bytes] | None:
        """What the upstream sent for ``query``, as blocks each checked on its own, or None
        when it has no such key. Raises ``UpstreamError``."""
        raise NotImplementedError


class UpstreamClient(GuardedUpstream):
    """A VKS or HKP keyserver, asked over ``httpx``."""

    def __init__(
        self,
        config: Upstream,
        http: httpx.Client,
        limits: Limits,
        metrics: Metrics,
        breaker: CircuitBreaker,
    ) -> None:
        super().__init__(config, limits, metrics, breaker)
        self.http = http

    def _answer(self, query: Lookup, timeout: float) -> list[bytes] | None:
        body = self._get(query, timeout)
        return None if body is None else [body]

    def _get(self, query: Lookup, timeout: float) -> bytes | None:
        path, params = request_for(self.config.kind, query)
        with (
            _mapped(self.name),
            self.http.stream(
                "GET",
                self.config.url + path,
                params=params,
                timeout=timeout,
                headers={"Accept": "application/pgp-keys, text/plain;q=0.9, */*;q=0.1"},
            ) as r,
        ):
            if r.status_code == 404:
                return None
            if r.status_code != 200:
                raise UpstreamRefused(self.name, f"answered HTTP {r.status_code}")
            chunks: list[bytes] = []
            size = 0
            for chunk in r.iter_bytes():
                size += len(chunk)
                if size > self.max_body:
                    raise UpstreamRefused(self.name, f"answered more than {self.max_body} bytes")
                chunks.append(chunk)
        return b"".join(chunks)
