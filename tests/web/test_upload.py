"""Uploading through the page: paste or file, every address with its state, one
verification mail per button, refusals that say what went wrong and that nothing was
stored."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

from attester.config import Settings
from attester.service.attestation import Attestation
from tests.support.clock import Clock
from tests.support.keys import TestKey
from tests.support.server import AppServer, Server
from tests.support.smtp import LoopbackSMTPServer
from tests.web.forms import csrf_token, token_in


def _upload(live: Server, keytext: str = "", file: bytes | None = None) -> tuple[int, str]:
    data = {"csrf": csrf_token(live.client, "/upload"), "keytext": keytext}
    files = {"keyfile": ("key.asc", file or b"", "application/octet-stream")}
    r = live.client.post("/upload", data=data, files=files)
    return r.status_code, r.text


def _rows(page: str) -> dict[str, str]:
    """address -> state label, from the result page."""
    out = {}
    for row in re.findall(r'<li class="address state-(\w+)">(.*?)</li>', page, re.S):
        email = re.search(r'<span class="email"><bdi class="inert">([^<]+)</bdi>', row[1])
        assert email
        out[email.group(1)] = row[0]
    return out


def _press(live: Server, page: str, email: str) -> tuple[int, str]:
    [token] = set(re.findall(r'name="token" value="([^"]+)"', page))
    r = live.client.post(
        "/upload/verify", data={"csrf": token_in(page), "token": token, "email": email}
    )
    return r.status_code, r.text


def test_upload_lists_every_address_and_mails_one_per_button(
    live: Server, attestation: Attestation, smtp_server: LoopbackSMTPServer
) -> None:
    key = (
        TestKey.generate("Ida <ida@example.org>")
        .with_user_id("Ida <ida@work.example>")
        .with_user_id("Ida <ida@old.example>")
    )
    attestation.imports.keyring(key.public, attest_emails=True, domains=["work.example"])
    data = key.public + key.user_id_revocation("Ida <ida@old.example>")  # binary, as a file
    status, page = _upload(live, file=data)
    assert status == 200 and "Your key is uploaded" in page
    assert _rows(page) == {
        "ida@example.org": "unpublished",
        "ida@old.example": "revoked",
        "ida@work.example": "published",
    }
    assert page.count("Send verification email</button>") == 1
    status, page = _press(live, page, "ida@example.org")
    assert status == 200 and "Check the inbox of ida@example.org" in page
    assert "at most one in 1 hour" in page
    assert _rows(page)["ida@example.org"] == "pending" and "Send again</button>" in page
    [mail] = smtp_server.wait_for(1)
    assert mail["To"].addresses[0].addr_spec == "ida@example.org"
    # Pressing again inside the rate window sends nothing more.
    status, page = _press(live, page, "ida@example.org")
    assert status == 200 and _rows(page)["ida@example.org"] == "pending"
    status, page = _press(live, page, "someone@example.org")
    assert status == 400 and "someone@example.org is not an address of this key" in page
    status, page = _press(live, page, "ida@work.example")
    assert status == 200 and "ida@work.example is already published" in page
    assert len(smtp_server.messages) == 1


def test_paste_works_too_and_a_key_without_address(live: Server) -> None:
    key = TestKey.generate("Jo <jo@example.org>")
    status, page = _upload(live, keytext=key.armored)
    assert status == 200 and _rows(page) == {"jo@example.org": "unpublished"}
    bare = TestKey.generate("Just a name")
    status, page = _upload(live, keytext=bare.armored)
    assert status == 200 and "carries no email address" in page


def test_a_secret_key_is_refused_explained_and_not_stored(live: Server) -> None:
    key = TestKey.generate("Kim <kim@example.org>")
    status, page = _upload(live, keytext=key.secret_armored)
    assert status == 400
    assert "That was a secret key: nothing was stored" in page and 'role="alert"' in page
    assert "gpg --armor --export" in page
    assert "PRIVATE KEY" not in page and key.secret_armored[40:80] not in page
    assert live.client.get(f"/pub/{key.fingerprint}").status_code == 404
    status, page = _upload(live, file=key.secret_armored.encode())
    assert status == 400 and "secret key" in page


@pytest.mark.parametrize(
    ("keytext", "message"),
    [
        ("", "Paste your public key or choose a file that holds it."),
        ("hello, this is not a key", "Nothing was stored."),
        (
            "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nAAAA\n-----END PGP PUBLIC KEY BLOCK-----",
            "Nothing was stored.",
        ),
    ],
)
def test_bad_input_is_explained_next_to_the_field(live: Server, keytext: str, message: str) -> None:
    status, page = _upload(live, keytext=keytext)
    assert status == 400
    assert 'aria-invalid="true" aria-describedby="upload-error"' in page
    error = page.split('id="upload-error"')[1].split("</p>")[0]
    assert message in error
    if keytext:
        assert f">{keytext}</textarea>" in page  # kept for the user to fix


def test_size_limits(settings: Settings) -> None:
    with AppServer.start(settings.model_copy(update={"max_input_bytes": 2048})) as live:
        key = TestKey.generate(*(f"Long Name {i} <n{i}@example.org>" for i in range(40)))
        status, page = _upload(live, keytext=key.armored)
        assert status == 413 and "2048 bytes" in page and "upload-error" in page
        status, page = _upload(live, keytext="x" * 200_000)
        assert status == 413 and "larger than the limit of 2048 bytes" in page


def test_the_upload_session_expires(live: Server, clock: Clock) -> None:
    status, page = _upload(live, keytext=TestKey.generate("Lu <lu@example.org>").armored)
    clock.now += timedelta(seconds=live.settings.upload_token_seconds + 1)
    status, page = _press(live, page, "lu@example.org")
    assert status == 410 and "This upload has expired" in page and 'href="/upload"' in page


def test_buttons_without_their_form_token_do_nothing(
    live: Server, smtp_server: LoopbackSMTPServer
) -> None:
    _, page = _upload(live, keytext=TestKey.generate("Mo <mo@example.org>").armored)
    [token] = set(re.findall(r'name="token" value="([^"]+)"', page))
    for csrf in ("", csrf_token(live.client, "/upload")):  # none, or one for another form
        r = live.client.post(
            "/upload/verify", data={"csrf": csrf, "token": token, "email": "mo@example.org"}
        )
        assert r.status_code == 403 and "Nothing was sent" in r.text
        assert _rows(r.text) == {"mo@example.org": "unpublished"}
    r = live.client.post("/upload", data={"keytext": "x"})
    assert r.status_code == 403 and "Nothing was stored; please send it again" in r.text
    assert smtp_server.messages == []
