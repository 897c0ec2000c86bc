"""The pages that links in mails open, and the form that mails a management link.

Verification (``/verify/{token}``): GET only shows what the link would do, POST publishes.
Programs that scan links in mail fetch with GET, so they publish nothing; a small script
submits the form for people (with a button when scripts are off).

Management (``/manage/{token}``): lists the key's published addresses, each with an
"unpublish" button. Tokens are single use; every page carries the next one.

The token in these URLs is the capability, so their forms carry no CSRF form token; see
``attester.web.csrf`` for why that is enough.
"""

from __future__ import annotations

import json

from starlette.concurrency import run_in_threadpool
from starlette.formparsers import MultiPartException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response

from attester.http.body import read_form, read_limited
from attester.http.render import error_page, page
from attester.http.state import attestation, wake_mailer
from attester.openpgp.errors import InvalidEmail
from attester.openpgp.types import Email
from attester.service.errors import PayloadTooLarge
from attester.web._request import (
    form_token,
    form_token_valid,
    refuse_cross_site,
    sentence,
)

_SMALL_FORM = 8 * 1024


async def verify_page(request: Request) -> Response:
    token = request.path_params["token"]
    view = await run_in_threadpool(attestation(request).verify.inspect, token)
    status = 404 if view.state.value == "invalid" else 200
    return page(request, "verify.html", status, view=view, token=token)


async def verify_confirm(request: Request) -> Response:
    if (refused := refuse_cross_site(request)) is not None:
        return refused
    token = request.path_params["token"]
    view = await run_in_threadpool(attestation(request).verify.confirm, token)
    wake_mailer(request)
    status = {"invalid": 404, "not_on_key": 409}.get(view.state.value, 200)
    return page(request, "verified.html", status, view=view, token=token)


async def verify_resend(request: Request) -> Response:
    if (refused := refuse_cross_site(request)) is not None:
        return refused
    states = await run_in_threadpool(
        attestation(request).verify.resend, request.path_params["token"]
    )
    wake_mailer(request)
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


# ---- management

_MAILED = (
    "If a key is published for this address, a management link was mailed to it. "
    "It is valid for a limited time."
)


async def _manage_form(
    request: Request, status: int = 200, email: str = "", error: str | None = None
) -> HTMLResponse:
    return page(
        request,
        "manage_request.html",
        status,
        nav="manage",
        csrf=await form_token(request, "manage"),
        email=email,
        error=error,
    )


async def manage_form(request: Request) -> Response:
    return await _manage_form(request)


async def _manage_json(request: Request) -> Response:
    """The scripted form of the request (see the About page). It needs no CSRF token: a
    page elsewhere can send it only after a CORS preflight, the API is open to any origin
    by design, and the answer is the same for every address while the mail goes to the
    address's owner, whoever asked."""
    try:
        # Read within the form's small limit: an unbounded body here was buffered whole.
        data = json.loads(await read_limited(request, _SMALL_FORM))
        raw = data.get("email", "") if isinstance(data, dict) else ""
        email = Email.parse(str(raw))
    except PayloadTooLarge as e:
        return JSONResponse({"error": e.message}, status_code=413)
    except (InvalidEmail, ValueError) as e:
        msg = str(e) if isinstance(e, InvalidEmail) else "The body must be JSON with an email."
        return JSONResponse({"error": msg}, status_code=400)
    await run_in_threadpool(attestation(request).manage.request, email)
    wake_mailer(request)
    return JSONResponse({"status": "ok", "message": _MAILED})


async def manage_request(request: Request) -> Response:
    if "application/json" in request.headers.get("content-type", ""):
        return await _manage_json(request)
    if (refused := refuse_cross_site(request)) is not None:
        return refused
    try:
        form = await read_form(request, _SMALL_FORM)
    except (PayloadTooLarge, MultiPartException):
        return await _manage_form(request, 400, error="The form could not be read.")
    raw = str(form.get("email", "")).strip()[:300]
    if not await form_token_valid(request, "manage", form):
        return await _manage_form(
            request,
            403,
            email=raw,
            error="This form was open too long or did not come from this page; please send "
            "it again. (Scripts can POST JSON instead, see the About page.)",
        )
    try:
        email = Email.parse(raw)
    except InvalidEmail as e:
        return await _manage_form(request, 400, email=raw, error=sentence(str(e)))
    await run_in_threadpool(attestation(request).manage.request, email)
    wake_mailer(request)
    return page(request, "message.html", nav="manage", heading="Check your inbox", message=_MAILED)


async def manage_page(request: Request) -> Response:
    view = await run_in_threadpool(attestation(request).manage.view, request.path_params["token"])
    return page(request, "manage.html", 200 if view.valid else 404, view=view, notice=None)


async def manage_unpublish(request: Request) -> Response:
    if (refused := refuse_cross_site(request)) is not None:
        return refused
    try:
        form = await read_form(request, _SMALL_FORM)
        email = Email.parse(str(form.get("email", "")))
    except (PayloadTooLarge, MultiPartException):
        return error_page(request, 400, "The form could not be read.")
    except InvalidEmail as e:
        return page(request, "message.html", 400, heading="Bad request", message=str(e))
    view = await run_in_threadpool(
        attestation(request).manage.unpublish, request.path_params["token"], email
    )
    notice = f"{email} is no longer published." if view.valid else None
    return page(request, "manage.html", 200 if view.valid else 404, view=view, notice=notice)
