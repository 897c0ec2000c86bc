"""Filling in the pages' forms from tests, as a browser would: with the CSRF token the
page carries (``attester.web.csrf``)."""

from __future__ import annotations

import re

import httpx

_TOKEN = re.compile(r'name="csrf" value="([^"]+)"')


def csrf_token(client: httpx.Client, path: str) -> str:
    """The form token on the page at ``path``."""
    r = client.get(path)
    assert r.status_code == 200, r.text
    return token_in(r.text)


def token_in(html: str) -> str:
    m = _TOKEN.search(html)
    assert m, "no CSRF token in the page"
    return m.group(1)
