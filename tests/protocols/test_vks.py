"""The VKS API (``vks-api.md``) over real HTTP on loopback: lookups, upload, request-verify
through a real SMTP server and the verification link, and GnuPG fetching from VKS URLs."""

from __future__ import annotations

import json
import subprocess
import tempfile
from datetime import timedelta

import httpx
import pytest

from attester.config import Settings
from attester.openpgp import armor, parse_certificates
from attester.service.attestation import Attestation
from tests.support import daemons
from tests.support.clock import Clock
from tests.support.flows import link_in
from tests.support.keys import TestKey
from tests.support.server import Server
from tests.support.smtp import LoopbackSMTPServer

V = "/vks/v1"


@pytest.fixture
def alice(attestation: Attestation) -> TestKey:
    """Two user IDs, only the example.org one attested."""
    key = TestKey.generate("Alice <alice+pgp@example.org>").with_user_id("Alice <a@hidden.example>")
    summary = attestation.imports.keyring(key.public, attest_emails=True, domains=["example.org"])
    assert summary.attested == 1
    return key


def _uids(resp: httpx.Response) -> list[str]:
    [cert] = parse_certificates(resp.content)
    return sorted(u.text for u in cert.user_ids)


def _fpr(resp: httpx.Response) -> str:
    [cert] = parse_certificates(resp.content)
    return str(cert.fingerprint)


def _is_key(resp: httpx.Response, key: TestKey) -> None:
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"] == "application/pgp-keys"
    assert resp.headers["content-disposition"] == f'attachment; filename="{key.fingerprint}.asc"'
    assert resp.headers["access-control-allow-origin"] == "*"
    assert resp.text.startswith("-----BEGIN PGP PUBLIC KEY BLOCK-----")
    assert _fpr(resp) == key.fingerprint


# ---- lookups


def test_by_email_serves_only_attested_user_ids(server: Server, alice: TestKey) -> None:
    r = server.client.get(f"{V}/by-email/alice+pgp@example.org")
    _is_key(r, alice)
    assert _uids(r) == ["Alice <alice+pgp@example.org>"]
    r = server.client.get(f"{V}/by-email/a@hidden.example")
    assert r.status_code == 404 and r.text == "No key found for a@hidden.example"


@pytest.mark.parametrize(
    "term",
    [
        "alice%2Bpgp%40example.org",
        "ALICE+PGP@Example.Org",
    ],
)
def test_by_email_normalises(server: Server, alice: TestKey, term: str) -> None:
    _is_key(server.client.get(f"{V}/by-email/{term}"), alice)


def test_by_fingerprint_and_key_id_serve_attested_user_ids(server: Server, alice: TestKey) -> None:
    fpr, kid = alice.fingerprint, alice.key_id
    # Lenient where Hagrid is strict: lowercase hex and a 0x prefix.
    for path in (
        f"by-fingerprint/{fpr}",
        f"by-fingerprint/{fpr.lower()}",
        f"by-fingerprint/0x{fpr}",
        f"by-keyid/{kid}",
        f"by-keyid/{kid.lower()}",
        f"by-keyid/0x{kid.lower()}",
    ):
        r = server.client.get(f"{V}/{path}")
        _is_key(r, alice)
        assert _uids(r) == ["Alice <alice+pgp@example.org>"], path


def test_subkeys_find_the_certificate(server: Server, alice: TestKey) -> None:
    [cert] = parse_certificates(alice.public)
    for sub in cert.subkeys:
        _is_key(server.client.get(f"{V}/by-keyid/{sub.key_id}"), alice)
        _is_key(server.client.get(f"{V}/by-fingerprint/{sub.fingerprint}"), alice)


def test_identity_free_without_attested_address(server: Server, attestation: Attestation) -> None:
    key = TestKey.generate("Nobody <nobody@example.org>")
    attestation.imports.keyring(key.public)
    r = server.client.get(f"{V}/by-fingerprint/{key.fingerprint}")
    _is_key(r, key)
    assert _uids(r) == []
    assert server.client.get(f"{V}/by-email/nobody@example.org").status_code == 404


def test_head(server: Server, alice: TestKey) -> None:
    r = server.client.head(f"{V}/by-fingerprint/{alice.fingerprint}")
    assert r.status_code == 200 and r.content == b""
    assert r.headers["content-type"] == "application/pgp-keys"
    assert int(r.headers["content-length"]) > 0


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("by-fingerprint/XYZ", "malformed fingerprint"),
        ("by-fingerprint/0123456789ABCDEF", "malformed fingerprint"),  # a key id
        ("by-fingerprint/alice@example.org", "malformed fingerprint"),
        ("by-fingerprint/" + "A" * 39, "malformed fingerprint"),
        ("by-keyid/0123ABCD", "malformed key id"),  # short ids collide: refused
        ("by-keyid/" + "B" * 40, "malformed key id"),  # a fingerprint
        ("by-keyid/nothex!", "malformed key id"),
        ("by-email/alice", "malformed e-mail address"),
        ("by-email/alice@", "malformed e-mail address"),
        ("by-email/0123456789ABCDEF", "malformed e-mail address"),
    ],
)
def test_malformed(server: Server, path: str, message: str) -> None:
    r = server.client.get(f"{V}/{path}")
    assert r.status_code == 400
    assert r.headers["content-type"].startswith("text/plain")
    assert r.headers["access-control-allow-origin"] == "*"
    assert r.text == message


