"""Forged requests over HTTP (``attester.web.csrf``): forms need their token and a
same-site origin; the pages mail links open need only the latter; the form key is made
once and shared by every app server on the database."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import create_engine, func, select

from attester.config import Settings
from attester.service.attestation import Attestation
from attester.store.schema import server_secrets
from tests.support.flows import link_in
from tests.support.keys import TestKey
from tests.support.server import AppServer, Server
from tests.support.smtp import LoopbackSMTPServer
from tests.web.forms import csrf_token

CROSS_SITE = [
    {"sec-fetch-site": "cross-site"},
    {"sec-fetch-site": "same-site"},
    {"origin": "https://evil.example"},
]


@pytest.fixture
def ann(attestation: Attestation) -> TestKey:
    key = TestKey.generate("Ann <ann@example.org>")
    attestation.imports.keyring(key.public, attest_emails=True)
    return key


@pytest.mark.parametrize("headers", CROSS_SITE)
def test_a_cross_site_form_post_is_refused_even_with_a_token(
    live: Server, ann: TestKey, smtp_server: LoopbackSMTPServer, headers: dict[str, str]
) -> None:
    token = csrf_token(live.client, "/manage")
    r = live.client.post(
        "/manage", data={"email": "ann@example.org", "csrf": token}, headers=headers
    )
    assert r.status_code == 403 and "sent from" in r.text and "another site" in r.text
    key = TestKey.generate("Planted <p@example.org>")
    upload = {"csrf": csrf_token(live.client, "/upload"), "keytext": key.armored}
    assert live.client.post("/upload", data=upload, headers=headers).status_code == 403
    assert live.client.get(f"/pub/{key.fingerprint}").status_code == 404
    assert smtp_server.messages == []


def test_our_own_pages_pass(live: Server, ann: TestKey, smtp_server: LoopbackSMTPServer) -> None:
    own = [
        {"sec-fetch-site": "same-origin", "origin": "null"},  # Chrome, no-referrer policy
        {"origin": live.origin},  # a browser without fetch metadata
        {"origin": "null"},  # the same under our no-referrer policy: the token decides
        {},
    ]
    for headers in own:
        token = csrf_token(live.client, "/manage")
        r = live.client.post(
            "/manage", data={"email": "ann@example.org", "csrf": token}, headers=headers
        )
        assert r.status_code == 200 and "Check your inbox" in r.text, headers
    smtp_server.wait_for(1)  # one mail: the rest fell in the rate-limit window


@pytest.mark.parametrize("form", ["/manage", "/upload"])
def test_a_form_without_its_token_is_refused(live: Server, form: str) -> None:
    other = "/upload" if form == "/manage" else "/manage"
    for token in (None, "", "123.abc", csrf_token(live.client, other)):
        data = {"email": "ann@example.org", "keytext": "x"}
        if token is not None:
            data["csrf"] = token
        r = live.client.post(form, data=data, headers={"origin": "null"})
        assert r.status_code == 403 and "please send" in r.text and 'role="alert"' in r.text


def test_the_scripted_manage_request_needs_no_token(
    live: Server, ann: TestKey, smtp_server: LoopbackSMTPServer
) -> None:
    r = live.client.post("/manage", json={"email": "ann@example.org"})
    assert r.status_code == 200 and r.json()["status"] == "ok"
    smtp_server.wait_for(1)


def test_mail_link_pages_refuse_cross_site_posts_but_need_no_form_token(
    live: Server, smtp_server: LoopbackSMTPServer
) -> None:
    key = TestKey.generate("Bo <bo@example.org>")
    r = live.client.post("/pub/bo@example.org", content=key.armored)
    assert r.status_code == 200
    [mail] = smtp_server.wait_for(1)
    link = link_in(mail)
    for headers in CROSS_SITE:
        refused = live.client.post(link, headers=headers)
        assert refused.status_code == 403
    assert live.client.get("/pub/bo@example.org").status_code == 404  # not published
    assert "Verified" in live.client.post(link).text
    manage = live.client.post("/manage", json={"email": "bo@example.org"})
    assert manage.status_code == 200
    [_, mail] = smtp_server.wait_for(2)
    page = live.client.get(link_in(mail))
    [action] = re.findall(r'action="([^"]+/unpublish)"', page.text)
    r = live.client.post(
        live.origin + action, data={"email": "bo@example.org"}, headers=CROSS_SITE[0]
    )
    assert r.status_code == 403
    assert live.client.get("/pub/bo@example.org").status_code == 200  # still published


def test_app_servers_on_one_database_share_the_form_key(
    settings: Settings, fresh_database_url: str
) -> None:
    # A database without a key yet: the two servers start together and make it.
    settings = settings.model_copy(update={"database_url": fresh_database_url})
    with AppServer.start(settings) as one, AppServer.start(settings) as two:
        token = csrf_token(one.client, "/manage")
        csrf_token(two.client, "/manage")
        r = two.client.post("/manage", data={"email": "x@example.org", "csrf": token})
        assert r.status_code == 200
    engine = create_engine(settings.database_url)
    with engine.connect() as conn:
        count = conn.execute(select(func.count()).select_from(server_secrets)).scalar_one()
    engine.dispose()
    assert count == 1
