"""What a hostile key or a hostile page can do in a real browser: nothing.

- A key whose user IDs carry markup, script, a right-to-left override and a very long
  name is uploaded, verified and shown; no script runs, the markup is visible as text.
- A page on another origin that posts our forms (with and without a token it fetched
  itself) is refused, and neither a mail nor a key results.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from playwright.sync_api import expect

from attester.service.attestation import Attestation
from tests.browser.conftest import Opener, no_horizontal_scroll, screenshot
from tests.support.flows import link_in
from tests.support.keys import TestKey
from tests.support.server import LiveServer
from tests.support.smtp import LoopbackSMTPServer
from tests.web.forms import token_in

# The pages do not depend on the database; tests/web covers them on both.
pytestmark = pytest.mark.one_backend

# A user ID with more angle brackets than its address's carries no address (it is never
# published), so the markup that can reach a page is an attribute break-out.
SCRIPT_UID = '" onfocus="window.__xss = 1" autofocus x=" &amp; <o\'neil&co@example.org>'
RTL_UID = "\u202egpj.exe\u202c Mallory <mallory@example.org>"
LONG_UID = "Bartholomew " * 300 + "<long@example.org>"


def test_user_ids_with_markup_script_and_bidi_stay_inert(
    live: LiveServer, contexts: Opener, smtp_server: LoopbackSMTPServer
) -> None:
    key = TestKey.generate(SCRIPT_UID).with_user_id(RTL_UID).with_user_id(LONG_UID)
    seen = contexts()
    page = seen.page
    page.goto(live.base_url + "/upload")
    page.get_by_label("Or paste the key").fill(key.armored)
    page.get_by_role("button", name="Upload", exact=True).click()
    addresses = ["long@example.org", "mallory@example.org", "o'neil&co@example.org"]
    for n, address in enumerate(addresses, 1):
        row = page.locator("li.address", has_text=address)
        row.get_by_role("button", name="Send verification email").click()
        # The address went through a hidden field and came back unchanged.
        expect(page.locator(".alert.good")).to_contain_text(f"Check the inbox of {address}")
        smtp_server.wait_for(n)
    for mail in smtp_server.messages:
        page.goto(link_in(mail))  # scripts on, and still only a click confirms
        page.get_by_role("button", name="Confirm and publish").click()
        expect(page.get_by_role("heading", level=1)).to_have_text("Verified")

    page.goto(live.base_url + "/search?q=" + key.fingerprint)
    card = page.locator("article.key")
    expect(card.locator("ul.identities li")).to_have_count(3)
    # Markup is shown as text; nothing ran, nothing was injected.
    expect(card).to_contain_text('" onfocus="window.__xss = 1" autofocus x=" &amp; <o')
    assert page.evaluate("window.__xss") is None
    assert card.locator("[onfocus], [autofocus]").count() == 0
    # The direction override is shown as a mark and changes nothing around it.
    expect(card.locator(".ctl").first).to_have_text("U+202E")
    # A very long name is cut, and the page still fits a small screen.
    expect(card).to_contain_text("characters left out")
    expect(card).to_contain_text("Bartholomew <long@example.org>")  # the end stays
    no_horizontal_scroll(page)
    screenshot(page, "search-hostile-user-ids")
    assert seen.dialogs == [] and seen.console_errors == [] and seen.external_requests == []


class _Attacker(ThreadingHTTPServer):
    page: bytes = b""


class _AttackerHandler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        assert isinstance(self.server, _Attacker)
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.end_headers()
        self.wfile.write(self.server.page)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def attacker() -> Iterator[_Attacker]:
    """A page on another origin (another loopback port) that posts forms to us."""
    server = _Attacker(("127.0.0.1", 0), _AttackerHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _forged(action: str, fields: dict[str, str], multipart: bool = False) -> bytes:
    inputs = "".join(f'<textarea name="{k}">{v}</textarea>' for k, v in fields.items())
    enctype = ' enctype="multipart/form-data"' if multipart else ""
    return (
        f'<!doctype html><form id="f" method="post" action="{action}"{enctype}>{inputs}</form>'
        '<script>document.getElementById("f").submit()</script>'
    ).encode()


def test_forged_cross_site_posts_are_refused(
    live: LiveServer,
    contexts: Opener,
    attacker: _Attacker,
    attestation: Attestation,
    smtp_server: LoopbackSMTPServer,
) -> None:
    published = TestKey.generate("Ann <ann@example.org>")
    attestation.imports.keyring(published.public, attest_emails=True)
    other_origin = f"http://127.0.0.1:{attacker.server_address[1]}/"
    seen = contexts()
    page = seen.page

    # The forger even fetched a fresh form token for itself (same address as the victim
    # here, so only the browser's fetch metadata tells the two apart).
    token = token_in(httpx.get(live.base_url + "/manage").text)
    planted = TestKey.generate("M <m@example.org>")
    attacks = [
        ("/manage", {"email": "ann@example.org", "csrf": token}, False),
        ("/manage", {"email": "ann@example.org"}, False),
        ("/upload", {"keytext": planted.armored}, True),
    ]
    for path, fields, multipart in attacks:
        attacker.page = _forged(live.base_url + path, fields, multipart)
        with page.expect_response(live.base_url + path) as answer:
            page.goto(other_origin)
        assert answer.value.status == 403
        expect(page.get_by_role("heading", level=1)).to_have_text("Refused")
        expect(page.locator("main")).to_contain_text("sent from another site")
    screenshot(page, "refused")
    assert smtp_server.messages == []
    assert live.client.get(f"/pub/{planted.fingerprint}").status_code == 404  # not stored
    # The same form from our own page works.
    page.goto(live.base_url + "/manage")
    page.get_by_label("Email address").fill("ann@example.org")
    page.get_by_role("button", name="Send me a link").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Check your inbox")
    smtp_server.wait_for(1)