def test_not_found(server: Server) -> None:
    fpr = "C" * 40
    cases = {
        f"by-fingerprint/{fpr.lower()}": f"No key found for {fpr}",
        "by-keyid/0xdddddddddddddddd": "No key found for DDDDDDDDDDDDDDDD",
        "by-email/Nobody@Example.org": "No key found for nobody@example.org",
    }
    for path, message in cases.items():
        r = server.client.get(f"{V}/{path}")
        assert r.status_code == 404
        assert r.headers["content-type"].startswith("text/plain")
        assert r.headers["access-control-allow-origin"] == "*"
        assert r.text == message


def test_revoked_key_stays_retrievable_by_fingerprint(
    server: Server, attestation: Attestation
) -> None:
    key = TestKey.generate("Rev <rev@example.org>")
    attestation.imports.keyring(key.public, attest_emails=True)
    assert server.client.get(f"{V}/by-email/rev@example.org").status_code == 200
    attestation.imports.keyring(key.revoked_public())
    assert server.client.get(f"{V}/by-email/rev@example.org").status_code == 404
    r = server.client.get(f"{V}/by-fingerprint/{key.fingerprint}")
    [cert] = parse_certificates(r.content)
    assert cert.revoked and cert.user_ids == ()


def test_cors_preflight_for_upload(server: Server) -> None:
    r = server.client.options(
        f"{V}/upload",
        headers={
            "Origin": "https://app.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
    )
    assert r.status_code == 200
    assert r.headers["access-control-allow-origin"] in ("*", "https://app.example")


# ---- upload and request-verify


def _upload(live: Server, keytext: str) -> httpx.Response:
    return live.client.post(f"{V}/upload", json={"keytext": keytext})


def _verify(live: Server, token: str, *addresses: str) -> httpx.Response:
    return live.client.post(
        f"{V}/request-verify",
        json={"token": token, "addresses": list(addresses), "locale": ["de_CH", "de"]},
    )


def test_upload_then_verify_each_address(live: Server, smtp_server: LoopbackSMTPServer) -> None:
    key = TestKey.generate("Bo <bo@example.org>").with_user_id("Bo <bo@work.example>")
    r = _upload(live, key.armored)
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"token", "key_fpr", "status"}
    assert body["key_fpr"] == key.fingerprint
    assert body["status"] == {"bo@example.org": "unpublished", "bo@work.example": "unpublished"}
    token = body["token"]
    # The upload itself mails nobody and publishes nothing.
    assert live.client.get(f"{V}/by-email/bo@example.org").status_code == 404
    assert _uids(live.client.get(f"{V}/by-fingerprint/{key.fingerprint}")) == []

    r = _verify(live, token, "bo@example.org")
    assert r.status_code == 200, r.text
    assert r.json() == {
        "token": token,
        "key_fpr": key.fingerprint,
        "status": {"bo@example.org": "pending", "bo@work.example": "unpublished"},
    }
    [mail] = smtp_server.wait_for(1)
    assert mail["To"].addresses[0].addr_spec == "bo@example.org"
    link = link_in(mail)
    assert live.client.get(link).status_code == 200  # a link scanner publishes nothing
    assert live.client.get(f"{V}/by-email/bo@example.org").status_code == 404
    assert "Verified" in live.client.post(link).text
    r = live.client.get(f"{V}/by-email/bo@example.org")
    assert r.status_code == 200 and _uids(r) == ["Bo <bo@example.org>"]

    # The upload token is not single-use: the other address, later, with the same token.
    r = _verify(live, token, "bo@work.example", "bo@example.org")
    assert r.json()["status"] == {"bo@example.org": "published", "bo@work.example": "pending"}
    mails = smtp_server.wait_for(2)
    assert mails[1]["To"].addresses[0].addr_spec == "bo@work.example"
    assert "Verified" in live.client.post(link_in(mails[1])).text
    r = live.client.get(f"{V}/by-fingerprint/{key.fingerprint}")
    assert _uids(r) == ["Bo <bo@example.org>", "Bo <bo@work.example>"]
    # Published addresses get no further mail.
    r = _verify(live, token, "bo@work.example", "bo@example.org")
    assert set(r.json()["status"].values()) == {"published"}
    with pytest.raises(AssertionError):
        smtp_server.wait_for(3, timeout=1.0)


