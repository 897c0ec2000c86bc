"""Upload: paste or pick a file, see every address of the key with its state, and send a
verification mail per address. The same ``Attestation.submit`` and
``request_verify_with_token`` the VKS API calls; the upload token travels in the page."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from attester.http.body import read_form
from attester.http.render import error_page, page
from attester.http.state import attestation, core, wake_mailer
from attester.openpgp.errors import InvalidEmail, SecretKeyMaterial
from attester.openpgp.types import Email, Fingerprint
from attester.service.errors import BadRequest, Gone, PayloadTooLarge
from attester.service.query import FingerprintQuery
from attester.service.verification import AddressState
from attester.web._request import (
    duration,
    form_token,
    form_token_valid,
    refuse_cross_site,
    sentence,
)
from attester.web.search import key_views

_FORM_OVERHEAD = 64 * 1024  # multipart boundaries and the small fields

_STATES = {
    AddressState.PUBLISHED: ("Published", "Anyone can find this key by the address."),
    AddressState.PENDING: (
        "Verification mail sent",
        "Open the link in the mail to publish the address.",
    ),
    AddressState.UNPUBLISHED: ("Not published", "Verify the address to publish it."),
    AddressState.REVOKED: ("Revoked", "This user ID is revoked and will not be published."),
}


@dataclass(frozen=True)
class AddressView:
    email: Email
    state: str  # the AddressState value, for the template and CSS
    label: str
    explanation: str


async def _form_page(
    request: Request,
    status: int = 200,
    keytext: str = "",
    error: str | None = None,
    secret: bool = False,
) -> HTMLResponse:
    return page(
        request,
        "upload.html",
        status,
        nav="upload",
        csrf=await form_token(request, "upload"),
        keytext=keytext,
        error=error,
        secret=secret,
    )


async def upload_form(request: Request) -> Response:
    return await _form_page(request)


async def upload_submit(request: Request) -> Response:
    if (refused := refuse_cross_site(request)) is not None:
        return refused
    limit = core(request).settings.max_input_bytes
    try:
        # A pasted key and a file may both come; each is bounded by the service again.
        form = await read_form(request, 2 * limit + _FORM_OVERHEAD, max_fields=4, max_files=1)
    except PayloadTooLarge:
        return await _form_page(
            request, 413, error=f"The upload is larger than the limit of {limit} bytes."
        )
    except MultiPartException as e:
        return await _form_page(request, 400, error=sentence(str(e)))
    try:
        raw = form.get("keytext")
        keytext = raw if isinstance(raw, str) else ""
        if not await form_token_valid(request, "upload", form):
            return await _form_page(
                request,
                403,
                keytext=keytext if len(keytext) <= limit else "",
                error="This form was open too long or did not come from this page. "
                "Nothing was stored; please send it again.",
            )
        upload = form.get("keyfile")
        data = b""
        if isinstance(upload, UploadFile) and upload.filename:
            data = await upload.read()
        if not data.strip():
            data = keytext.encode("utf-8", "replace")
    finally:
        await form.close()
    if not data.strip():
        return await _form_page(
            request, 400, error="Paste your public key or choose a file that holds it."
        )
    try:
        submission = await run_in_threadpool(attestation(request).submit.submit, data, "web")
    except PayloadTooLarge as e:
        return await _form_page(request, 413, error=sentence(e.message))
    except BadRequest as e:
        if isinstance(e.__cause__, SecretKeyMaterial):
            # Explained at length on the page; the key is never echoed back into it.
            return await _form_page(request, 400, secret=True)
        return await _form_page(
            request,
            400,
            keytext=keytext if len(keytext) <= limit else "",
            error=f"{sentence(e.message)} Nothing was stored.",
        )
    return await _result_page(
        request, submission.fingerprint, submission.addresses, submission.upload_token
    )


async def _result_page(
    request: Request,
    fpr: Fingerprint,
    states: dict[Email, AddressState],
    token: str,
    status: int = 200,
    **context: Any,
) -> HTMLResponse:
    found = await run_in_threadpool(core(request).lookup, FingerprintQuery(fpr))
    [key] = await run_in_threadpool(key_views, request, found, None)
    addresses = [
        AddressView(email, state.value, *_STATES[state])
        for email, state in sorted(states.items(), key=lambda item: item[0].address)
    ]
    context.setdefault("notice", None)
    context.setdefault("error", None)
    return page(
        request,
        "upload_result.html",
        status,
        nav="upload",
        key=key,
        addresses=addresses,
        token=token,
        csrf=await form_token(request, "upload-verify"),
        **context,
    )


async def upload_verify(request: Request) -> Response:
    """One address's "send verification email" button on the upload result."""
    if (refused := refuse_cross_site(request)) is not None:
        return refused
    try:
        form = await read_form(request, 8 * 1024)
    except (PayloadTooLarge, MultiPartException):
        return error_page(request, 400, "The form could not be read.")
    token = str(form.get("token", ""))
    service = attestation(request)
    try:
        if not await form_token_valid(request, "upload-verify", form):
            fpr, states = await run_in_threadpool(service.verify.request_with_token, token, [])
            return await _result_page(
                request,
                fpr,
                states,
                token,
                403,
                error="This page was open too long or the button did not come from it. "
                "Nothing was sent; please press the button again.",
            )
        try:
            email = Email.parse(str(form.get("email", "")))
        except InvalidEmail as e:
            return error_page(request, 400, sentence(str(e)))
        fpr, states = await run_in_threadpool(service.verify.request_with_token, token, [email])
    except Gone:
        return page(
            request,
            "message.html",
            410,
            nav="upload",
            heading="This upload has expired",
            message="Verification mails can be asked for during a limited time after an "
            "upload. Upload your key again to continue.",
            link=("Upload your key", "/upload"),
        )
    wake_mailer(request)
    if email not in states:
        return await _result_page(
            request, fpr, states, token, 400, error=f"{email} is not an address of this key."
        )
    if states[email] is AddressState.PUBLISHED:
        notice = f"{email} is already published."
    else:
        notice = f"Check the inbox of {email}: a verification mail is on its way"
        if window := core(request).settings.mail_rate_window_seconds:
            notice += f" (an address gets at most one in {duration(window)})"
        notice += ". Open the link in it to publish the address."
    return await _result_page(request, fpr, states, token, notice=notice)
