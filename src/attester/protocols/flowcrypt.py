"""The FlowCrypt Attester API (``../shared/specs/flowcrypt-attester-api.md``): lookups.

Every answer that is not a key is the JSON error body all FlowCrypt clients understand:
``{"error": {"code": N, "message": M}, "code": N, "message": M}``.
"""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from attester.federation.relay import armored
from attester.http.body import read_body, read_json
from attester.http.state import wake_mailer
from attester.openpgp.errors import InvalidEmail, InvalidIdentifier
from attester.openpgp.types import Email, KeyID
from attester.protocols._http import origin_headers, path_term, within_answer_limit
from attester.service.attestation import Attestation
from attester.service.core import Core
from attester.service.errors import BadRequest, InvalidQuery, NotFound, ServiceError
from attester.service.query import EmailQuery, parse_query
from attester.service.submission import SubmitOutcome


def error_response(
    status: int, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(
        {"error": {"code": status, "message": message}, "code": status, "message": message},
        status_code=status,
        headers=headers,
    )


async def alive(request: Request) -> Response:
    return JSONResponse({"alive": True})


async def get_pub(request: Request) -> Response:
    core: Core = request.app.state.core
    try:
        try:
            query = parse_query(path_term(request.path_params["term"]))
        except InvalidQuery as e:
            # FlowCrypt's browser and iOS app treat any status but 2xx and 404 as a failure
            # ("retry"); a term that is no address, fingerprint or key id finds nothing.
            raise NotFound(f"No key found: {e.message}") from e
        found = await run_in_threadpool(core.lookup, query)
    except ServiceError as e:
        return error_response(e.status, e.message, e.headers)
    # One armor block per certificate: FlowCrypt's browser reads each block of an answer
    # as exactly one key (``KeyUtil.parse``: "Found 2 keys, expected one"), so here, unlike
    # HKP and VKS, a block holding two would lose both.
    found = within_answer_limit(found, core.settings.max_answer_bytes, text=False)
    body = "\n".join(c.armored_published or c.armored for c in found)
    return PlainTextResponse(body, headers={"Cache-Control": "no-cache", **origin_headers(found)})


def _email(raw: str) -> Email:
    try:
        return Email.parse(path_term(raw))
    except InvalidEmail as e:
        raise InvalidQuery(str(e)) from e


async def post_pub(request: Request) -> Response:
    """Submit a key for an address: with an OIDC id token it is published at once, without
    one a confirmation mail goes to the address. The body is always the raw armored key,
    whatever content type the client claims."""
    service: Attestation = request.app.state.attestation
    try:
        email = _email(request.path_params["term"])
        data = await read_body(request)
        if not data.strip():
            raise BadRequest("The body is empty: send the armored public key.")
        if "authorization" in request.headers:
            await service.submit.with_id_token(request.headers["authorization"], email, data)
            return PlainTextResponse("Saved")
        outcome = await run_in_threadpool(service.submit.for_address, email, data)
    except ServiceError as e:
        return error_response(e.status, e.message, e.headers)
    wake_mailer(request)
    # Whether this mail went out now or earlier in the window, the answer is the same: a
    # valid link for this key is in the inbox, and nobody learns of pending verifications.
    sent = (
        f"A confirmation email was sent to {email} for this key. Your key will be "
        "published for that address once you follow the link in it (one such email per "
        "key and address is sent per hour)."
    )
    text = {
        SubmitOutcome.PUBLISHED: f"Your public key for {email} was updated.",
        SubmitOutcome.MAIL_SENT: sent,
        SubmitOutcome.MAIL_PENDING: sent,
    }[outcome]
    return PlainTextResponse(text)


async def put_pub(request: Request) -> Response:
    """Legacy ``PUT /pub/{longid}``: a newer version of a key already stored. Nothing about
    identities changes: new user IDs are published only where the address already is."""
    service: Attestation = request.app.state.attestation
    try:
        term = path_term(request.path_params["term"])
        try:
            kid = KeyID.parse(term)
        except InvalidIdentifier as e:
            raise InvalidQuery("PUT /pub/ takes the 16-digit key id of the key") from e
        data = await read_body(request)
        await run_in_threadpool(service.submit.update_key, kid, data)
    except ServiceError as e:
        return error_response(e.status, e.message, e.headers)
    return PlainTextResponse("Saved")


async def welcome(request: Request) -> Response:
    service: Attestation = request.app.state.attestation
    try:
        data = await read_json(request, "email", "pubkey")
        email = _email(data["email"])
        sent = await service.welcome.send_proven(
            request.headers.get("authorization"), email, data["pubkey"].encode()
        )
    except ServiceError as e:
        return error_response(e.status, e.message, e.headers)
    wake_mailer(request)
    return JSONResponse({"sent": sent})


async def legacy_submit(request: Request) -> Response:
    service: Attestation = request.app.state.attestation
    try:
        data = await read_json(request, "email", "pubkey")
        email = _email(data["email"])
        outcome = await run_in_threadpool(
            service.submit.for_address, email, data["pubkey"].encode()
        )
    except ServiceError as e:
        return JSONResponse(
            {"saved": False, "attested": False, "error": e.message},
            status_code=e.status,
            headers=e.headers,
        )
    wake_mailer(request)
    return JSONResponse({"saved": True, "attested": outcome is SubmitOutcome.PUBLISHED})


async def ldap_relay(request: Request) -> Response:
    """``GET /ldap-relay?server=HOST&search=EMAIL``: the keys a company directory on the
    operator's allow-list has for the address (``federation.relay``), or 404."""
    relay = request.app.state.federation.relay
    try:
        if relay is None:
            raise NotFound("This server relays no LDAP lookups.")
        server = request.query_params.get("server", "")
        if not server.strip():
            raise BadRequest("The query parameter 'server' is missing.")
        email = _email(request.query_params.get("search", ""))
        found = await run_in_threadpool(relay.lookup, server, email)
    except ServiceError as e:
        return error_response(e.status, e.message, e.headers)
    origin = f"ldap-relay:{server.strip().lower().rstrip('.')}"
    return PlainTextResponse(
        "\n".join(armored(c) for c in found),
        headers={
            "Cache-Control": "no-cache",
            "X-Attester-Origin": ", ".join([origin] * len(found)),
        },
    )


async def lookup_email(request: Request) -> Response:
    core: Core = request.app.state.core
    try:
        data = await read_json(request, "email")
        email = _email(data["email"])
        try:
            found = await run_in_threadpool(core.lookup, EmailQuery(email))
        except ServiceError as e:
            if e.status != 404:
                raise
            found = []
    except ServiceError as e:
        return error_response(e.status, e.message, e.headers)
    pubkey = found[0].armored_published if found else None
    return JSONResponse(
        {"pubkey": pubkey, "has_cryptup": bool(found)}, headers=origin_headers(found[:1])
    )


def routes() -> list[Route]:
    return [
        Route("/pub/{term:path}", get_pub, methods=["GET", "HEAD"]),
        Route("/pub/{term:path}", post_pub, methods=["POST"]),
        Route("/pub/{term:path}", put_pub, methods=["PUT"]),
        Route("/welcome-message", welcome, methods=["POST"]),
        Route("/test/welcome", welcome, methods=["POST"]),
        Route("/initial/legacy_submit", legacy_submit, methods=["POST"]),
        Route("/lookup/email", lookup_email, methods=["POST"]),
        Route("/ldap-relay", ldap_relay, methods=["GET", "HEAD"]),
    ]
