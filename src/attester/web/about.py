"""The About page (how attestation works, the API of every protocol this app serves, the
operator's contact and privacy statement) and the operator's logo."""

from __future__ import annotations

import re

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from attester.http.render import error_page, page, site_of
from attester.http.state import core
from attester.web import apidoc
from attester.web._request import duration, served_protocols

_LINKABLE = re.compile(r"https?://[^\s<>\"']+|[^\s<>\"'@()]+@[^\s<>\"'@()]+\.[A-Za-z]{2,}")

Run = tuple[str, str | None]  # text, and the link it is (or None)


def paragraphs(text: str) -> list[list[Run]]:
    """The operator's plain text as paragraphs of runs: blank lines separate paragraphs,
    URLs and addresses become links, nothing is taken as markup."""
    out: list[list[Run]] = []
    for para in re.split(r"\n\s*\n", text.strip()):
        runs: list[Run] = []
        pos = 0
        for m in _LINKABLE.finditer(para):
            target = m.group(0).rstrip(".,;:!?)")
            if m.start() > pos:
                runs.append((para[pos : m.start()], None))
            runs.append((target, target if "://" in target else f"mailto:{target}"))
            pos = m.start() + len(target)
        if pos < len(para):
            runs.append((para[pos:], None))
        if runs:
            out.append(runs)
    return out


async def about(request: Request) -> Response:
    site = site_of(request)
    served = served_protocols(request)
    settings = core(request).settings
    return page(
        request,
        "about.html",
        nav="about",
        protocols=[p for p in apidoc.PROTOCOLS if p.slug in served],
        base=site.public_url,
        contact=paragraphs(site.contact) if site.contact else [],
        privacy=paragraphs(site.privacy) if site.privacy else [],
        verify_valid=duration(settings.verify_token_seconds),
        manage_valid=duration(settings.manage_token_seconds),
    )


async def logo(request: Request) -> Response:
    site = site_of(request)
    if site.logo is None:
        return error_page(request, 404)
    state = request.app.state
    body: bytes | None = getattr(state, "web_logo", None)
    if body is None:
        body = await run_in_threadpool(site.logo.read_bytes)
        state.web_logo = body
    return Response(
        body,
        media_type=site.logo_type,
        headers={
            # An SVG opened on its own must not run script in our origin.
            "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; sandbox",
            "X-Content-Type-Options": "nosniff",
            "Cache-Control": "public, max-age=3600",
        },
    )
