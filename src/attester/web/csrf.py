"""Cross-site request forgery: how a POST proves it came from our own page.

Attester sets no cookies, so there is no session a forged request could ride on; what a
forged POST could still do is make a victim's browser upload a key or ask for a management
mail in the victim's name (from the victim's address). A page's form must pass two
checks, both without per-request server state, so any number of app servers answer
alike (a scripted POST of JSON to ``/manage`` is an API call and needs neither token nor
page, see ``attester.web.links``):

1. Fetch metadata and ``Origin``. Every current browser (Chrome 76, Firefox 90, Safari
   16.4 and later) sends ``Sec-Fetch-Site``; we accept ``same-origin`` (our own form) and
   ``none`` (the user typed or reloaded it), and refuse ``cross-site`` and ``same-site`` (a
   sibling subdomain is another party). Without fetch metadata, an ``Origin`` naming
   another site is refused. ``Origin: null`` cannot be judged: our pages send
   ``Referrer-Policy: no-referrer``, under which a browser writes ``null`` even for our
   own forms, and an attacker can ask for the same.
2. A signed form token, for browsers without fetch metadata and for the ``null`` case.
   The page embeds ``time.HMAC(key, form, time, client address)``; the POST must return
   one made for this form, less than ``csrf_token_seconds`` old, for the same client address. The
   address binding matters: the token is not secret (anyone can load the form), so an
   attacker could otherwise copy a fresh one into a forged form; bound to the address it
   does not work from the victim's browser. Behind a proxy that hides client addresses
   every request shows the proxy's, and the binding degrades to "signed by us, recent".
   A user whose address changes between loading and sending the form sees it again with
   a fresh token and a sentence saying why.

The key is 256 random bits made once and kept in the database (``server_secrets``, name
``KEY_NAME``), so app servers share it without configuration and it survives restarts.
Rotating it is deleting that row and restarting the app servers (each keeps the key in
memory once read).

Links in mails (``/verify/{token}``, ``/manage/{token}``) and the forms on the pages they
open need no form token: the token in the URL is 192 random bits that only the mail's
reader knows, so a forger cannot name a URL that does anything. Those POSTs still get
check 1.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime, timedelta

from starlette.requests import Request

from attester.http.site import Site

FIELD = "csrf"  # the form field that carries the token

KEY_NAME = "web-form-key"


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


@dataclass(frozen=True)
class FormGuard:
    key: bytes
    lifetime: timedelta = timedelta(hours=6)  # the ``csrf_token_seconds`` setting

    def _mac(self, form: str, issued: int, client: str) -> str:
        msg = f"attester-form-v1\0{form}\0{issued}\0{client}".encode()
        return _b64(hmac.new(self.key, msg, hashlib.sha256).digest())

    def issue(self, form: str, client: str, now: datetime) -> str:
        issued = int(now.timestamp())
        return f"{issued}.{self._mac(form, issued, client)}"

    def valid(self, token: str, form: str, client: str, now: datetime) -> bool:
        issued_s, _, mac = token.partition(".")
        if not issued_s.isdigit() or len(issued_s) > 12 or not mac:
            return False
        issued = int(issued_s)
        age = now.timestamp() - issued
        # A minute of leeway for clocks of app servers that disagree.
        if age < -60 or age > self.lifetime.total_seconds():
            return False
        return hmac.compare_digest(mac, self._mac(form, issued, client))


def client_address(request: Request) -> str:
    return request.client.host if request.client else ""


def cross_site(request: Request, site: Site) -> str | None:
    """Why this request is refused as coming from another site, or None (check 1)."""
    fetch_site = request.headers.get("sec-fetch-site")
    if fetch_site is not None:
        if fetch_site.lower() in ("same-origin", "none"):
            return None
        return f"the browser says it was sent from another site ({fetch_site[:20]})"
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        return None
    own = {site.origin, f"{request.url.scheme}://{request.headers.get('host', '')}"}
    if origin.rstrip("/").lower() not in {o.lower() for o in own}:
        return "it was sent from a page of another site"
    return None
