"""OpenPGP Web Key Directory (``../shared/specs/wkd.md``, draft-koch-openpgp-webkey-service).

Both URL forms, for every domain the operator lists in ``wkd_domains``:

- advanced: ``/.well-known/openpgpkey/{domain}/hu/{hash}`` — the domain is in the path,
  so one server answers for many domains (``openpgpkey.{domain}`` points here);
- direct: ``/.well-known/openpgpkey/hu/{hash}`` — the domain is the request's ``Host``
  (port dropped), so a reverse proxy in front must pass the client's ``Host`` on.

The answer is the binary certificate with only the user IDs of the address whose local
part hashes to ``{hash}``, precomputed when the address was published (``Core.wkd``). The
``?l=`` parameter is optional and ignored: the hash decides, as the draft says.
``policy`` always exists for a served domain (a comment and the configured keywords);
``submission-address`` when one is configured. Nothing else under
``/.well-known/openpgpkey/`` exists: no directory listings.
"""

from __future__ import annotations

import re

import idna
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from attester.config import Settings
from attester.http.access import audience_of
from attester.http.cache import reusable, reusable_miss
from attester.service.core import Core
from attester.service.errors import NotFound

# 160 bits of SHA-1 in z-base-32: exactly 32 characters of its alphabet.
_HASH = re.compile(r"^[ybndrfg8ejkmcpqxot1uwisza345h769]{32}$")


def _headers(request: Request) -> dict[str, str]:
    headers = {"Cache-Control": "no-cache"}
    # The draft asks for "*": web mail clients fetch keys from other origins, and WKD
    # checkers look for the header on requests that carry no Origin. A narrowed
    # ``cors_origins`` is the operator's choice and is left to the CORS middleware.
    if "*" in request.app.state.settings.cors_origins:
        headers["Access-Control-Allow-Origin"] = "*"
    return headers


def _not_found(request: Request, message: str = "Not found") -> PlainTextResponse:
    return PlainTextResponse(message + "\n", status_code=404, headers=_headers(request))


def _domain(raw: str | None) -> str | None:
    """The domain as addresses are stored (``Email.parse``): lowercase, no trailing dot,
    IDNA ASCII form. ``None`` when it cannot be a domain."""
    d = (raw or "").strip().rstrip(".").lower()
    if not d:
        return None
    try:
        return idna.encode(d, uts46=True).decode("ascii")
    except idna.IDNAError:
        return None


def _host_domain(request: Request) -> str | None:
    # ``url.hostname`` is the Host header without port (and without brackets for IPv6).
    return _domain(request.url.hostname)


def _served(request: Request, domain: str | None) -> str | None:
    core: Core = request.app.state.core
    if domain is None or not core.serves_wkd_domain(domain):
        return None
    return domain


async def _key(request: Request, domain: str | None) -> Response:
    core: Core = request.app.state.core
    hash_ = request.path_params["hash"].lower()
    served = _served(request, domain)
    if served is None or not _HASH.match(hash_):
        return _not_found(request)
    try:
        body = await run_in_threadpool(core.wkd, served, hash_, audience_of(request))
    except NotFound:
        reusable_miss(request)
        return _not_found(request, "No key is published for this address")
    reusable(request)
    return Response(body, media_type="application/octet-stream", headers=_headers(request))


def policy_text(settings: Settings, domain: str) -> str:
    """The ``policy`` file: the comment line GnuPG's ``gpg-wks-client --install-key``
    writes (so a directory it made and ours read the same), then one configured keyword
    per line, then the submission address when one is set and no keyword names it. Every
    line ends in ``\\n``: GnuPG ignores a last line without one."""
    lines = [
        line.strip()
        for keyword in settings.wkd_policy_keywords
        for line in keyword.splitlines()
        if line.strip()
    ]
    address = settings.wkd_submission_address.strip()
    named = any(line.lower().startswith("submission-address") for line in lines)
    if address and not named:
        lines.append(f"submission-address: {address}")
    return "".join(f"{line}\n" for line in [f"# Policy flags for domain {domain}", *lines])


async def _policy(request: Request, domain: str | None) -> Response:
    served = _served(request, domain)
    if served is None:
        return _not_found(request)
    text = policy_text(request.app.state.settings, served)
    return PlainTextResponse(text, headers=_headers(request))


async def _submission_address(request: Request, domain: str | None) -> Response:
    address = request.app.state.settings.wkd_submission_address.strip()
    if _served(request, domain) is None or not address:
        return _not_found(request)
    return PlainTextResponse(f"{address}\n", headers=_headers(request))


async def advanced_key(request: Request) -> Response:
    return await _key(request, _domain(request.path_params["domain"]))


async def direct_key(request: Request) -> Response:
    return await _key(request, _host_domain(request))


async def advanced_policy(request: Request) -> Response:
    return await _policy(request, _domain(request.path_params["domain"]))


async def direct_policy(request: Request) -> Response:
    return await _policy(request, _host_domain(request))


async def advanced_submission_address(request: Request) -> Response:
    return await _submission_address(request, _domain(request.path_params["domain"]))


async def direct_submission_address(request: Request) -> Response:
    return await _submission_address(request, _host_domain(request))


async def nothing_else(request: Request) -> Response:
    """Directories and any other name under the WKD root: 404, never a listing."""
    return _not_found(request)


def routes() -> list[Route]:
    base = "/.well-known/openpgpkey"
    get = ["GET", "HEAD"]
    # The direct routes come first: ``hu`` is not a domain, so ``/hu/policy`` is a
    # (malformed) hash lookup, not the policy of a domain called "hu".
    return [
        Route(f"{base}/hu/{{hash}}", direct_key, methods=get),
        Route(f"{base}/policy", direct_policy, methods=get),
        Route(f"{base}/submission-address", direct_submission_address, methods=get),
        Route(f"{base}/{{domain}}/hu/{{hash}}", advanced_key, methods=get),
        Route(f"{base}/{{domain}}/policy", advanced_policy, methods=get),
        Route(f"{base}/{{domain}}/submission-address", advanced_submission_address, methods=get),
        Route(base, nothing_else, methods=get),
        Route(f"{base}/{{rest:path}}", nothing_else, methods=get),
    ]
