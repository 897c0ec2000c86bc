"""The web pages' routes, and the two hooks ``attester.app`` uses to share URLs with the
APIs: ``/`` (search page for browsers, ``{"alive": true}`` for API clients) and error
answers (a page in the site's style for browsers, the JSON body for everyone else).

    search.py   /  /search  /download/{fingerprint}
    upload.py   /upload  /upload/verify
    links.py    /verify/{token}  /manage  /manage/{token}  (pages that mail links open)
    about.py    /about  /brand/logo
    csrf.py     how a POST proves it came from our own page

Templates, security headers and ``/static/{name}`` are ``attester.http.render``: the HKP
index is drawn in the same frame.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from attester.http.negotiate import prefers_html
from attester.http.render import SECURITY_HEADERS, error_page, page, serve_asset
from attester.web import about, links, search, upload

__all__ = ["SECURITY_HEADERS", "browser_or", "html_or", "page", "routes"]

log = logging.getLogger("attester.web")

Endpoint = Callable[[Request], Awaitable[Response]]
ExceptionHandler = Callable[[Request, Exception], Awaitable[Response]]


def browser_or(api: Endpoint) -> Endpoint:
    """An endpoint for ``/``: browsers (``Accept`` prefers HTML) get the search page, API
    clients keep getting ``api``'s answer."""

    async def endpoint(request: Request) -> Response:
        if prefers_html(request):
            response: Response = search.search_page(request, 200, "")
        else:
            response = await api(request)
        response.headers["Vary"] = "Accept"
        return response

    return endpoint


def html_or(handler: ExceptionHandler) -> ExceptionHandler:
    """An exception handler that answers browsers with an error page in the site's style
    and everyone else as ``handler`` does (API clients rely on its JSON body). ``handler``
    always runs first, so its logging and status code stay the one truth."""

    async def handle(request: Request, exc: Exception) -> Response:
        response = await handler(request, exc)
        if not prefers_html(request):
            return response
        try:
            html = error_page(request, response.status_code)
        except Exception:
            # The error page must never fail the error path: the API answer stands.
            log.exception("the error page for status %d could not be drawn", response.status_code)
            return response
        if isinstance(exc, HTTPException) and exc.headers:
            html.headers.update(exc.headers)
        if "retry-after" in response.headers:
            html.headers["Retry-After"] = response.headers["retry-after"]
        html.headers["Vary"] = "Accept"
        return html

    return handle


def routes() -> list[BaseRoute]:
    return [
        Route("/search", search.search, methods=["GET"]),
        Route("/download/{fingerprint}", search.download, methods=["GET"]),
        Route("/upload", upload.upload_form, methods=["GET"]),
        Route("/upload", upload.upload_submit, methods=["POST"]),
        Route("/upload/verify", upload.upload_verify, methods=["POST"]),
        Route("/verify/{token}", links.verify_page, methods=["GET"]),
        Route("/verify/{token}", links.verify_confirm, methods=["POST"]),
        Route("/verify/{token}/resend", links.verify_resend, methods=["POST"]),
        Route("/manage", links.manage_form, methods=["GET"]),
        Route("/manage", links.manage_request, methods=["POST"]),
        Route("/manage/{token}", links.manage_page, methods=["GET"]),
        Route("/manage/{token}/unpublish", links.manage_unpublish, methods=["POST"]),
        Route("/about", about.about, methods=["GET"]),
        Route("/brand/logo", about.logo, methods=["GET"]),
        Route("/static/{name}", serve_asset, methods=["GET"]),
    ]
