"""A person's whole journey in a real browser, once with JavaScript and once without:
upload a key, get the verification mail from the SMTP server, open the link, confirm,
search, see the key, ask for a management link, unpublish, see the address gone."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import Opener, no_horizontal_scroll, screenshot
from tests.support.flows import link_in
from tests.support.keys import TestKey
from tests.support.server import LiveServer
from tests.support.smtp import LoopbackSMTPServer

# The pages do not depend on the database; tests/web covers them on both.
pytestmark = pytest.mark.one_backend


def _h1(page: Page) -> object:
    return page.get_by_role("heading", level=1)


def _search(page: Page, live: LiveServer, term: str) -> None:
    page.goto(live.base_url + "/")
    page.get_by_label("Email address, fingerprint or key ID").fill(term)
    page.get_by_role("button", name="Search").click()


@pytest.mark.parametrize("javascript", [True, False], ids=["js", "nojs"])
def test_publish_find_and_unpublish(
    live: LiveServer,
    contexts: Opener,
    smtp_server: LoopbackSMTPServer,
    tmp_path: Path,
    javascript: bool,
) -> None:
    seen = contexts(javascript)
    page = seen.page
    shots = javascript  # one set of screenshots, from the run with scripts on
    key = TestKey.generate("Alice Example <alice@example.org>")
    grouped = " ".join(key.fingerprint[i : i + 4] for i in range(0, 40, 4))

    # 1. Home, then upload (a file with scripts on, pasted text without).
    page.goto(live.base_url + "/")
    expect(_h1(page)).to_have_text("Find someone\N{RIGHT SINGLE QUOTATION MARK}s OpenPGP key")
    if shots:
        screenshot(page, "home")
    page.get_by_role("link", name="Upload", exact=True).click()
    expect(_h1(page)).to_have_text("Upload your public key")
    if shots:
        screenshot(page, "upload")
    if javascript:
        path = tmp_path / "alice.asc"
        path.write_text(key.armored)
        page.get_by_label("Key file").set_input_files(path)
    else:
        page.get_by_label("Or paste the key").fill(key.armored)
    page.get_by_role("button", name="Upload", exact=True).click()

    # 2. The result lists the address, unpublished, with its button.
    expect(_h1(page)).to_have_text("Your key is uploaded")
    row = page.locator("li.address", has_text="alice@example.org")
    expect(row).to_contain_text("Not published")
    row.get_by_role("button", name="Send verification email").click()
    expect(page.locator(".alert.good")).to_contain_text("Check the inbox of alice@example.org")
    row = page.locator("li.address", has_text="alice@example.org")
    expect(row).to_contain_text("Verification mail sent")
    if shots:
        screenshot(page, "upload-result")

    # 3. The mail's link: scripts or not, the page asks; only a click confirms.
    [mail] = smtp_server.wait_for(1)
    page.goto(link_in(mail))
    expect(_h1(page)).to_have_text("Confirm your email address")
    if not javascript:
        screenshot(page, "verify")
    page.get_by_role("button", name="Confirm and publish").click()
    expect(_h1(page)).to_have_text("Verified")
    if shots:
        screenshot(page, "verified")

    # 4. Search by address: the key, its verified identity, how to get it.
    _search(page, live, "alice@example.org")
    card = page.locator("article.key")
    expect(card).to_contain_text(grouped)
    expect(card).to_contain_text("Alice Example <alice@example.org>")
    expect(card).to_contain_text("verified by email")
    expect(card).to_contain_text(f"--recv-keys {key.fingerprint}")
    with page.expect_download() as download:
        card.get_by_role("link", name="Download (.asc)").click()
    assert download.value.suggested_filename == f"{key.fingerprint}.asc"
    assert "BEGIN PGP PUBLIC KEY BLOCK" in Path(download.value.path()).read_text()
    no_horizontal_scroll(page)
    if shots:
        screenshot(page, "search-results")

    # 5. A management link, then unpublish.
    page.get_by_role("link", name="Manage", exact=True).click()
    if shots:
        screenshot(page, "manage-request")
    page.get_by_label("Email address").fill("alice@example.org")
    page.get_by_role("button", name="Send me a link").click()
    expect(_h1(page)).to_have_text("Check your inbox")
    mails = smtp_server.wait_for(2)
    page.goto(link_in(mails[1]))
    expect(_h1(page)).to_have_text("Manage your key")
    expect(page.locator("main")).to_contain_text("alice@example.org")
    if shots:
        screenshot(page, "manage")
    page.get_by_role("button", name="Unpublish alice@example.org").click()
    expect(page.locator(".alert.good")).to_have_text("alice@example.org is no longer published.")
    expect(page.locator("main")).to_contain_text("No address of this key is published")

    # 6. Gone by address; by fingerprint the page says why there is no user ID.
    _search(page, live, "alice@example.org")
    expect(page.get_by_role("heading", level=2)).to_have_text(
        "No key is published for alice@example.org"
    )
    expect(page.get_by_role("link", name="Upload your public key")).to_be_visible()
    if shots:
        screenshot(page, "search-nothing")
    _search(page, live, key.fingerprint)
    expect(page.locator("article.key")).to_contain_text("This key shows no user IDs")
    no_horizontal_scroll(page)
    if shots:
        screenshot(page, "search-no-identity")

    assert seen.external_requests == []
    assert seen.console_errors == []


def test_other_pages(live: LiveServer, contexts: Opener) -> None:
    """About, errors and the secret-key refusal, in the site's style and at 320 px."""
    seen = contexts()
    page = seen.page
    page.goto(live.base_url + "/about")
    expect(_h1(page)).to_have_text("About Attester")
    expect(page.locator("#api")).to_contain_text(f"curl {live.base_url}/vks/v1/by-fingerprint/")
    expect(page.locator("#contact")).to_contain_text("keys-admin@example.org")
    no_horizontal_scroll(page)
    screenshot(page, "about")

    response = page.goto(live.base_url + "/no/such/page")
    assert response is not None and response.status == 404
    expect(_h1(page)).to_have_text("Page not found")
    screenshot(page, "not-found")

    page.goto(live.base_url + "/upload")
    page.get_by_label("Or paste the key").fill(TestKey.generate("S <s@example.org>").secret_armored)
    page.get_by_role("button", name="Upload", exact=True).click()
    expect(page.get_by_role("alert")).to_contain_text("That was a secret key: nothing was stored")
    expect(page.get_by_label("Or paste the key")).to_have_value("")  # never echoed back
    no_horizontal_scroll(page)
    screenshot(page, "upload-secret-key")

    page.goto(live.base_url + "/search?q=0x1234ABCD")
    expect(page.locator("#q-error")).to_contain_text("Short (8 hex digit) key ids are refused")
    expect(page.get_by_label("Email address, fingerprint or key ID")).to_have_attribute(
        "aria-invalid", "true"
    )
    screenshot(page, "search-error")
    assert seen.external_requests == [] and seen.console_errors == []
