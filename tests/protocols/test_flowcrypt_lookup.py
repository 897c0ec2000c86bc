"""FlowCrypt Attester lookups over real HTTP on loopback (``flowcrypt-attester-api.md``)."""

from __future__ import annotations

import pytest

from attester.config import Settings
from attester.openpgp import parse_certificates
from attester.service.attestation import Attestation
from tests.support.keys import TestKey
from tests.support.server import AppServer, Server


def _error(resp_json: dict[str, object], code: int) -> None:
    assert resp_json["code"] == code
    assert isinstance(resp_json["message"], str) and resp_json["message"]
    assert resp_json["error"] == {"code": code, "message": resp_json["message"]}


@pytest.fixture
def alice(attestation: Attestation) -> TestKey:
    key = TestKey.generate("Alice <alice+pgp@example.org>").with_user_id("Alice <a@hidden.example>")
    summary = attestation.imports.keyring(key.public, attest_emails=True, domains=["example.org"])
    assert summary.new == 1 and summary.attested == 1
    return key


def test_alive(server: Server) -> None:
    r = server.client.get("/")
    assert r.status_code == 200 and r.json() == {"alive": True}


def test_get_pub_by_email_serves_only_attested_user_ids(server: Server, alice: TestKey) -> None:
    r = server.client.get("/pub/alice+pgp@example.org")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    assert r.text.count("BEGIN PGP PUBLIC KEY BLOCK") == 1
    [cert] = parse_certificates(r.content)
    assert str(cert.fingerprint) == alice.fingerprint
    assert [u.text for u in cert.user_ids] == ["Alice <alice+pgp@example.org>"]


@pytest.mark.parametrize(
    "path",
    [
        "/pub/alice%2Bpgp%40example.org",
        "/pub/ALICE+PGP@EXAMPLE.ORG",
        "/pub/%20alice+pgp@example.org%20",
    ],
)
def test_address_normalisation(server: Server, alice: TestKey, path: str) -> None:
    r = server.client.get(path)
    assert r.status_code == 200, r.text
    [cert] = parse_certificates(r.content)
    assert str(cert.fingerprint) == alice.fingerprint


def test_plus_is_never_a_space(server: Server, alice: TestKey) -> None:
    r = server.client.get("/pub/alice pgp@example.org")
    assert r.status_code == 404  # no address: FlowCrypt's clients need 404, not 400
    _error(r.json(), 404)


def test_encoded_twice_is_a_literal_percent(server: Server, alice: TestKey) -> None:
    # Decoded exactly once: %2540 is the three characters "%40", not "@".
    r = server.client.get("/pub/alice+pgp%2540example.org")
    assert r.status_code == 404
    _error(r.json(), 404)


def test_unattested_address_is_404_with_error_body(server: Server, alice: TestKey) -> None:
    r = server.client.get("/pub/a@hidden.example")
    assert r.status_code == 404
    _error(r.json(), 404)


@pytest.mark.parametrize("form", ["{fpr}", "0x{fpr}", "{fpr_lower}", "{kid}", "0x{kid_lower}"])
def test_get_pub_by_fingerprint_and_key_id(server: Server, alice: TestKey, form: str) -> None:
    term = form.format(
        fpr=alice.fingerprint,
        fpr_lower=alice.fingerprint.lower(),
        kid=alice.key_id,
        kid_lower=alice.key_id.lower(),
    )
    r = server.client.get(f"/pub/{term}")
    assert r.status_code == 200, r.text
    [cert] = parse_certificates(r.content)
    assert str(cert.fingerprint) == alice.fingerprint
    # The attested identity is served; the unattested one is not.
    assert [u.text for u in cert.user_ids] == ["Alice <alice+pgp@example.org>"]


def test_subkey_ids_find_the_certificate(server: Server, alice: TestKey) -> None:
    [full] = parse_certificates(alice.public)
    for sub in full.subkeys:
        for term in (str(sub.key_id), str(sub.fingerprint)):
            r = server.client.get(f"/pub/{term}")
            assert r.status_code == 200
            assert str(parse_certificates(r.content)[0].fingerprint) == alice.fingerprint


def test_identity_free_when_nothing_attested(server: Server, attestation: Attestation) -> None:
    key = TestKey.generate("Nobody <nobody@example.org>")
    attestation.imports.keyring(key.public)
    assert server.client.get("/pub/nobody@example.org").status_code == 404
    r = server.client.get(f"/pub/{key.fingerprint}")
    assert r.status_code == 200
    [cert] = parse_certificates(r.content)
    assert cert.user_ids == ()


@pytest.mark.parametrize(
    ("term", "code"),
    [
        ("DEADBEEF", 404),  # not a key id FlowCrypt's clients could use: nothing found
        ("not-an-address", 404),
        ("0x" + "A" * 16, 404),
        ("A" * 40, 404),
        ("nobody@nowhere.example", 404),
        ("0x123", 404),
    ],
)
def test_bad_and_unknown_queries(server: Server, term: str, code: int) -> None:
    r = server.client.get(f"/pub/{term}")
    assert r.status_code == code
    _error(r.json(), code)


def test_cors_preflight_and_headers(server: Server, alice: TestKey) -> None:
    r = server.client.options(
        "/pub/alice+pgp@example.org",
        headers={
            "Origin": "https://mail.example.com",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type, api-version",
        },
    )
    assert r.status_code == 200
    assert r.headers["access-control-allow-origin"] == "*"
    allowed = r.headers["access-control-allow-headers"].lower()
    for h in ("authorization", "content-type", "api-version"):
        assert h in allowed
    r = server.client.get(
        "/pub/alice+pgp@example.org", headers={"Origin": "https://x.example", "api-version": "3"}
    )
    assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "*"


def test_unknown_route_and_method(server: Server) -> None:
    r = server.client.get("/nothing/here")
    assert r.status_code == 404
    _error(r.json(), 404)


def test_path_prefix(settings: Settings, alice: TestKey) -> None:
    prefixed = settings.model_copy(update={"path_prefix": "/attester"})
    with AppServer.start(prefixed) as live:
        assert live.base_url.endswith("/attester")
        assert live.client.get("/").json() == {"alive": True}
        r = live.client.get("/pub/alice+pgp@example.org")
        assert r.status_code == 200
        assert str(parse_certificates(r.content)[0].fingerprint) == alice.fingerprint
        root = live.client.get(live.base_url.removesuffix("/attester") + "/pub/x@example.org")
        assert root.status_code == 404