def test_upload_of_known_key_reports_published(live: Server, attestation: Attestation) -> None:
    key = TestKey.generate("Cy <cy@example.org>").with_user_id("Cy <cy@other.example>")
    attestation.imports.keyring(key.public, attest_emails=True, domains=["example.org"])
    r = _upload(live, key.armored)
    assert r.json()["status"] == {"cy@example.org": "published", "cy@other.example": "unpublished"}


def test_request_verify_is_rate_limited(live: Server, smtp_server: LoopbackSMTPServer) -> None:
    key = TestKey.generate("Di <di@example.org>")
    token = _upload(live, key.armored).json()["token"]
    assert _verify(live, token, "di@example.org").json()["status"] == {"di@example.org": "pending"}
    smtp_server.wait_for(1)
    assert _verify(live, token, "di@example.org").json()["status"] == {"di@example.org": "pending"}
    # Another key for the same address gets a link of its own (the window is per address
    # and key; the mailbox has a ceiling of its own); asking again for either sends nothing.
    other = TestKey.generate("Di <di@example.org>")
    token2 = _upload(live, other.armored).json()["token"]
    assert _verify(live, token2, "di@example.org").json()["status"] == {"di@example.org": "pending"}
    smtp_server.wait_for(2)
    assert _verify(live, token2, "di@example.org").json()["status"] == {"di@example.org": "pending"}
    assert _verify(live, token, "di@example.org").json()["status"] == {"di@example.org": "pending"}
    with pytest.raises(AssertionError):
        smtp_server.wait_for(3, timeout=1.0)


def test_request_verify_ignores_addresses_not_on_the_key(
    live: Server, smtp_server: LoopbackSMTPServer
) -> None:
    key = TestKey.generate("Ed <ed@example.org>")
    token = _upload(live, key.armored).json()["token"]
    r = _verify(live, token, "someone@example.org", "not an address", "ed@example.org")
    assert r.status_code == 200, r.text
    assert r.json()["status"] == {"ed@example.org": "pending"}
    [mail] = smtp_server.wait_for(1)
    assert mail["To"].addresses[0].addr_spec == "ed@example.org"
    # No addresses at all, or no locale: still the status.
    r = live.client.post(f"{V}/request-verify", json={"token": token, "addresses": []})
    assert r.status_code == 200 and r.json()["status"] == {"ed@example.org": "pending"}


def test_expired_or_unknown_token(live: Server, clock: Clock, settings: Settings) -> None:
    key = TestKey.generate("Flo <flo@example.org>")
    token = _upload(live, key.armored).json()["token"]
    expired = {"error": "Upload session expired. Please try again."}
    r = _verify(live, "not-a-token", "flo@example.org")
    assert r.status_code == 400 and r.json() == expired
    clock.now += timedelta(seconds=settings.upload_token_seconds + 1)
    r = _verify(live, token, "flo@example.org")
    assert r.status_code == 400 and r.json() == expired


def test_tokens_of_other_purposes_are_not_upload_tokens(
    live: Server, smtp_server: LoopbackSMTPServer
) -> None:
    key = TestKey.generate("Gus <gus@example.org>")
    token = _upload(live, key.armored).json()["token"]
    _verify(live, token, "gus@example.org")
    verify_token = link_in(smtp_server.wait_for(1)[0]).rsplit("/", 1)[1]
    r = _verify(live, verify_token, "gus@example.org")
    assert r.status_code == 400 and "expired" in r.json()["error"]


def test_multi_key_upload_answers_fingerprints(
    live: Server, smtp_server: LoopbackSMTPServer
) -> None:
    a = TestKey.generate("Ha <ha@example.org>")
    b = TestKey.generate("Hb <hb@example.org>")
    r = _upload(live, armor(a.public + b.public))
    assert r.status_code == 200, r.text
    assert r.json() == [a.fingerprint, b.fingerprint]
    for k in (a, b):
        _is_key(live.client.get(f"{V}/by-fingerprint/{k.fingerprint}"), k)
    # Two armor blocks one after the other are a keyring too.
    r = _upload(live, a.armored + b.armored)
    assert r.json() == [a.fingerprint, b.fingerprint]
    with pytest.raises(AssertionError):
        smtp_server.wait_for(1, timeout=0.5)


def test_revoked_key_upload(live: Server, smtp_server: LoopbackSMTPServer) -> None:
    key = TestKey.generate("Ivy <ivy@example.org>").with_user_id("Ivy <ivy@other.example>")
    r = _upload(live, armor(key.revoked_public()))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == {"ivy@example.org": "revoked", "ivy@other.example": "revoked"}
    r = _verify(live, body["token"], "ivy@example.org")
    assert r.status_code == 200 and r.json()["status"]["ivy@example.org"] == "revoked"
    with pytest.raises(AssertionError):
        smtp_server.wait_for(1, timeout=0.5)


