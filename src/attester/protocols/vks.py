"""The VKS API of keys.openpgp.org (``../shared/specs/vks-api.md``): lookups, upload and
verification requests, answered the way Hagrid answers them.

Lookups answer armored keys, and errors as plain text (``malformed fingerprint``,
``No key found for {query}``). Upload and request-verify answer JSON, and every error
there is ``{"error": message}`` with status 400 (413 for a body over the limit), because
that is the one error shape VKS clients read.

Where Hagrid is strict and strictness only breaks clients, this adapter is lenient:
fingerprints and key ids may be lowercase and carry a ``0x`` prefix, and addresses may be
percent-encoded twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from attester.http.body import read_json
from attester.http.state import wake_mailer
from attester.openpgp.errors import InvalidEmail
from attester.openpgp.types import Email, Fingerprint
from attester.protocols._http import one_block, origin_headers, path_term, within_answer_limit
from attester.service.attestation import Attestation
from attester.service.core import Core
from attester.service.errors import BadRequest, NotFound, ServiceError
from attester.service.query import EmailQuery, FingerprintQuery, KeyIDQuery, Query, parse_query
from attester.service.submission import Submission
from attester.service.verification import AddressState
from attester.store.views import StoredCert

_MALFORMED = {
    FingerprintQuery: "malformed fingerprint",
    KeyIDQuery: "malformed key id",
    EmailQuery: "malformed e-mail address",
}


def _public_headers(request: Request) -> dict[str, str]:
    """Lookups are public data, and browser clients (and WKD/VKS checkers that send no
    ``Origin``) must be able to read them, so ``*`` is sent on every answer while the
    operator allows every origin; a narrowed ``cors_origins`` is left to the middleware."""
    if "*" in request.app.state.settings.cors_origins:
        return {"Access-Control-Allow-Origin": "*"}
    return {}


def _text(request: Request, status: int, message: str) -> PlainTextResponse:
    return PlainTextResponse(message, status_code=status, headers=_public_headers(request))


def _query(kind: type[Query], raw: str) -> Query:
    """The path term as a query of the kind the route names, through the one parser every
    protocol shares; anything else (a key id on ``by-fingerprint``…) is malformed."""
    try:
        query = parse_query(path_term(raw))
    except BadRequest as e:
        raise BadRequest(_MALFORMED[kind]) from e
    if not isinstance(query, kind):
        raise BadRequest(_MALFORMED[kind])
    return query


def _what(query: Query) -> str:
    match query:
        case FingerprintQuery(fpr):
            return fpr.hex
        case KeyIDQuery(kid):
            return kid.hex
        case EmailQuery(email):
            return email.address
    return ""  # pragma: no cover - the routes build only the three kinds above


async def _lookup(request: Request, kind: type[Query]) -> Response:
    core: Core = request.app.state.core
    try:
        query = _query(kind, request.path_params["term"])
    except BadRequest as e:
        return _text(request, 400, e.message)
    try:
        found = await run_in_threadpool(core.lookup, query)
    except NotFound:
        return _text(request, 404, f"No key found for {_what(query)}")
    return _armored(request, found, by_email=kind is EmailQuery)


def _armored(request: Request, found: list[StoredCert], *, by_email: bool) -> Response:
    # By email only attested user IDs may be served (the store finds only certificates that
    # have one); by fingerprint or key id the certificate is served with its attested user
    # IDs, or identity-free. Several certificates (a subkey bound to several keys, or an
    # operator who allows several keys per address) go out in one armor block: clients on
    # OpenPGP.js read only the first block of an answer.
    limit = request.app.state.settings.max_answer_bytes
    found = within_answer_limit(found, limit, text=False)
    blocks = [(c.armored_published or "") if by_email else c.armored for c in found]
    headers = {
        **_public_headers(request),
        "Content-Disposition": f'attachment; filename="{found[0].fingerprint.hex}.asc"',
        "Cache-Control": "no-cache",
        **origin_headers(found),
    }
    return one_block(blocks, "application/pgp-keys", headers)


async def by_fingerprint(request: Request) -> Response:
    return await _lookup(request, FingerprintQuery)


async def by_keyid(request: Request) -> Response:
    return await _lookup(request, KeyIDQuery)


async def by_email(request: Request) -> Response:
    return await _lookup(request, EmailQuery)


# ---- upload and verification


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def _vks_status(e: ServiceError) -> int:
    """Hagrid answers every refusal of upload and request-verify with 400 (an expired upload
    token too, which the service calls ``Gone``); only a body over the limit (413) and
    faults of our own (5xx) keep their status."""
    if e.status == 413 or e.status >= 500:
        return e.status
    return 400


def _is_json(request: Request) -> bool:
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    return media == "application/json"


def _not_json(shape: str) -> JSONResponse:
    return _error(400, f"expected application/json data: {shape}")


def _status_body(
    token: str, fingerprint: Fingerprint, states: dict[Email, AddressState]
) -> dict[str, Any]:
    return {
        "token": token,
        "key_fpr": fingerprint.hex,
        "status": {e.address: s.value for e, s in sorted(states.items())},
    }


async def upload(request: Request) -> Response:
    """One key: merged, an upload token issued, each address's state reported; nothing is
    mailed until the client asks (request-verify). A keyring: every key merged, answered
    with the list of their fingerprints (as Hagrid does)."""
    service: Attestation = request.app.state.attestation
    if not _is_json(request):
        return _not_json('{"keytext": "<the armored public key>"}')
    try:
        data = await read_json(request, "keytext")
        result = await run_in_threadpool(service.submit.upload, data["keytext"].encode("utf-8"))
    except ServiceError as e:
        return _error(_vks_status(e), e.message, e.headers)
    if isinstance(result, Submission):
        return JSONResponse(_status_body(result.upload_token, result.fingerprint, result.addresses))
    return JSONResponse([f.hex for f in result])


def _addresses(value: object) -> list[Email]:
    """The addresses to verify. Ones that do not parse are skipped, like ones the key does
    not carry: the answer's ``status`` shows what was done, which is what clients read."""
    if not isinstance(value, Sequence) or isinstance(value, str):
        raise BadRequest('The JSON field "addresses" must be a list of e-mail addresses.')
    emails: list[Email] = []
    for item in value:
        if not isinstance(item, str):
            raise BadRequest('The JSON field "addresses" must be a list of e-mail addresses.')
        try:
            emails.append(Email.parse(item))
        except InvalidEmail:
            continue
    return emails


async def request_verify(request: Request) -> Response:
    """Mail a verification link to each listed address of the uploaded key that is not yet
    published. ``locale`` is accepted and not used: mails are written in the server's one
    language."""
    service: Attestation = request.app.state.attestation
    if not _is_json(request):
        return _not_json('{"token": "<from the upload>", "addresses": ["<address>", ...]}')
    try:
        data = await read_json(request, "token")
        emails = _addresses(data.get("addresses"))
        token = data["token"].strip()
        fpr, states = await run_in_threadpool(service.verify.request_with_token, token, emails)
    except ServiceError as e:
        return _error(_vks_status(e), e.message, e.headers)
    wake_mailer(request)
    return JSONResponse(_status_body(token, fpr, states))


def routes() -> list[Route]:
    return [
        Route("/vks/v1/by-fingerprint/{term:path}", by_fingerprint, methods=["GET", "HEAD"]),
        Route("/vks/v1/by-keyid/{term:path}", by_keyid, methods=["GET", "HEAD"]),
        Route("/vks/v1/by-email/{term:path}", by_email, methods=["GET", "HEAD"]),
        Route("/vks/v1/upload", upload, methods=["POST"]),
        Route("/vks/v1/request-verify", request_verify, methods=["POST"]),
    ]
