"""The search page: what it finds (the same as every protocol), how a key is shown, what
it says when nothing is found, and key downloads."""

from __future__ import annotations

import html
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest
from starlette.applications import Starlette
from starlette.requests import Request

from attester.config import Settings, load_settings
from attester.openpgp import parse_certificate
from attester.openpgp.types import Fingerprint
from attester.service.attestation import Attestation
from attester.store.views import StoredCert
from attester.web.search import key_views
from tests.support.keys import TestKey
from tests.support.server import AppServer, Server

BROWSER = {"accept": "text/html"}


@pytest.fixture
def live(server: Server) -> Server:
    return server


def _search(live: Server, q: str) -> tuple[int, str]:
    r = live.client.get("/search", params={"q": q}, headers=BROWSER)
    return r.status_code, r.text


def _grouped(fpr: str) -> str:
    return " ".join(fpr[i : i + 4] for i in range(0, len(fpr), 4))


def test_a_published_key_shows_what_is_published(live: Server, attestation: Attestation) -> None:
    key = TestKey.generate("Dana <dana@example.org>").with_user_id("Dana <dana@private.example>")
    attestation.imports.keyring(key.public, attest_emails=True, domains=["example.org"])
    status, page = _search(live, "dana@example.org")
    assert status == 200
    assert _grouped(key.fingerprint) in page and key.key_id in page
    assert "EdDSA, 255 bit" in page and "never" in page and "Valid" in page
    assert "Dana &lt;dana@example.org&gt;" in page
    assert "dana@private.example" not in page  # not attested: never shown
    assert "vouched for by the operator of this server" in page
    assert f'href="/download/{key.fingerprint}"' in page
    assert "gpg --keyserver hkp://127.0.0.1:" in page
    assert f"/vks/v1/by-fingerprint/{key.fingerprint} | gpg --import" in page
    # The same key by fingerprint (spaces and lowercase are fine), key id, and name.
    for q in (_grouped(key.fingerprint).lower(), "0x" + key.key_id, "dana"):
        status, page = _search(live, q)
        assert status == 200 and "Dana &lt;dana@example.org&gt;" in page, q


def test_nothing_published_for_an_address_says_so_and_points_to_upload(
    live: Server, attestation: Attestation
) -> None:
    key = TestKey.generate("Eve <eve@example.org>")
    attestation.submit.submit(key.public)  # uploaded, never verified
    status, page = _search(live, "Eve@Example.org")
    assert status == 404
    assert "No key is published for eve@example.org" in page
    assert "has not confirmed" in page and 'href="/upload"' in page
    status, page = _search(live, key.fingerprint)
    assert status == 200 and "This key shows no user IDs" in page
    assert "none of its email addresses has been verified" in page
    assert "Eve" not in page.split("<main")[1]


def test_unknown_fingerprint_key_id_and_text(live: Server) -> None:
    status, page = _search(live, "A" * 40)
    assert status == 404 and "No key found for fingerprint" in page and "AAAA AAAA" in page
    status, page = _search(live, "0x" + "B" * 16)
    assert status == 404 and "No key found for key ID" in page
    status, page = _search(live, "nobody here")
    assert status == 404 and "No published key matches" in page


def test_a_subkey_fingerprint_finds_its_key(live: Server, attestation: Attestation) -> None:
    key = TestKey.generate("Finn <finn@example.org>")
    attestation.imports.keyring(key.public, attest_emails=True)
    subkey = parse_certificate(key.public).subkeys[0].fingerprint
    status, page = _search(live, subkey.hex)
    assert status == 200 and "belongs to a subkey of this key" in page
    assert _grouped(key.fingerprint) in page


def test_a_revoked_key(live: Server, attestation: Attestation) -> None:
    key = TestKey.generate("Gil <gil@example.org>")
    attestation.imports.keyring(key.revoked_public())
    status, page = _search(live, key.fingerprint)
    assert status == 200 and "Revoked" in page and "Its owner revoked this key" in page


@pytest.mark.parametrize(
    ("q", "message"),
    [
        ("", "Enter an email address, a fingerprint or a key ID."),
        ("   ", "Enter an email address, a fingerprint or a key ID."),
        ("0x1234ABCD", "Short (8 hex digit) key ids are refused because they collide"),
        ("0x123", "A key is looked up by its 16-digit key id"),
        ("a", "The search text is too short"),
        ("al ex", "search for a word of at least 3 characters"),
    ],
)
def test_bad_searches_are_explained_next_to_the_field(live: Server, q: str, message: str) -> None:
    status, page = _search(live, q)
    assert status == 400
    assert 'aria-invalid="true"' in page and 'aria-describedby="q-hint q-error"' in page
    error = page.split('id="q-error"')[1].split("</p>")[0]
    assert message in html.unescape(error)


def test_text_search_can_be_switched_off(settings: Settings) -> None:
    with AppServer.start(settings.model_copy(update={"hkp_text_search": False})) as live:
        status, page = _search(live, "some name")
        assert status == 400 and "Searching by name is switched off" in page


def test_the_search_term_is_shown_inert(live: Server) -> None:
    status, page = _search(live, '"><script>alert(1)</script>')
    assert status == 404 and "<script>alert" not in page
    assert 'value="&#34;&gt;&lt;script&gt;alert(1)&lt;/script&gt;"' in page


def test_download(live: Server, attestation: Attestation) -> None:
    key = TestKey.generate("Hal <hal@example.org>")
    attestation.imports.keyring(key.public, attest_emails=True)
    for path in (key.fingerprint, key.fingerprint.lower() + ".asc"):
        r = live.client.get(f"/download/{path}")
        assert r.status_code == 200
        assert r.headers["content-type"] == "application/pgp-keys"
        assert r.headers["content-disposition"] == f'attachment; filename="{key.fingerprint}.asc"'
        assert r.text.startswith("-----BEGIN PGP PUBLIC KEY BLOCK-----")
        assert parse_certificate(r.content).user_ids[0].text == "Hal <hal@example.org>"
    for missing in ("C" * 40, "not-a-fingerprint"):
        r = live.client.get(f"/download/{missing}", headers=BROWSER)
        assert r.status_code == 404 and "No key with this fingerprint" in r.text


def test_an_expired_key_is_marked() -> None:
    now = datetime(2030, 1, 1, tzinfo=UTC)
    app = Starlette()
    app.state.settings = load_settings()
    app.state.core = SimpleNamespace(clock=lambda: now, published_user_ids=lambda found: {})
    request = Request({"type": "http", "app": app, "path": "/", "headers": []})
    cert = StoredCert(
        id=1,
        fingerprint=Fingerprint("D" * 40),
        algorithm=1,
        algorithm_name="rsa",
        bits=3072,
        created=now - timedelta(days=400),
        expires=now - timedelta(days=1),
        revoked=False,
        armored_identity_free="",
        armored_published=None,
        digest="0" * 32,
        source="upload",
        updated=now,
    )
    [view] = key_views(request, [cert], None)
    assert view.expired and view.algorithm == "RSA, 3072 bit" and view.identities == ()
    assert view.commands == (f"curl http://127.0.0.1:8080/download/{'D' * 40} | gpg --import",)
