"""The pages over real HTTP: who gets a page at ``/``, the headers every page carries,
error pages, static files, branding, the About page, and links behind a proxy."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from attester.config import Settings
from attester.service.attestation import Attestation
from tests.support.flows import link_in
from tests.support.keys import TestKey
from tests.support.server import AppServer, Server
from tests.support.smtp import LoopbackSMTPServer
from tests.web.forms import csrf_token, token_in

BROWSER = {"accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}
PAGES = ["/", "/search?q=a@example.org", "/upload", "/manage", "/about", "/verify/x"]


@pytest.fixture
def live(server: Server) -> Server:
    return server


def test_root_is_a_page_for_browsers_and_alive_for_api_clients(live: Server) -> None:
    page = live.client.get("/", headers=BROWSER)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert 'role="search"' in page.text and 'name="q"' in page.text
    assert "Accept" in page.headers["vary"]
    for accept in ("*/*", "application/json", None):
        headers = {"accept": accept} if accept else {}
        r = live.client.get("/", headers=headers)
        assert r.json() == {"alive": True}, accept
        assert "Accept" in r.headers["vary"]
    assert live.client.head("/", headers=BROWSER).status_code == 200


@pytest.mark.parametrize("path", PAGES)
def test_every_page_carries_the_security_headers_and_no_cookie(live: Server, path: str) -> None:
    r = live.client.get(path, headers=BROWSER)
    csp = r.headers["content-security-policy"]
    for directive in (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "frame-ancestors 'none'",
        "form-action 'self'",
        "base-uri 'none'",
    ):
        assert directive in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["referrer-policy"] == "no-referrer"
    assert "set-cookie" not in r.headers
    # Nothing inline for the CSP to block, and nothing from other hosts.
    assert not re.search(r"<script(?![^>]*\ssrc=)", r.text)
    assert not re.search(r"<[^>]+\s(style|on[a-z]+)\s*=", r.text)
    assert not re.search(r'(src="|<link[^>]+href=")(https?:)?//', r.text)


def test_unknown_routes_get_a_page_or_the_json_body(live: Server) -> None:
    page = live.client.get("/no/such/thing", headers=BROWSER)
    assert page.status_code == 404 and "Page not found" in page.text
    assert page.headers["content-security-policy"]
    api = live.client.get("/no/such/thing")
    assert api.status_code == 404
    assert api.json() == {
        "error": {"code": 404, "message": "Not found"},
        "code": 404,
        "message": "Not found",
    }
    wrong = live.client.put("/about", headers=BROWSER)
    assert wrong.status_code == 405 and "Not allowed here" in wrong.text


def test_a_crash_shows_a_generic_page_and_logs(
    live: Server, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def boom(*args: object) -> None:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(live.app.state.core, "search", boom)
    url = "/search?q=a@example.org"
    page = live.client.get(url, headers=BROWSER)
    assert page.status_code == 500 and "Something went wrong on our side" in page.text
    assert "secret internals" not in page.text
    api = live.client.get(url)
    assert api.status_code == 500 and api.json()["message"] == "Internal server error"
    assert any("unhandled error" in r.message for r in caplog.records)


def test_static_files(live: Server) -> None:
    page = live.client.get("/", headers=BROWSER).text
    [css] = re.findall(r'href="(/static/style\.css\?v=\w+)"', page)
    r = live.client.get(css)
    assert r.headers["content-type"].startswith("text/css")
    assert r.headers["x-content-type-options"] == "nosniff"
    assert "immutable" in r.headers["cache-control"]
    assert "--accent:#0a5ad4" in r.text  # the configured colour, appended
    again = live.client.get(css, headers={"if-none-match": r.headers["etag"]})
    assert again.status_code == 304
    js = live.client.get(re.findall(r'src="(/static/app\.js\?v=\w+)"', page)[0])
    assert js.headers["content-type"].startswith("text/javascript") and len(js.content) < 4096
    assert live.client.get("/static/nope.css", headers=BROWSER).status_code == 404


@pytest.fixture
def branded(settings: Settings, tmp_path: Path) -> Iterator[Server]:
    logo = tmp_path / "logo.svg"
    logo.write_text('<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>')
    s = settings.model_copy(
        update={
            "service_name": "Example <Keys>",
            "web_logo_file": str(logo),
            "web_accent_color": "#ffd500",
            "web_footer_links": (("Imprint", "https://example.org/imprint"),),
            "web_contact": "Mail keys@example.org or see https://example.org/contact.",
            "web_privacy_statement": "We keep <b>nothing</b>.\n\nReally nothing.",
        }
    )
    with AppServer.start(s) as live:
        yield live


def test_branding_without_code(branded: Server) -> None:
    page = branded.client.get("/about", headers=BROWSER).text
    assert "<title>About and API · Example &lt;Keys&gt;</title>" in page
    assert '<img src="/brand/logo"' in page
    assert '<a href="https://example.org/imprint" rel="noopener noreferrer">Imprint</a>' in page
    assert '<a href="mailto:keys@example.org"' in page
    assert '<a href="https://example.org/contact"' in page
    assert "<p>We keep &lt;b&gt;nothing&lt;/b&gt;.</p>" in page and "<p>Really nothing.</p>" in page
    assert "These pages set no cookies" not in page  # the operator's statement replaces it
    logo = branded.client.get("/brand/logo")
    assert logo.headers["content-type"] == "image/svg+xml"
    assert "sandbox" in logo.headers["content-security-policy"]
    css = branded.client.get(re.findall(r'href="(/static/style\.css[^"]*)"', page)[0]).text
    # A pale accent: kept for buttons (with dark text on it), darkened for links.
    assert "--accent:#ffd500;--on-accent:#1a1d21;--link:#" in css


def test_about_lists_what_this_server_speaks(live: Server) -> None:
    page = live.client.get("/about", headers=BROWSER).text
    for anchor in ("api-vks", "api-hkp", "api-wkd", "api-flowcrypt", "api-manage"):
        assert f'id="{anchor}"' in page
    assert f"curl {live.base_url}/vks/v1/by-email/alice%40example.org" in page
    assert "These pages set no cookies" in page  # the built-in statement
    assert "has not published contact details" in page
    assert live.client.get("/brand/logo", headers=BROWSER).status_code == 404


@pytest.fixture
def proxied(settings: Settings, smtp_server: LoopbackSMTPServer) -> Iterator[Server]:
    """Served under /keys, as a proxy that keeps the prefix would pass it on."""
    s = settings.model_copy(
        update={"path_prefix": "/keys", "mail_url": smtp_server.url(), "mail_poll_seconds": 0.1}
    )
    with AppServer.start(s) as live:
        yield live


def test_links_are_right_under_a_path_prefix(
    proxied: Server, smtp_server: LoopbackSMTPServer
) -> None:
    live = proxied
    assert live.base_url.endswith("/keys")
    home = live.client.get("/", headers=BROWSER).text
    assert 'action="/keys/search"' in home and 'href="/keys/upload"' in home
    assert 'href="/keys/static/style.css?v=' in home
    for path in re.findall(r'(?:href|src)="(/[^"]*)"', home):
        assert path.startswith("/keys/"), path
        r = live.client.get(live.origin + path, headers=BROWSER)
        assert r.status_code == 200, path
    key = TestKey.generate("Pat <pat@example.org>")
    token = csrf_token(live.client, "/upload")
    r = live.client.post("/upload", data={"csrf": token, "keytext": key.armored})
    assert 'action="/keys/upload/verify"' in r.text
    [upload_token] = re.findall(r'name="token" value="([^"]+)"', r.text)
    verify_csrf = token_in(r.text)
    live.client.post(
        "/upload/verify",
        data={"csrf": verify_csrf, "token": upload_token, "email": "pat@example.org"},
    )
    [mail] = smtp_server.wait_for(1)
    link = link_in(mail)
    assert link.startswith(live.base_url + "/verify/")
    page = live.client.get(link).text
    assert f'action="/keys/verify/{link.rsplit("/", 1)[1]}"' in page


def test_a_proxy_that_strips_the_prefix(settings: Settings) -> None:
    """base_url names the public path; the app itself is served at /."""
    with AppServer.start(
        settings.model_copy(update={"base_url": "https://keys.example/attester"})
    ) as live:
        home = live.client.get("/", headers=BROWSER).text
        assert 'action="/attester/search"' in home
        about = live.client.get("/about", headers=BROWSER).text
        assert "curl https://keys.example/attester/vks/v1/by-fingerprint/" in about
        assert "gpg --keyserver hkps://keys.example/attester --recv-keys" in about


def test_operator_import_shows_how_addresses_were_attested(
    live: Server, attestation: Attestation
) -> None:
    key = TestKey.generate("Op <op@example.org>")
    attestation.imports.keyring(key.public, attest_emails=True)
    page = live.client.get("/search?q=op@example.org", headers=BROWSER).text
    assert "vouched for by the operator of this server" in page
