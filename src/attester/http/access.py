"""Who is asking, and internal mode (docs/enterprise.md).

Every request is given an ``Audience`` before any route runs: ``INTERNAL`` when the
client's address is in the policy's ``internal_networks`` or it presents an access token
(scope ``access``), ``OUTSIDE`` otherwise. Lookups pass it to the core, which keeps the
keys of domains with ``serve_outside = false`` from outsiders.

A protocol in internal mode (``[policy.modes]``) answers outsiders 403 with a sentence,
in the body its clients read: text for HKP, WKD and VKS lookups, JSON for the VKS upload
API and FlowCrypt, a page for browsers. The admin API (its own tokens), static assets
(the 403 page needs its stylesheet) and metrics are not guarded.

The client address is the one the ASGI server gives: ``attester serve`` runs uvicorn with
``forwarded_allow_ips``, so behind a trusted reverse proxy it is the address from
``X-Forwarded-For`` and from anyone else the socket's peer; a client cannot make itself
internal by sending that header.

An access token may come as ``Authorization: Bearer att_...``, as ``X-Attester-Token``
(when ``Authorization`` carries an OIDC id token), or as the password of HTTP Basic
authentication, for clients that can only be given a URL
(``https://user:att_...@keys.example.com``).
"""

from __future__ import annotations

import base64
import binascii
import json
import logging

import anyio.to_thread
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from attester.http.negotiate import prefers_html
from attester.http.render import error_page
from attester.service.access import Scope as TokenScope
from attester.service.access import looks_like_token
from attester.service.policy import Audience, Mode, Protocol
from attester.store.errors import DatabaseUnavailable

log = logging.getLogger("attester.http")

AUDIENCE_KEY = "attester_audience"

# Path prefixes (below path_prefix) and the protocol they belong to; the first match wins.
_PROTOCOLS: tuple[tuple[str, Protocol | None], ...] = (
    ("/admin/", None),  # its own bearer tokens
    ("/static/", None),  # the stylesheet, script and icon of every page, the 403 page too
    ("/brand/", None),
    ("/metrics", None),
    ("/pks/", Protocol.HKP),
    ("/vks/", Protocol.VKS),
    ("/.well-known/openpgpkey", Protocol.WKD),
    ("/pub/", Protocol.FLOWCRYPT),
    ("/welcome-message", Protocol.FLOWCRYPT),
    ("/test/welcome", Protocol.FLOWCRYPT),
    ("/initial/", Protocol.FLOWCRYPT),
    ("/lookup/", Protocol.FLOWCRYPT),
    ("/ldap-relay", Protocol.FLOWCRYPT),
    ("/api", Protocol.FLOWCRYPT),  # the enterprise server probe and client configuration
)

_NAMES = {
    Protocol.FLOWCRYPT: "FlowCrypt API",
    Protocol.VKS: "VKS API",
    Protocol.HKP: "HKP keyserver",
    Protocol.WKD: "Web Key Directory",
    Protocol.WEB: "website",
}


def protocol_of(path: str, wants_html: bool) -> Protocol | None:
    """The protocol a request path (below ``path_prefix``) belongs to; None for the
    surfaces that are never guarded. ``/`` is the search page for browsers and the
    FlowCrypt liveness probe for API clients; every other path is a page."""
    if path in ("", "/"):
        return Protocol.WEB if wants_html else Protocol.FLOWCRYPT
    for prefix, protocol in _PROTOCOLS:
        if path.startswith(prefix):
            return protocol
    return Protocol.WEB


def audience_of(request: Request) -> Audience:
    """The audience ``AccessGuard`` found for this request (outsiders, if it did not run:
    forgetting hides, never leaks)."""
    found = request.scope.get("state", {}).get(AUDIENCE_KEY)
    return found if isinstance(found, Audience) else Audience.OUTSIDE


def presented_token(headers: dict[str, str]) -> str | None:
    """An access token the request carries, if any (see the module docstring)."""
    explicit = headers.get("x-attester-token", "").strip()
    if explicit:
        return explicit
    auth = headers.get("authorization", "").strip()
    scheme, _, value = auth.partition(" ")
    value = value.strip()
    if scheme.lower() == "bearer" and looks_like_token(value):
        return value
    if scheme.lower() == "basic" and value:
        try:
            decoded = base64.b64decode(value, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        password = decoded.partition(":")[2]
        return password if looks_like_token(password) else None
    return None


class AccessGuard:
    """ASGI middleware: the audience of every request, and internal mode."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = scope["app"].state
        settings = state.settings
        policy = state.core.policy.current
        if not policy.audience_matters:  # every protocol public, no domain kept inside
            scope.setdefault("state", {})[AUDIENCE_KEY] = Audience.OUTSIDE
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        path = scope["path"]
        if settings.path_prefix and path.startswith(settings.path_prefix):
            path = path[len(settings.path_prefix) :]
        client = scope["client"][0] if scope.get("client") else ""
        protocol = protocol_of(path, prefers_html(request))
        internal = policy.internal_address(client)
        # Unguarded surfaces (the admin API checks its own tokens) need no token lookup.
        if not internal and protocol is not None:
            token = presented_token({k.lower(): v for k, v in request.headers.items()})
            if token is not None:
                try:
                    found = await anyio.to_thread.run_sync(
                        state.attestation.admin.tokens.check, token
                    )
                except DatabaseUnavailable as e:
                    log.warning("access token not checked: %s", e)
                    await _unavailable(settings.retry_after_seconds)(scope, receive, send)
                    return
                internal = found is not None and TokenScope.ACCESS.value in found.scopes
        scope.setdefault("state", {})[AUDIENCE_KEY] = (
            Audience.INTERNAL if internal else Audience.OUTSIDE
        )
        if protocol is None or internal or policy.mode(protocol) is Mode.PUBLIC:
            await self.app(scope, receive, send)
            return
        message = (
            f"This {_NAMES[protocol]} answers only clients inside the organisation's network "
            f"or with an access token; the address {client or 'of this client'} is not inside "
            "it."
        )
        response = _refusal(request, protocol, path, message)
        await response(scope, receive, send)


def _refusal(request: Request, protocol: Protocol, path: str, message: str) -> Response:
    if protocol is Protocol.WEB:
        return error_page(request, 403, message)
    if protocol is Protocol.FLOWCRYPT:
        return JSONResponse(
            {"error": {"code": 403, "message": message}, "code": 403, "message": message},
            status_code=403,
        )
    if protocol is Protocol.VKS and path.startswith(("/vks/v1/upload", "/vks/v1/request-verify")):
        return JSONResponse({"error": message}, status_code=403)
    return PlainTextResponse(message + "\n", status_code=403)


def _unavailable(retry_after: int) -> Response:
    body = json.dumps({"error": "The key server cannot reach its database right now."})
    return Response(
        body,
        status_code=503,
        media_type="application/json",
        headers={"Retry-After": str(retry_after)},
    )
