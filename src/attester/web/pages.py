"""Pages that mail links open: verification (GET shows, only POST publishes) and key
management. Templates are autoescaped; every value from users is rendered inert."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jinja2
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from attester.openpgp.errors import InvalidEmail
from attester.openpgp.types import Email
from attester.service.attestation import Attestation

_HERE = Path(__file__).parent
_env = jinja2.Environment(
    loader=jinja2.FileSystemLoader(_HERE / "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
)

SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
    "img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}


def page(request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
    settings = request.app.state.settings
    html = _env.get_template(template).render(
        service_name=settings.service_name, prefix=settings.path_prefix, **context
    )
    return HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)


def _attestation(request: Request) -> Attestation:
    service: Attestation = request.app.state.attestation
    return service


def _woken(request: Request) -> None:
    worker = getattr(request.app.state, "mail_worker", None)
    if worker is not None:
        worker.wake()


async def verify_page(request: Request) -> Response:
    token = request.path_params["token"]
    view = await run_in_threadpool(_attestation(request).inspect_verification, token)
    status = 404 if view.state.value == "invalid" else 200
    return page(request, "verify.html", status, view=view, token=token)


async def verify_confirm(request: Request) -> Response:
    token = request.path_params["token"]
    view = await run_in_threadpool(_attestation(request).confirm, token)
    _woken(request)
    status = {"invalid": 404, "not_on_key": 409}.get(view.state.value, 200)
    return page(request, "verified.html", status, view=view, token=token)


async def verify_resend(request: Request) -> Response:
    states = await run_in_threadpool(_attestation(request).resend, request.path_params["token"])
    _woken(request)
    if states is None:
        return page(
            request,
            "message.html",
            400,
            heading="Nothing to resend",
            message="Only an expired link can be renewed this way.",
        )
    return page(
        request,
        "message.html",
        heading="Check your inbox",
        message="If the address is still on the key and no mail was sent recently, "
        "a new verification link is on its way.",
    )


async def manage_request(request: Request) -> Response:
    wants_json = "application/json" in request.headers.get("content-type", "")
    if request.method == "GET":
        return page(request, "manage_request.html", email=None, error=None)
    try:
        if wants_json:
            data = await request.json()
            raw = data.get("email", "") if isinstance(data, dict) else ""
        else:
            raw = str((await request.form()).get("email", ""))
        email = Email.parse(str(raw))
    except (InvalidEmail, ValueError) as e:
        msg = str(e) if isinstance(e, InvalidEmail) else "The body must be JSON with an email."
        if wants_json:
            return JSONResponse({"error": msg}, status_code=400)
        return page(request, "manage_request.html", 400, email=None, error=msg)
    await run_in_threadpool(_attestation(request).request_manage, email)
    _woken(request)
    text = (
        "If a key is published for this address, a management link was mailed to it. "
        "It is valid for a limited time."
    )
    if wants_json:
        return JSONResponse({"status": "ok", "message": text})
    return page(request, "message.html", heading="Check your inbox", message=text)


async def manage_page(request: Request) -> Response:
    view = await run_in_threadpool(_attestation(request).manage_view, request.path_params["token"])
    return page(request, "manage.html", 200 if view.valid else 404, view=view, notice=None)


async def manage_unpublish(request: Request) -> Response:
    form = await request.form()
    try:
        email = Email.parse(str(form.get("email", "")))
    except InvalidEmail as e:
        return page(request, "message.html", 400, heading="Bad request", message=str(e))
    view = await run_in_threadpool(
        _attestation(request).unpublish, request.path_params["token"], email
    )
    notice = f"{email} is no longer published." if view.valid else None
    return page(request, "manage.html", 200 if view.valid else 404, view=view, notice=notice)


def routes() -> list[BaseRoute]:
    return [
        Route("/verify/{token}", verify_page, methods=["GET", "HEAD"]),
        Route("/verify/{token}", verify_confirm, methods=["POST"]),
        Route("/verify/{token}/resend", verify_resend, methods=["POST"]),
        Route("/manage", manage_request, methods=["GET", "POST"]),
        Route("/manage/{token}", manage_page, methods=["GET", "HEAD"]),
        Route("/manage/{token}/unpublish", manage_unpublish, methods=["POST"]),
        Mount("/static", StaticFiles(directory=_HERE / "static"), name="static"),
    ]
