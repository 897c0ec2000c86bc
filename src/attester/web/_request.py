"""What page handlers share beyond ``attester.http``: sentences, form tokens (the
CSRF checks of ``attester.web.csrf``), and which protocols this app serves."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import BaseRoute, Match, Mount

from attester.http.render import error_page, site_of
from attester.http.state import core
from attester.web import apidoc, csrf


def sentence(message: str) -> str:
    """A service message as a sentence on a page: capital first, full stop last."""
    message = message.strip()
    if not message:
        return message
    message = message[0].upper() + message[1:]
    return message if message.endswith((".", "!", "?")) else message + "."


def duration(seconds: int) -> str:
    """A setting in seconds as people say it: "7 days", "1 hour", "15 minutes"."""
    for size, unit in ((86400, "day"), (3600, "hour"), (60, "minute")):
        if seconds >= size and seconds % size == 0:
            n = seconds // size
            return f"{n} {unit}{'' if n == 1 else 's'}"
    return f"{seconds} seconds"


# ---- form tokens


async def _guard(request: Request) -> csrf.FormGuard:
    state = request.app.state
    guard: csrf.FormGuard | None = getattr(state, "web_form_guard", None)
    if guard is None:
        c = core(request)
        key = await run_in_threadpool(c.server_secret, csrf.KEY_NAME)
        guard = csrf.FormGuard(key, timedelta(seconds=state.settings.csrf_token_seconds))
        state.web_form_guard = guard
    return guard


async def form_token(request: Request, form: str) -> str:
    """A token for the form named ``form``, for this client (check 2)."""
    guard = await _guard(request)
    return guard.issue(form, csrf.client_address(request), core(request).clock())


async def form_token_valid(request: Request, form: str, data: FormData) -> bool:
    guard = await _guard(request)
    token = data.get(csrf.FIELD)
    return isinstance(token, str) and guard.valid(
        token, form, csrf.client_address(request), core(request).clock()
    )


def refuse_cross_site(request: Request) -> HTMLResponse | None:
    """Check 1, for every POST a page makes: the refusal page, or None."""
    reason = csrf.cross_site(request, site_of(request))
    if reason is None:
        return None
    return error_page(
        request,
        403,
        f"This request was refused because {reason}. If you used a form on this site, "
        "open it again and send it from there.",
    )


# ---- what this app serves


def _routed(routes: list[BaseRoute], scope: dict[str, Any]) -> bool:
    for route in routes:
        match, child = route.matches(scope)
        if match is Match.NONE:
            continue
        if isinstance(route, Mount):
            if _routed(route.routes, {**scope, **child}):
                return True
            continue
        return True
    return False


def served_protocols(request: Request) -> frozenset[str]:
    """Slugs of the ``apidoc`` protocols whose routes this app mounts (found once)."""
    state = request.app.state
    found: frozenset[str] | None = getattr(state, "web_protocols", None)
    if found is None:
        prefix = state.settings.path_prefix
        found = frozenset(
            p.slug
            for p in apidoc.PROTOCOLS
            if _routed(
                request.app.router.routes,
                {"type": "http", "path": prefix + p.probe, "root_path": "", "method": "GET"},
            )
        )
        state.web_protocols = found
    return found
