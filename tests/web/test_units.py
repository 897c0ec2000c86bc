"""The web package's pure parts: Accept negotiation, inert text, colours and contrast, the
form guard, and the API description the About page and docs/protocols.md share."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from markupsafe import Markup
from starlette.requests import Request

from attester.config import load_settings
from attester.http.negotiate import prefers_html, quality
from attester.http.render import inert
from attester.http.site import AA, TINTED, WHITE, Site, contrast, darkened, text_on
from attester.web import apidoc
from attester.web._request import duration, sentence
from attester.web.about import paragraphs
from attester.web.csrf import FormGuard, cross_site

CHROME = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,*/*;q=0.8"


def _request(headers: dict[str, str], scheme: str = "http", host: str = "keys.test") -> Request:
    raw = [(k.lower().encode(), v.encode()) for k, v in {"host": host, **headers}.items()]
    return Request(
        {
            "type": "http",
            "method": "POST",
            "scheme": scheme,
            "path": "/",
            "headers": raw,
            "query_string": b"",
            "server": (host, 80),
        }
    )


@pytest.mark.parametrize(
    ("accept", "html"),
    [
        (CHROME, True),
        ("text/html", True),
        ("text/html;q=0.9, application/json", False),
        ("application/json", False),
        ("*/*", False),  # curl, httpx
        ("", False),
        ("text/*", True),
        ("text/html;q=0", False),
        ("application/json;q=0.5, text/html;q=0.8", True),
        ("garbage, ;;, text/html;q=abc", False),
    ],
)
def test_only_a_preference_for_html_gets_pages(accept: str, html: bool) -> None:
    assert prefers_html(_request({"accept": accept} if accept else {})) is html


def test_quality_uses_the_most_specific_range() -> None:
    assert quality("text/*;q=0.2, text/html;q=0.7, */*;q=0.1", "text/html") == 0.7
    assert quality("text/*;q=0.2, */*;q=0.1", "text/html") == 0.2
    assert quality("image/png", "text/html") == 0


def test_inert_escapes_marks_invisible_characters_and_keeps_the_end() -> None:
    out = inert("<script>alert(1)</script> \u202eevil\u202c\u200b <a@b.example>")
    assert isinstance(out, Markup)
    assert "<script>" not in out and "&lt;script&gt;" in out
    assert out.count('class="ctl"') == 3 and "U+202E" in out and "U+200B" in out
    assert "\u202e" not in out and out.startswith('<bdi class="inert">')
    long = inert("x" * 1000 + " <long@example.org>")
    assert "characters left out" in long and long.endswith("&lt;long@example.org&gt;</bdi>")
    assert len(re.sub(r"<[^>]+>", "", str(long))) < 300
    assert inert('" onmouseover="x') == Markup('<bdi class="inert">&#34; onmouseover=&#34;x</bdi>')


@pytest.mark.parametrize("accent", ["#0a5ad4", "#ffd500", "#ffffff", "#000", "#7fdbff", "#f00"])
def test_any_accent_keeps_aa_contrast(accent: str) -> None:
    site = Site.from_settings(load_settings(web_accent_color=accent))
    assert contrast(site.on_accent, site.accent) >= AA
    assert contrast(site.link, WHITE) >= AA and contrast(site.link, TINTED) >= AA


def test_colour_helpers() -> None:
    assert round(contrast("#000000", "#ffffff"), 1) == 21.0
    assert text_on("#ffff00") != WHITE and text_on("#000080") == WHITE
    assert darkened("#0a5ad4") == "#0a5ad4"  # already dark enough: unchanged
    assert contrast(darkened("#ffd500"), WHITE) >= AA


def test_accent_and_footer_links_are_validated() -> None:
    from attester.config import ConfigError

    with pytest.raises(ConfigError, match="web_accent_color"):
        load_settings(web_accent_color="red; } body { display: none")
    with pytest.raises(ConfigError, match="web_footer_links"):
        load_settings(web_footer_links=[["x", "javascript:alert(1)"]])
    with pytest.raises(ConfigError, match="web_footer_links"):
        load_settings(web_footer_links=[["x", "//evil.example"]])
    ok = load_settings(web_footer_links=[["Imprint", "https://example.org/imprint"]])
    assert ok.web_footer_links == (("Imprint", "https://example.org/imprint"),)


def test_site_root_follows_the_public_url() -> None:
    behind_proxy = load_settings(base_url="https://keys.example/attester/", path_prefix="")
    assert Site.from_settings(behind_proxy).root == "/attester"
    assert Site.from_settings(load_settings(path_prefix="/k")).root == "/k"
    assert Site.from_settings(load_settings()).root == ""


def test_form_guard() -> None:
    now = datetime(2030, 1, 1, tzinfo=UTC)
    guard = FormGuard(b"k" * 32)
    token = guard.issue("upload", "192.0.2.1", now)
    assert guard.valid(token, "upload", "192.0.2.1", now + timedelta(minutes=5))
    assert not guard.valid(token, "manage", "192.0.2.1", now)  # made for another form
    assert not guard.valid(token, "upload", "198.51.100.7", now)  # another client
    assert not guard.valid(
        token, "upload", "192.0.2.1", now + guard.lifetime + timedelta(seconds=1)
    )
    assert not guard.valid(token, "upload", "192.0.2.1", now - timedelta(minutes=5))
    assert not FormGuard(b"o" * 32).valid(token, "upload", "192.0.2.1", now)  # another key
    issued, mac = token.split(".")
    assert not guard.valid(f"{int(issued) + 1}.{mac}", "upload", "192.0.2.1", now)
    for junk in ("", ".", "abc.def", "1" * 40 + ".x", token + "x"):
        assert not guard.valid(junk, "upload", "192.0.2.1", now)


def test_cross_site_decisions() -> None:
    site = Site.from_settings(load_settings(base_url="https://keys.example"))
    ok = [
        {},
        {"sec-fetch-site": "same-origin"},
        {"sec-fetch-site": "none"},
        {"origin": "https://keys.example"},
        {"origin": "null"},  # undecidable: left to the form token
        {"origin": "http://keys.test"},  # the request's own host (a proxy's http hop)
        {"sec-fetch-site": "same-origin", "origin": "null"},
    ]
    refused = [
        {"sec-fetch-site": "cross-site"},
        {"sec-fetch-site": "same-site"},
        {"sec-fetch-site": "cross-site", "origin": "https://keys.example"},
        {"origin": "https://evil.example"},
        {"origin": "https://keys.example.evil.example"},
    ]
    for headers in ok:
        assert cross_site(_request(headers), site) is None, headers
    for headers in refused:
        assert cross_site(_request(headers), site), headers


def test_api_description_renders_for_a_server() -> None:
    md = apidoc.render_markdown("https://keys.example/attester")
    for p in apidoc.PROTOCOLS:
        assert f"## {p.name}" in md
        for e in p.endpoints:
            assert f"`{e.path}`" in md and e.command("https://keys.example/attester") in md
    assert "gpg --keyserver hkps://keys.example/attester --recv-keys" in md
    assert "curl https://keys.example/attester/vks/v1/by-email/alice%40example.org" in md
    assert apidoc.hkp_url("http://127.0.0.1:8080") == "hkp://127.0.0.1:8080"


def test_apidoc_command_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert apidoc.main(["apidoc", "https://keys.example/"]) == 0
    assert capsys.readouterr().out.startswith("# Protocols")


def test_small_helpers() -> None:
    assert duration(3600) == "1 hour" and duration(7 * 86400) == "7 days"
    assert duration(900) == "15 minutes" and duration(61) == "61 seconds"
    assert sentence("the key is bad") == "The key is bad." and sentence("Done!") == "Done!"
    assert paragraphs("Mail ops@example.org.\n\nSee https://example.org/x, thanks") == [
        [("Mail ", None), ("ops@example.org", "mailto:ops@example.org"), (".", None)],
        [("See ", None), ("https://example.org/x", "https://example.org/x"), (", thanks", None)],
    ]
