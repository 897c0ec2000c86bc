"""End-to-end tests in a real browser: Debian's ``chromium``, driven headless by
Playwright (its own driver; no browser is downloaded). ``scripts/test`` installs chromium
when it is missing; without it these tests are skipped with that reason.

The browser talks only to 127.0.0.1: every other request is aborted and recorded, and
``external_requests`` must stay empty (pages load nothing from elsewhere).

The pages do not depend on the database (``tests/web`` covers them on both, in process),
so these tests run on the first backend only (``one_backend``): a browser costs CPU.

Screenshots (full page, desktop and 375 px wide) go to ``test-artifacts/screenshots/``;
with ``ATTESTER_TEST_UPDATE_SCREENSHOTS=1`` they are also copied to ``docs/screenshots/``,
the set the README shows.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import pytest

from attester.config import Settings
from tests.support.server import LiveServer
from tests.support.smtp import LoopbackSMTPServer

CHROMIUM = Path("/usr/bin/chromium")
ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "screenshots"
DOCS = ROOT / "docs" / "screenshots"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-quic",
    "--no-first-run",
    "--disable-component-update",
    "--disable-sync",
    # Nothing but loopback resolves, should anything try.
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
]
VIEWPORTS = {"desktop": (1280, 800), "mobile": (375, 740)}

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, Page


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    # Module scope, not session: Playwright's sync API keeps an asyncio loop running in
    # this thread while it is started, which breaks later tests that run their own loop.
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed (./scripts/test installs it)")
    from playwright.sync_api import sync_playwright

    # Playwright starts chromium with a fresh temporary --user-data-dir of its own and
    # removes it afterwards (it refuses one passed in ``args``).
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS, headless=True)
        try:
            yield b
        finally:
            b.close()


@dataclass
class Browsing:
    """One browser context (a fresh profile: no cache, no storage) and what it saw."""

    context: BrowserContext
    page: Page
    external_requests: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)


def open_context(browser: Browser, javascript: bool = True, **options: Any) -> Browsing:
    context = browser.new_context(
        java_script_enabled=javascript,
        viewport={"width": VIEWPORTS["desktop"][0], "height": VIEWPORTS["desktop"][1]},
        **options,
    )
    context.set_default_timeout(15_000)
    page = context.new_page()
    seen = Browsing(context, page)

    def only_loopback(route: Any) -> None:
        host = urlsplit(route.request.url).hostname
        if host == "127.0.0.1":
            route.continue_()
        else:
            seen.external_requests.append(route.request.url)
            route.abort()

    context.route("**/*", only_loopback)

    def console(message: Any) -> None:
        # A page answered 404 on purpose (nothing found) is reported like a broken
        # resource; resources are watched below instead.
        if message.type == "error" and not message.text.startswith("Failed to load resource"):
            seen.console_errors.append(message.text)

    def response(r: Any) -> None:
        if r.request.resource_type != "document" and r.status >= 400:
            seen.console_errors.append(f"{r.status} for {r.url}")

    page.on("console", console)
    page.on("pageerror", lambda e: seen.console_errors.append(str(e)))
    page.on("response", response)

    def dialog(d: Any) -> None:
        seen.dialogs.append(d.message)
        d.dismiss()

    page.on("dialog", dialog)
    return seen


Opener = Callable[..., Browsing]


@pytest.fixture
def contexts(browser: Browser) -> Iterator[Opener]:
    """``contexts(javascript=True)`` opens a fresh context; all are closed afterwards, so
    a failed test leaves no connection open (ask for it after the server fixture, so it
    is torn down before the server)."""
    opened: list[Browsing] = []

    def make(javascript: bool = True, **options: Any) -> Browsing:
        seen = open_context(browser, javascript, **options)
        opened.append(seen)
        return seen

    yield make
    for seen in opened:
        seen.context.close()


@pytest.fixture
def live(settings: Settings, smtp_server: LoopbackSMTPServer) -> Iterator[LiveServer]:
    """The app with mail going to the loopback SMTP server, branded a little."""
    s = settings.model_copy(
        update={
            "mail_url": smtp_server.url(),
            "mail_poll_seconds": 0.1,
            "web_contact": "Write to keys-admin@example.org.",
        }
    )
    with LiveServer.start(s) as server:
        yield server


def screenshot(page: Page, name: str) -> None:
    """Full-page screenshots of the current page at each viewport, into the artefacts
    folder (and ``docs/screenshots`` when asked to update them)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.wait_for_load_state("load")
    size = page.viewport_size
    for label, (width, height) in VIEWPORTS.items():
        page.set_viewport_size({"width": width, "height": height})
        target = ARTIFACTS / f"{name}-{label}.png"
        page.screenshot(path=str(target), full_page=True, animations="disabled")
        if os.environ.get("ATTESTER_TEST_UPDATE_SCREENSHOTS") == "1":
            DOCS.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(target, DOCS / target.name)
    if size:
        page.set_viewport_size(size)


def no_horizontal_scroll(page: Page, width: int = 320) -> None:
    """At ``width`` px the page must not need sideways scrolling."""
    page.wait_for_load_state("load")  # the stylesheet applied, not just the DOM there
    size = page.viewport_size
    page.set_viewport_size({"width": width, "height": 640})
    scroll = page.evaluate("document.documentElement.scrollWidth")
    wide = page.evaluate(_WIDEST, width)
    if size:
        page.set_viewport_size(size)
    assert scroll <= width, f"{page.url} is {scroll}px wide at {width}px: {wide}"


_WIDEST = """(width) => Array.from(document.querySelectorAll("body *"))
  .filter(el => el.getBoundingClientRect().right > width + 1)
  .slice(0, 5)
  .map(el => `${el.tagName}.${el.className} right=${el.getBoundingClientRect().right}`)"""
