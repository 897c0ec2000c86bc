"""Input an attacker controls: user IDs naming two addresses, control characters in
addresses and search terms, NUL on PostgreSQL, hostile user IDs in the HKP index, an
unbounded JSON body, and a client leaving mid-body (issue 10, items 10, 12, 17, 18, 20,
21)."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from urllib.parse import unquote

import pytest

from attester.openpgp import Email, InvalidEmail, email_from_user_id, parse_certificate
from attester.service.attestation import Attestation
from attester.store.outbox import pending_count
from tests.support.keys import TestKey
from tests.support.server import LiveServer, Server

# ---- item 12: a user ID naming two addresses is never attested nor served


def _gpg_mailboxes(data: bytes) -> list[str]:
    """The addresses GnuPG reads from each user ID of ``data``."""
    with tempfile.TemporaryDirectory() as home:
        env = {"GNUPGHOME": home, "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        path = Path(home) / "k.pgp"
        path.write_bytes(data)
        out = subprocess.run(
            ["gpg", "--batch", "--show-keys", "--list-options", "show-only-fpr-mbox", str(path)],
            env=env,
            capture_output=True,
            check=True,
        ).stdout.decode()
        subprocess.run(["gpgconf", "--kill", "all"], env=env, check=False)
    return [line.split()[1] for line in out.splitlines() if len(line.split()) == 2]


@pytest.mark.parametrize(
    "uid",
    [
        "<victim@x.example> <mallory@y.example>",
        "Mallory <mallory@y.example> <victim@x.example>",
        "victim@x.example <mallory@y.example>",
        "Al (victim@x.example) <mallory@y.example>",
        "<victim@x.example><mallory@y.example>",
        "<mallory@y.example> victim@x.example",
    ],
)
def test_user_id_with_two_addresses_carries_none(uid: str) -> None:
    key = TestKey.generate(uid)
    # GnuPG reads some address from it; which one depends on the client.
    assert _gpg_mailboxes(key.public)
    assert email_from_user_id(uid) is None
    cert = parse_certificate(key.public)
    assert cert.emails == ()


def test_mallory_cannot_attest_a_user_id_gnupg_reads_as_the_victims(
    server: Server, attestation: Attestation
) -> None:
    key = TestKey.generate("<victim@x.example> <mallory@y.example>")
    assert _gpg_mailboxes(key.public) == ["victim@x.example"]
    r = server.client.post("/pub/mallory@y.example", content=key.armored)
    assert r.status_code == 400, r.text
    assert pending_count(attestation.core.db) == 0
    # An operator import vouching for every address attests nothing either.
    assert attestation.imports.keyring(key.public, attest_emails=True).attested == 0
    assert server.client.get("/pub/mallory@y.example").status_code == 404
    assert server.client.get("/pub/victim@x.example").status_code == 404


def test_one_address_reads_the_same_as_gnupg() -> None:
    for uid in ("Bo <bo@z.example>", "bo@z.example", "Bo (work) <Bo@Z.example>"):
        key = TestKey.generate(uid)
        [gpg] = _gpg_mailboxes(key.public)
        ours = email_from_user_id(uid)
        assert ours is not None and ours.address == gpg.lower()


# ---- item 18: control characters in addresses


@pytest.mark.parametrize(
    "text",
    [
        "a\x00b@example.org",
        "a\rbcc:x@example.org",
        "a\nb@example.org",
        "a\x7fb@example.org",
        "a\u200bb@example.org",  # zero-width space
        "a\u202eb@example.org",  # right-to-left override
        "a\x85b@example.org",
        "a\u2028b@example.org",
    ],
)
def test_addresses_with_control_characters_are_refused(text: str) -> None:
    with pytest.raises(InvalidEmail):
        Email.parse(text)
    assert email_from_user_id(f"X <{text}>") is None


def test_control_characters_never_reach_a_mail_or_the_log(
    server: Server, attestation: Attestation, caplog: pytest.LogCaptureFixture
) -> None:
    key = TestKey.generate("Ctl <ctl@example.org>")
    for raw in ("ctl%0D%0ABcc:%20x@example.org", "ctl%00@example.org", "c%E2%80%AEtl@example.org"):
        r = server.client.post(f"/pub/{raw}", content=key.armored)
        assert r.status_code in (400, 404), raw  # a line break does not even match the route
        r = server.client.post("/manage", json={"email": unquote(raw)})
        assert r.status_code == 400
    assert pending_count(attestation.core.db) == 0
    assert not any("\r" in rec.getMessage() or "\x00" in rec.getMessage() for rec in caplog.records)


# ---- item 20: NUL on PostgreSQL


def test_nul_in_user_ids_and_lookup_terms(server: Server, attestation: Attestation) -> None:
    key = TestKey.generate("Nul\x00Name <nul@example.org>")
    summary = attestation.imports.keyring(key.public, attest_emails=True)
    assert summary.new == 1 and summary.attested == 1
    r = server.client.get("/pub/nul@example.org")
    assert r.status_code == 200
    [cert] = [parse_certificate(r.content)]
    assert cert.user_ids[0].raw == b"Nul\x00Name <nul@example.org>"
    c = server.client
    for path in (
        "/pub/%00",
        "/pub/nul%00@example.org",
        "/vks/v1/by-email/nul%00%40example.org",
        "/vks/v1/by-fingerprint/%00",
        "/vks/v1/by-keyid/%00",
        "/pks/lookup?op=get&search=%00",
        "/pks/lookup?op=index&search=nul%00name",
        "/pks/lookup?op=get&search=nul%00%40example.org",
        "/pks/lookup?op=hget&search=%00",
        "/search?q=%00",
        f"/.well-known/openpgpkey/example.org%00/hu/{'y' * 32}",
    ):
        r = c.get(path)
        assert r.status_code in (400, 404), (path, r.status_code, r.text)
    assert c.post("/lookup/email", json={"email": "nul\x00@example.org"}).status_code == 400
    assert c.post("/manage", json={"email": "nul\x00@example.org"}).status_code == 400


# ---- item 17: the HKP HTML index shows hostile user IDs inert


def test_hkp_html_index_makes_hidden_characters_visible(
    server: Server, attestation: Attestation
) -> None:
    uid = "Eve\u202e\u200bgnp.exe\x07 <eve@example.org>"
    key = TestKey.generate(uid)
    assert attestation.imports.keyring(key.public, attest_emails=True).attested == 1
    r = server.client.get("/pks/lookup", params={"op": "index", "search": "eve@example.org"})
    assert r.status_code == 200
    assert "\u202e" not in r.text and "\u200b" not in r.text and "\x07" not in r.text
    for mark in ("U+202E", "U+200B", "U+0007"):
        assert mark in r.text
    assert "<bdi" in r.text


# ---- item 10: every route reads at most its limit


def test_manage_json_body_is_bounded(server: Server) -> None:
    body = b'{"email": "a@example.org", "pad": "' + b"x" * (4 * 1024 * 1024) + b'"}'
    r = server.client.post("/manage", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 413
    # Without a Content-Length (chunked), it is cut at the first chunk past the limit.

    def chunks():  # type: ignore[no-untyped-def]
        for i in range(0, len(body), 65536):
            yield body[i : i + 65536]

    r = server.client.post(
        "/manage", content=chunks(), headers={"content-type": "application/json"}
    )
    assert r.status_code == 413


# ---- item 21: a client leaving mid-body


def test_client_leaving_mid_body_logs_one_line_and_no_traceback(
    socket_server: LiveServer, caplog: pytest.LogCaptureFixture
) -> None:
    server = socket_server  # a client that hangs up needs a socket to hang up on
    caplog.set_level(logging.INFO)
    host, port = server.origin.removeprefix("http://").split(":")
    for path in ("/pub/a@example.org", "/vks/v1/upload", "/pks/add", "/upload"):
        with socket.create_connection((host, int(port))) as s:
            s.sendall(
                f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n"
                "Content-Type: application/json\r\n\r\n".encode()
                + b"x" * 1000
            )
            time.sleep(0.2)
    time.sleep(0.5)
    assert server.client.get("/").status_code == 200
    tracebacks = [r for r in caplog.records if r.exc_info]
    assert not tracebacks, [r.getMessage() for r in tracebacks]
    gone = [r for r in caplog.records if "went away" in r.getMessage()]
    assert len(gone) == 4
