"""Rendering: the Jinja2 environment, the headers every page carries, and the stylesheet,
script and icon, built once per app with the operator's accent colour.

Templates are autoescaped and ``StrictUndefined``. User IDs go through the ``inert``
filter, which also makes invisible and direction-changing characters visible, so a user
ID cannot hide text or reorder what surrounds it.
"""

from __future__ import annotations

import hashlib
import unicodedata
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup, escape
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from attester.http.site import Site

_HERE = Path(__file__).parent

# Pages load only what this server serves: no inline script or style, no frames, forms
# post only here. The one script is a file (script-src 'self'), so no hash is needed.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'none'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
    "Cache-Control": "no-store",
}

# Characters that change the direction of text around them, or show nothing at all.
_BIDI = frozenset(
    chr(c) for c in (0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A))
)
_INVISIBLE = frozenset("\u200b\u2060\ufeff\u00ad\u180e")
UID_DISPLAY_LIMIT = 200


def inert(value: object, limit: int = UID_DISPLAY_LIMIT) -> Markup:
    """Text from a user, safe to show: escaped; control, bidi and invisible characters
    written as visible ``U+XXXX`` marks; past ``limit`` characters the middle is left out
    (the end, where a user ID keeps its address, stays); isolated in a ``<bdi>`` so
    right-to-left text cannot reorder the page around it."""
    text = str(value)
    if len(text) <= limit:
        body = _visible(text)
    else:
        tail = limit // 4
        left_out = len(text) - limit
        body = (
            _visible(text[: limit - tail])
            + f'<span class="more"> … {left_out} characters left out … </span>'
            + _visible(text[-tail:])
        )
    return Markup('<bdi class="inert">' + body + "</bdi>")


def _visible(text: str) -> str:
    parts: list[str] = []
    for ch in text:
        if ch in _BIDI or ch in _INVISIBLE or unicodedata.category(ch) in ("Cc", "Zl", "Zp"):
            parts.append(f'<span class="ctl" title="invisible character">U+{ord(ch):04X}</span>')
        else:
            parts.append(str(escape(ch)))
    return "".join(parts)


def _date(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d") if value else ""


def _datetime(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC") if value else ""


_env = jinja2.Environment(
    loader=jinja2.FileSystemLoader(_HERE / "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
_env.filters["inert"] = inert
_env.filters["date"] = _date
_env.filters["datetime"] = _datetime


@dataclass(frozen=True)
class Asset:
    body: bytes
    media_type: str
    etag: str


def _build_assets(site: Site) -> dict[str, Asset]:
    static = _HERE / "static"
    # The operator's colours come last in the stylesheet and win; they are hex colours
    # (validated in config, adjusted for contrast in Site), so nothing else can get in.
    css = (static / "style.css").read_text("utf-8") + (
        f"\n:root{{--accent:{site.accent};--on-accent:{site.on_accent};--link:{site.link}}}\n"
    )
    icon = (static / "icon.svg").read_text("utf-8").replace("currentColor", site.link)
    files = {
        "style.css": (css.encode(), "text/css; charset=utf-8"),
        "app.js": ((static / "app.js").read_bytes(), "text/javascript; charset=utf-8"),
        "icon.svg": (icon.encode(), "image/svg+xml"),
    }
    return {
        name: Asset(body, media, '"' + hashlib.sha256(body).hexdigest()[:20] + '"')
        for name, (body, media) in files.items()
    }


def site_of(request: Request) -> Site:
    state = request.app.state
    found: Site | None = getattr(state, "web_site", None)
    if found is None:
        found = Site.from_settings(state.settings)
        state.web_site = found
    return found


def assets_of(request: Request) -> dict[str, Asset]:
    state = request.app.state
    found: dict[str, Asset] | None = getattr(state, "web_assets", None)
    if found is None:
        found = _build_assets(site_of(request))
        state.web_assets = found
    return found


def render(request: Request, template: str, **context: Any) -> str:
    site = site_of(request)
    assets = assets_of(request)

    def asset(name: str) -> str:
        return f"{site.root}/static/{name}?v={assets[name].etag.strip(chr(34))}"

    context.setdefault("nav", "")
    return _env.get_template(template).render(
        site=site,
        root=site.root,
        prefix=site.root,
        service_name=site.name,
        asset=asset,
        **context,
    )


def page(request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
    """A page in the site's frame, with the security headers."""
    html = render(request, template, **context)
    return HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)


_ERROR_TITLES = {
    400: "The request could not be understood",
    403: "Refused",
    404: "Page not found",
    405: "Not allowed here",
    410: "Gone",
    413: "Too large",
    500: "Something went wrong on our side",
    503: "Temporarily unavailable",
}


def error_page(request: Request, status: int, detail: str | None = None) -> HTMLResponse:
    """The error page in the site's style; ``detail`` is a sentence for the reader."""
    title = _ERROR_TITLES.get(status, "Error")
    return page(request, "error.html", status, status_code=status, title=title, detail=detail)


def serve_asset(request: Request) -> Response:
    found = assets_of(request).get(request.path_params["name"])
    if found is None:
        return error_page(request, 404)
    headers = {
        "ETag": found.etag,
        # Pages link each file with its hash in the query, so a copy never goes stale.
        "Cache-Control": "public, max-age=31536000, immutable",
        "X-Content-Type-Options": "nosniff",
        "Cross-Origin-Resource-Policy": "same-origin",
    }
    if request.headers.get("if-none-match") == found.etag:
        return Response(status_code=304, headers=headers)
    return Response(found.body, media_type=found.media_type, headers=headers)


def with_headers(response: HTMLResponse, headers: dict[str, str]) -> HTMLResponse:
    """``response`` carrying ``headers`` too (a 429 page's ``Retry-After``)."""
    response.headers.update(headers)
    return response
