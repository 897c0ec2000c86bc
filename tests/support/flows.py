"""Helpers for tests that go through the mail round trip as a user would."""

from __future__ import annotations

import re
from email.message import EmailMessage

_LINK = re.compile(r"(https?://\S+/(?:verify|manage)/[A-Za-z0-9_-]+)")


def text_of(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain",))
    assert part is not None
    return str(part.get_content())


def link_in(message: EmailMessage) -> str:
    m = _LINK.search(text_of(message))
    assert m, f"no verify/manage link in:\n{text_of(message)}"
    return m.group(1)
