"""What FlowCrypt's apps and other clients really send, replayed byte for byte over a raw
socket, and addresses that only survive when every route decodes its path exactly once
(issue 10, items 1, 2 and 6)."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from urllib.parse import quote

import pytest

from attester.config import Settings
from attester.openpgp import parse_certificates
from attester.openpgp.wkd import wkd_hash
from attester.service.attestation import Attestation
from attester.store.outbox import pending_count
from tests.support.keys import TestKey
from tests.support.oidc_issuer import LocalIssuer
from tests.support.server import LiveServer

# Addresses with characters that percent-encoding, a second decoding, or a URL parser
# could change: a literal "%41" (read as "A" by a second decoding), "+", "/", "?", "#",
# non-ASCII local parts and an internationalised domain.
ODD = [
    "pct%41x@example.org",
    "plus+tag@example.org",
    "sl/ash@example.org",
    "q?mark@example.org",
    "hash#tag@example.org",
    "zoë@example.org",
    "joe@bücher.example",
]


def browser_path(email: str) -> str:
    """FlowCrypt's browser: ``encodeURIComponent(email).replace(/%40/gi, '@')``
    (``Url.encodeEmailAddressForPathSegment``)."""
    return quote(email, safe="-_.!~*'()").replace("%40", "@")


def android_path(email: str) -> str:
    """FlowCrypt's Android app: Retrofit's ``@Path`` encoding of a path segment (OkHttp
    keeps the sub-delimiters, ``:`` and ``@``, and encodes ``/``, ``?``, ``#``, ``%``)."""
    return quote(email, safe="!$&'()*+,;=:@-._~")


def raw_request(server: LiveServer, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send ``request`` as it is and read the whole answer (the request closes)."""
    host, port = server.origin.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(request)
        chunks = []
        while data := s.recv(65536):
            chunks.append(data)
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:])}
    if headers.get("transfer-encoding") == "chunked":
        out, rest = b"", body
        while rest:
            size, _, rest = rest.partition(b"\r\n")
            n = int(size, 16)
            if n == 0:
                break
            out, rest = out + rest[:n], rest[n + 2 :]
        body = out
    return int(lines[0].split()[1]), headers, body


def browser_get(server: LiveServer, path: str) -> bytes:
    """A GET as Chromium sends it for the extension's ``Api.apiCall`` (jQuery ajax)."""
    return (
        f"GET {path} HTTP/1.1\r\n"
        f"Host: {server.origin.removeprefix('http://')}\r\n"
        "Connection: close\r\n"
        "Accept: text/plain, */*; q=0.01\r\n"
        "Origin: chrome-extension://bnjglocicdkmhmoohhfkfkbbkejdhdgc\r\n"
        "Sec-Fetch-Site: cross-site\r\n"
        "Sec-Fetch-Mode: cors\r\n"
        "User-Agent: Mozilla/5.0 (X11; Linux x86_64) Chrome/120.0.0.0 Safari/537.36\r\n"
        "\r\n"
    ).encode()


def android_get(server: LiveServer, path: str) -> bytes:
    """A GET as OkHttp sends it (Retrofit ``attesterGetPubKey``)."""
    return (
        f"GET {path} HTTP/1.1\r\n"
        f"Host: {server.origin.removeprefix('http://')}\r\n"
        "Connection: close\r\n"
        "Accept-Encoding: gzip\r\n"
        "User-Agent: okhttp/4.12.0\r\n"
        "\r\n"
    ).encode()


@pytest.fixture
def server(socket_server: LiveServer) -> LiveServer:
    """The session's app on a real socket: requests go out byte for byte."""
    return socket_server


@pytest.fixture
def published(attestation: Attestation) -> dict[str, TestKey]:
    keys = {}
    for email in ODD:
        key = TestKey.generate(f"Odd <{email}>")
        summary = attestation.imports.keyring(key.public, attest_emails=True)
        assert summary.attested == 1, email
        keys[email] = key
    # The address a second decoding would read instead of "pct%41x@": someone else's.
    decoy = TestKey.generate("Decoy <pctax@example.org>")
    assert attestation.imports.keyring(decoy.public, attest_emails=True).attested == 1
    keys["decoy"] = decoy
    return keys


def _fingerprints(body: bytes) -> list[str]:
    return [str(c.fingerprint) for c in parse_certificates(body)]


@pytest.mark.parametrize("email", ODD)
def test_pub_lookup_of_odd_addresses_as_browser_and_android_send_them(
    server: LiveServer, published: dict[str, TestKey], email: str
) -> None:
    for request in (
        browser_get(server, "/pub/" + browser_path(email)),
        android_get(server, "/pub/" + android_path(email)),
    ):
        status, _, body = raw_request(server, request)
        assert status == 200, (request, body)
        assert _fingerprints(body) == [published[email].fingerprint]


@pytest.mark.parametrize("email", ODD)
def test_every_protocol_decodes_once(
    server: LiveServer, published: dict[str, TestKey], email: str
) -> None:
    want = [published[email].fingerprint]
    c = server.client
    r = c.get("/vks/v1/by-email/" + quote(email, safe=""))
    assert r.status_code == 200 and _fingerprints(r.content) == want
    r = c.get("/pks/lookup", params={"op": "get", "search": email, "options": "mr"})
    assert r.status_code == 200 and _fingerprints(r.content) == want
    r = c.get("/pks/lookup", params={"op": "get", "search": f"<{email}>"})
    assert r.status_code == 200 and _fingerprints(r.content) == want
    r = c.post("/lookup/email", json={"email": email})
    assert r.status_code == 200 and _fingerprints(r.json()["pubkey"].encode()) == want
    r = c.get("/search", params={"q": email}, headers={"accept": "text/html"})
    assert r.status_code == 200 and published[email].fingerprint in r.text.replace(" ", "")
    local, _, domain = email.rpartition("@")
    ascii_domain = domain.encode("idna").decode()
    r = c.get(f"/.well-known/openpgpkey/{ascii_domain}/hu/{wkd_hash(local)}")
    assert r.status_code == 200 and _fingerprints(r.content) == want


def test_literal_percent_is_not_decoded_twice(
    server: LiveServer, published: dict[str, TestKey]
) -> None:
    # Sent as pct%2541x@: decoding twice would find the decoy's key for pctax@.
    status, _, body = raw_request(server, browser_get(server, "/pub/pct%2541x@example.org"))
    assert status == 200 and _fingerprints(body) == [published["pct%41x@example.org"].fingerprint]
    r = server.client.get("/vks/v1/by-email/pct%2541x%40example.org")
    assert _fingerprints(r.content) == [published["pct%41x@example.org"].fingerprint]


@pytest.mark.parametrize(
    "term",
    [
        # FlowCrypt's own unit test "Attester lookup encodes email path segment"
        # (test/source/tests/browser-unit-tests/unit-Attester.js), as the browser encodes it.
        browser_path(
            "%2e%2e/ldap-relay?server=attacker.example&search=x@example.com@flowcrypt.test"
        ),
        "not-an-address",
        "DEADBEEF",
        "0x123",
        "a@@b",
        "",
        "%00",
    ],
)
def test_malformed_lookup_terms_are_404_with_the_json_body(
    server: LiveServer, published: dict[str, TestKey], term: str
) -> None:
    status, headers, body = raw_request(server, browser_get(server, "/pub/" + term))
    assert status == 404, body
    assert headers["content-type"].startswith("application/json")
    data = json.loads(body)
    assert data["code"] == 404 and data["error"]["code"] == 404 and data["message"]


def test_malformed_submission_keeps_its_400(server: LiveServer) -> None:
    key = TestKey.generate("Al <al@example.org>")
    r = server.client.post("/pub/not-an-address", content=key.armored)
    assert r.status_code == 400 and r.json()["code"] == 400


# ---- id tokens for odd addresses, and the welcome mail (item 6)


@pytest.fixture
def issuer() -> Iterator[LocalIssuer]:
    with LocalIssuer.start(email="pct%41x@example.org") as iss:
        yield iss


@pytest.fixture
def oidc_server(settings: Settings, issuer: LocalIssuer) -> Iterator[LiveServer]:
    s = settings.model_copy(
        update={"oidc_issuers": (issuer.url,), "oidc_audiences": (issuer.audience,)}
    )
    with LiveServer.start(s) as server:
        yield server


def test_id_token_for_an_address_with_percent(oidc_server: LiveServer, issuer: LocalIssuer) -> None:
    email = "pct%41x@example.org"
    key = TestKey.generate(f"P <{email}>")
    request = (
        f"POST /pub/{browser_path(email)} HTTP/1.1\r\n"
        f"Host: {oidc_server.origin.removeprefix('http://')}\r\n"
        "Connection: close\r\n"
        f"authorization: {issuer.bearer(email=email)}\r\n"
        "Content-Type: text/plain; charset=UTF-8\r\n"
        f"Content-Length: {len(key.armored.encode())}\r\n"
        "\r\n"
    ).encode() + key.armored.encode()
    status, _, body = raw_request(oidc_server, request)
    assert (status, body) == (200, b"Saved")
    r = oidc_server.client.get("/pub/" + browser_path(email))
    assert _fingerprints(r.content) == [key.fingerprint]


def test_welcome_message_needs_an_id_token_for_the_address(
    oidc_server: LiveServer, issuer: LocalIssuer
) -> None:
    key = TestKey.generate("Kim <kim@example.org>")
    body = {"email": "kim@example.org", "pubkey": key.armored}
    assert oidc_server.client.post("/welcome-message", json=body).status_code == 401
    wrong = {"Authorization": issuer.bearer(email="mallory@example.org")}
    r = oidc_server.client.post("/welcome-message", json=body, headers=wrong)
    assert r.status_code == 401 and r.json()["code"] == 401
    right = {"Authorization": issuer.bearer(email="kim@example.org")}
    r = oidc_server.client.post("/test/welcome", json=body, headers=right)
    assert r.status_code == 200 and r.json() == {"sent": True}


def test_welcome_message_without_oidc_sends_nothing(
    server: LiveServer, attestation: Attestation
) -> None:
    key = TestKey.generate("Kim <kim@example.org>")
    r = server.client.post(
        "/welcome-message",
        json={"email": "kim@example.org", "pubkey": key.armored},
        headers={"Authorization": "Bearer x.y.z"},
    )
    assert r.status_code == 401
    assert pending_count(attestation.core.db) == 0
