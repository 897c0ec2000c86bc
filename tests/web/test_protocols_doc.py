"""docs/protocols.md starts with the quick reference the About page is rendered from, so
the document and the page cannot drift apart."""

from __future__ import annotations

from pathlib import Path

from attester.web.apidoc import render_markdown

DOCS = Path(__file__).parent.parent.parent / "docs"


def test_protocols_doc_is_generated_from_the_about_page_data() -> None:
    doc = (DOCS / "protocols.md").read_text()
    generated = render_markdown("https://keys.example.org").rstrip("\n")
    assert doc.startswith(generated + "\n"), (
        "docs/protocols.md is out of date: regenerate its first part with "
        "`python -m attester.web.apidoc`"
    )


def test_detail_pages_exist() -> None:
    doc = (DOCS / "protocols.md").read_text()
    for page in (
        "protocols/flowcrypt.md",
        "protocols/vks-wkd.md",
        "protocols/hkp.md",
        "federation.md",
    ):
        assert f"]({page})" in doc and (DOCS / page).exists(), page
