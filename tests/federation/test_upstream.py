"""One upstream as a client sees it: requests, checks on what comes back, and the single
boundary where httpx exceptions become federation errors (``httpx.MockTransport``; the
real peers are in test_fallback.py)."""

from __future__ import annotations

import httpx
import pytest

from attester.config import Upstream
from attester.federation import (
    CircuitBreaker,
    CircuitOpen,
    Metrics,
    UpstreamClient,
    UpstreamError,
    UpstreamRefused,
    UpstreamTimeout,
    UpstreamUnreachable,
)
from attester.federation.upstream import _mapped, check, request_for
from attester.openpgp import Limits
from attester.openpgp.types import Email, Fingerprint, KeyID
from attester.service.query import EmailQuery, FingerprintQuery, KeyIDQuery
from tests.support.keys import TestKey


def test_requests_per_kind() -> None:
    email = EmailQuery(Email.parse("Alice+x@Example.org"))
    fpr = FingerprintQuery(Fingerprint("AB" * 20))
    kid = KeyIDQuery(KeyID("CD" * 8))
    assert request_for("vks", email) == ("/vks/v1/by-email/alice%2Bx@example.org", {})
    assert request_for("vks", fpr) == (f"/vks/v1/by-fingerprint/{'AB' * 20}", {})
    assert request_for("vks", kid) == (f"/vks/v1/by-keyid/{'CD' * 8}", {})
    path, params = request_for("hkp", email)
    assert path == "/pks/lookup"
    assert params == {"op": "get", "options": "mr", "search": "alice+x@example.org", "exact": "on"}
    assert request_for("hkp", fpr)[1]["search"] == f"0x{'AB' * 20}"
    assert request_for("hkp", kid)[1]["search"] == f"0x{'CD' * 8}"


def test_check_takes_only_what_answers_the_query() -> None:
    alice = TestKey.generate("Alice <alice@example.org>")
    bob = TestKey.generate("Bob <bob@example.org>")
    gone = TestKey.generate("Gone <gone@example.org>")
    query = EmailQuery(Email.parse("ALICE@example.org"))
    accepted, refused = check(query, alice.public + bob.public, Limits())
    assert [c.fingerprint.hex for c in accepted] == [alice.fingerprint]
    assert [r.reason for r in refused] == ["wrong_address"]
    # A revoked key answers no address; a key that lost the user ID neither.
    _, refused = check(EmailQuery(Email.parse("gone@example.org")), gone.revoked_public(), Limits())
    assert [r.reason for r in refused] == ["revoked"]
    uid_revoked = alice.public + alice.user_id_revocation("Alice <alice@example.org>")
    assert check(query, uid_revoked, Limits())[0] == []
    # By fingerprint or key id, the certificate must carry that key; revoked is fine then.
    fq = FingerprintQuery(Fingerprint(alice.fingerprint))
    assert check(fq, bob.public, Limits())[1][0].reason == "wrong_key"
    assert len(check(fq, alice.revoked_public(), Limits())[0]) == 1
    assert check(KeyIDQuery(KeyID(alice.key_id)), alice.public, Limits())[0]
    assert check(KeyIDQuery(KeyID(bob.key_id)), alice.public, Limits())[1][0].reason == "wrong_key"
    # Garbage is refused, never raised.
    assert check(query, b"<html>oops</html>", Limits())[1][0].reason == "unparsable"


def _all_subclasses(cls: type[httpx.HTTPError]) -> list[type[httpx.HTTPError]]:
    out: list[type[httpx.HTTPError]] = []
    for sub in cls.__subclasses__():
        out.append(sub)
        out.extend(_all_subclasses(sub))
    return out


@pytest.mark.parametrize("exc", _all_subclasses(httpx.HTTPError), ids=lambda c: c.__name__)
def test_every_httpx_error_is_mapped(exc: type[httpx.HTTPError]) -> None:
    request = httpx.Request("GET", "http://127.0.0.1/")
    err: httpx.HTTPError
    if issubclass(exc, httpx.HTTPStatusError):
        err = exc("x", request=request, response=httpx.Response(500, request=request))
    elif issubclass(exc, httpx.RequestError):
        err = exc("x", request=request)
    else:
        err = exc("x")
    with pytest.raises(UpstreamError) as caught, _mapped("peer"):
        raise err
    assert caught.value.upstream == "peer" and "peer:" in str(caught.value)


def _client(handler: httpx.MockTransport, failures: int = 2) -> UpstreamClient:
    config = Upstream.model_validate({"name": "peer", "kind": "vks", "url": "http://127.0.0.1:9"})
    return UpstreamClient(
        config,
        httpx.Client(transport=handler),
        Limits(),
        Metrics(),
        CircuitBreaker(failures, reset_seconds=60),
    )


def test_statuses_and_the_breaker() -> None:
    alice = TestKey.generate("Alice <alice@example.org>")
    answers = iter([404, 200, 500, 503])
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.path)
        status = next(answers)
        return httpx.Response(status, content=alice.armored.encode() if status == 200 else b"")

    client = _client(httpx.MockTransport(handler))
    q = EmailQuery(Email.parse("alice@example.org"))
    assert client.fetch(q, 1).accepted == ()
    assert [c.fingerprint.hex for c in client.fetch(q, 1).accepted] == [alice.fingerprint]
    with pytest.raises(UpstreamRefused, match="HTTP 500"):
        client.fetch(q, 1)
    with pytest.raises(UpstreamRefused, match="HTTP 503"):
        client.fetch(q, 1)
    with pytest.raises(CircuitOpen):  # two failures in a row: not even asked
        client.fetch(q, 1)
    assert len(seen) == 4
    text = _metrics_text(client.metrics)
    assert 'attester_upstream_requests_total{outcome="refused",upstream="peer"} 2.0' in text
    assert 'attester_upstream_requests_total{outcome="circuit_open",upstream="peer"} 1.0' in text
    assert 'attester_upstream_circuit_open{upstream="peer"} 1.0' in text


def test_network_failures_are_errors_not_crashes() -> None:
    def timeout(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    def refused(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    q = FingerprintQuery(Fingerprint("AB" * 20))
    with pytest.raises(UpstreamTimeout):
        _client(httpx.MockTransport(timeout)).fetch(q, 1)
    with pytest.raises(UpstreamUnreachable):
        _client(httpx.MockTransport(refused)).fetch(q, 1)


def test_an_oversized_answer_is_refused() -> None:
    big = b"x" * (Limits().max_input_bytes * 16 + 1)
    client = _client(httpx.MockTransport(lambda r: httpx.Response(200, content=big)))
    with pytest.raises(UpstreamRefused, match="more than"):
        client.fetch(FingerprintQuery(Fingerprint("AB" * 20)), 1)


def _metrics_text(metrics: Metrics) -> str:
    from prometheus_client import generate_latest

    return generate_latest(metrics.registry).decode()
