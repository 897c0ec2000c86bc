"""Checks a browser can make on every page: text contrast (WCAG AA), a label for every
control, a visible focus ring on everything the keyboard reaches, one ``h1`` and the
landmarks, and no sideways scrolling at 320 px."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Page

from attester.config import Settings
from attester.service.attestation import Attestation
from tests.browser.conftest import Opener, no_horizontal_scroll
from tests.support.flows import link_in
from tests.support.keys import TestKey
from tests.support.server import LiveServer
from tests.support.smtp import LoopbackSMTPServer

# The pages do not depend on the database; tests/web covers them on both.
pytestmark = pytest.mark.one_backend

# Every element with its own text: colour against the first opaque background behind it.
_CONTRAST = """() => {
  const parse = c => {
    const m = c.match(/rgba?\\(([^)]+)\\)/);
    if (!m) return null;
    const p = m[1].split(/[\\s,\\/]+/).filter(Boolean).map(Number);
    return {r: p[0], g: p[1], b: p[2], a: p.length > 3 ? p[3] : 1};
  };
  const lum = ({r, g, b}) => {
    const f = v => {
      v /= 255;
      return v <= 0.04045 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4);
    };
    return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
  };
  const background = el => {
    for (let e = el; e; e = e.parentElement) {
      const c = parse(getComputedStyle(e).backgroundColor);
      if (c && c.a > 0.5) return c;
    }
    return {r: 255, g: 255, b: 255, a: 1};
  };
  const failures = [];
  const seen = new Set();
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  while (walker.nextNode()) {
    const text = walker.currentNode.textContent.trim();
    const el = walker.currentNode.parentElement;
    if (!text || seen.has(el)) continue;
    seen.add(el);
    const st = getComputedStyle(el);
    const box = el.getBoundingClientRect();
    if (st.visibility === "hidden" || box.width < 2 || box.height < 2) continue;
    const l1 = lum(parse(st.color)), l2 = lum(background(el));
    const ratio = (Math.max(l1, l2) + 0.05) / (Math.min(l1, l2) + 0.05);
    const size = parseFloat(st.fontSize), bold = parseInt(st.fontWeight, 10) >= 700;
    const needed = size >= 24 || (bold && size >= 18.66) ? 3 : 4.5;
    if (ratio < needed) {
      failures.push(`${el.tagName}.${el.className} ${ratio.toFixed(2)}: ${text.slice(0, 40)}`);
    }
  }
  return failures;
}"""

_UNLABELLED = """() => Array.from(document.querySelectorAll(
    "input:not([type=hidden]), textarea, select"))
  .filter(el => el.labels.length === 0 && !el.getAttribute("aria-label"))
  .map(el => el.outerHTML.slice(0, 80))"""

_FOCUS = """() => {
  const el = document.activeElement;
  if (!el || el === document.body) return null;
  const st = getComputedStyle(el);
  return {tag: el.tagName + " " + (el.textContent || "").trim().slice(0, 30),
          ok: st.outlineStyle !== "none" && parseFloat(st.outlineWidth) >= 2};
}"""


def _check(page: Page) -> None:
    page.wait_for_load_state("load")
    assert page.evaluate(_CONTRAST) == [], page.url
    assert page.evaluate(_UNLABELLED) == [], page.url
    assert page.locator("h1").count() == 1, page.url
    assert page.evaluate("document.documentElement.lang") == "en"
    for landmark in ("banner", "navigation", "main", "contentinfo"):
        assert page.get_by_role(landmark).count() >= 1, (page.url, landmark)
    no_horizontal_scroll(page)
    no_horizontal_scroll(page, 375)
    # Tab through the page: whatever takes focus shows a ring.
    page.locator("body").focus()
    reached = set()
    for _ in range(25):
        page.keyboard.press("Tab")
        focused = page.evaluate(_FOCUS)
        if focused is None:
            continue
        assert focused["ok"], (page.url, focused["tag"])
        reached.add(focused["tag"])
    assert len(reached) >= 4, page.url


@pytest.fixture(params=["#0a5ad4", "#ffd500"], ids=["default-accent", "pale-accent"])
def branded(
    request: pytest.FixtureRequest, settings: Settings, smtp_server: LoopbackSMTPServer
) -> Iterator[LiveServer]:
    """Also with a pale accent an operator might pick: contrast is fixed up, not trusted."""
    s = settings.model_copy(
        update={
            "mail_url": smtp_server.url(),
            "mail_poll_seconds": 0.1,
            "web_accent_color": request.param,
        }
    )
    with LiveServer.start(s) as server:
        yield server


def test_pages_meet_the_basics(
    branded: LiveServer,
    contexts: Opener,
    smtp_server: LoopbackSMTPServer,
) -> None:
    live = branded
    attestation: Attestation = live.app.state.attestation  # its links name the live port
    published = TestKey.generate("Bob <bob@example.org>")
    attestation.imports.keyring(published.public, attest_emails=True)
    pending = TestKey.generate("Carol <carol@example.org>")
    states = attestation.submit.submit(pending.public)
    attestation.verify.request(states.fingerprint, list(states.addresses))
    [mail] = smtp_server.wait_for(1)

    seen = contexts(javascript=False)  # the verify page would confirm itself
    page = seen.page
    for path in (
        "/",
        "/search?q=bob@example.org",
        "/search?q=nobody@example.org",
        "/search?q=0x1",
        "/upload",
        "/manage",
        "/about",
        "/not/here",
    ):
        page.goto(live.base_url + path)
        _check(page)
    page.goto(link_in(mail))
    _check(page)
    page.goto(live.base_url + "/upload")
    page.get_by_label("Or paste the key").fill(pending.armored)
    page.get_by_role("button", name="Upload", exact=True).click()
    _check(page)
    assert seen.external_requests == [] and seen.console_errors == []
