"""Management links: ask by address (same answer either way), list, unpublish at once."""

from __future__ import annotations

import re

from attester.service.attestation import Attestation
from tests.support.flows import link_in
from tests.support.keys import TestKey
from tests.support.server import Server
from tests.support.smtp import LoopbackSMTPServer
from tests.web.forms import csrf_token


def test_manage_flow(
    live: Server, attestation: Attestation, smtp_server: LoopbackSMTPServer
) -> None:
    key = TestKey.generate("Ann <ann@example.org>").with_user_id("Ann <ann@work.example>")
    attestation.imports.keyring(key.public, attest_emails=True)
    assert live.client.get("/pub/ann@work.example").status_code == 200

    token = csrf_token(live.client, "/manage")
    unknown = live.client.post("/manage", data={"email": "nobody@example.org", "csrf": token})
    known = live.client.post("/manage", data={"email": "ann@example.org", "csrf": token})
    assert unknown.status_code == known.status_code == 200
    assert unknown.text == known.text  # reveals nothing about who has a key
    [mail] = smtp_server.wait_for(1)
    assert mail["To"].addresses[0].addr_spec == "ann@example.org"
    link = link_in(mail)

    page = live.client.get(link)
    assert page.status_code == 200
    assert "ann@example.org" in page.text and "ann@work.example" in page.text
    assert key.fingerprint[:4] in page.text

    [action, *_] = re.findall(r'action="([^"]+/unpublish)"', page.text)
    r = live.client.post(live.origin + action, data={"email": "ann@work.example"})
    assert r.status_code == 200 and "no longer published" in r.text
    assert live.client.get("/pub/ann@work.example").status_code == 404
    assert live.client.get("/pub/ann@example.org").status_code == 200
    # Each token is single use: the old action is dead, the page carries a fresh one.
    assert (
        live.client.post(live.origin + action, data={"email": "ann@example.org"}).status_code == 404
    )
    [fresh, *_] = re.findall(r'action="([^"]+/unpublish)"', r.text)
    assert fresh != action
    r = live.client.post(live.origin + fresh, data={"email": "ann@example.org"})
    assert r.status_code == 200 and "No address of this key is published" in r.text
    assert live.client.get("/pub/ann@example.org").status_code == 404
    # Still retrievable by fingerprint, identity-free.
    assert live.client.get(f"/pub/{key.fingerprint}").status_code == 200


def test_manage_json_and_bad_input(live: Server) -> None:
    r = live.client.post("/manage", json={"email": "x@example.org"})
    assert r.status_code == 200 and r.json()["status"] == "ok"
    r = live.client.post("/manage", json={"email": "not an address"})
    assert r.status_code == 400 and r.json()["error"]
    r = live.client.post(
        "/manage", data={"email": "bad", "csrf": csrf_token(live.client, "/manage")}
    )
    assert r.status_code == 400 and 'role="alert"' in r.text
    # Without the page's token the form is refused, and says why next to the field.
    r = live.client.post("/manage", data={"email": "x@example.org"})
    assert r.status_code == 403 and 'role="alert"' in r.text and "send it again" in r.text
    assert live.client.get("/manage/not-a-token").status_code == 404