def test_revoked_user_id_upload(live: Server) -> None:
    key = TestKey.generate("Jan <jan@example.org>").with_user_id("Jan <jan@old.example>")
    data = key.public + key.user_id_revocation("Jan <jan@old.example>")
    r = _upload(live, armor(data))
    assert r.json()["status"] == {"jan@example.org": "unpublished", "jan@old.example": "revoked"}


@pytest.mark.parametrize("endpoint", ["upload", "request-verify"])
@pytest.mark.parametrize(
    "headers",
    [
        {"content-type": "application/x-www-form-urlencoded"},
        {"content-type": "text/plain"},
        {"content-type": "multipart/form-data; boundary=x"},
        {},
    ],
)
def test_other_content_types(live: Server, endpoint: str, headers: dict[str, str]) -> None:
    r = live.client.post(f"{V}/{endpoint}", content=b'{"keytext": "x"}', headers=headers)
    assert r.status_code == 400
    assert r.headers["content-type"] == "application/json"
    assert r.json()["error"].startswith("expected application/json data")


def test_json_with_charset_is_json(live: Server) -> None:
    key = TestKey.generate("Kai <kai@example.org>")
    r = live.client.post(
        f"{V}/upload",
        content=json.dumps({"keytext": key.armored}),
        headers={"content-type": "Application/JSON; charset=utf-8"},
    )
    assert r.status_code == 200, r.text
    assert r.json()["key_fpr"] == key.fingerprint


def _secret() -> str:
    return TestKey.generate("Sec <sec@example.org>").secret_armored


def _signature_only() -> str:
    return armor(TestKey.generate("Sig <sig@example.org>").revocation())


@pytest.mark.parametrize(
    ("make_body", "fragment"),
    [
        (lambda: {"keytext": "not a key"}, ""),
        (lambda: {"keytext": ""}, "keytext"),
        (lambda: {}, "keytext"),
        (lambda: {"keytext": 5}, "keytext"),
        (lambda: ["keytext"], "object"),
        (lambda: {"keytext": _secret()}, "secret"),
        (lambda: {"keytext": _signature_only()}, "no public key"),
    ],
    ids=["garbage", "empty", "missing", "not-a-string", "not-an-object", "secret", "no-key"],
)
def test_upload_refusals(live: Server, make_body, fragment: str) -> None:  # type: ignore[no-untyped-def]
    r = live.client.post(f"{V}/upload", json=make_body())
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert isinstance(error, str) and error and fragment in error.lower()


def test_upload_not_json(live: Server) -> None:
    r = live.client.post(f"{V}/upload", content=b"{", headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["error"]


def test_upload_too_large(live: Server, settings: Settings) -> None:
    big = "x" * (settings.max_input_bytes + 1)
    r = live.client.post(f"{V}/upload", json={"keytext": big})
    assert r.status_code == 413
    assert r.json()["error"]


@pytest.mark.parametrize(
    "body",
    [
        {"addresses": ["a@example.org"]},
        {"token": "x", "addresses": "a@example.org"},
        {"token": "x", "addresses": [1]},
        {"token": "x"},
    ],
)
def test_request_verify_refusals(live: Server, body: dict[str, object]) -> None:
    r = live.client.post(f"{V}/request-verify", json=body)
    assert r.status_code == 400 and r.json()["error"]


# ---- a real client: GnuPG fetches VKS URLs


def _gpg_fetch(url: str) -> list[str]:
    """Import what ``gpg --fetch-keys URL`` gets into a fresh home; the imported user IDs."""
    with tempfile.TemporaryDirectory(prefix="g", dir="/tmp") as home:
        daemons.watch(home)
        env = {"GNUPGHOME": home, "PATH": "/usr/bin:/bin"}
        try:
            subprocess.run(
                ["gpg", "--batch", "--fetch-keys", url],
                env=env,
                check=True,
                capture_output=True,
                timeout=60,
            )
            out = subprocess.run(
                ["gpg", "--batch", "--with-colons", "--list-keys"],
                env=env,
                check=True,
                capture_output=True,
                text=True,
            ).stdout
        finally:
            subprocess.run(["gpgconf", "--kill", "all"], env=env, check=False)
    return [line.split(":")[9] for line in out.splitlines() if line.startswith("uid:")]


def test_gpg_fetches_from_vks(socket_server: Server, alice: TestKey) -> None:
    base = socket_server.base_url + V
    assert _gpg_fetch(f"{base}/by-email/alice%2Bpgp%40example.org") == [
        "Alice <alice+pgp@example.org>"
    ]
    assert _gpg_fetch(f"{base}/by-fingerprint/{alice.fingerprint}") == [
        "Alice <alice+pgp@example.org>"
    ]
