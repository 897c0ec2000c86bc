"""The admin HTTP API under ``/admin/api/v1`` (docs/enterprise.md; the schema is served at
``/admin/api/v1/openapi.json``, ``openapi.py``).

Every route but the schema needs ``Authorization: Bearer <access token>`` with the scope
it names (``read``, ``write``, ``policy``). Answers are JSON; errors are
``{"error": sentence, "code": stable-code}`` with the status: 400 ``bad-request``, 401
``token-missing`` / ``token-invalid``, 403 ``scope-missing`` / ``refused``, 404
``not-found``, 409 ``conflict``, 503 ``unavailable``. Every change is audited under the
token's name and the client's address.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from attester.admin import operations as ops
from attester.admin.openapi import schema
from attester.http.body import read_limited
from attester.service.access import Scope, looks_like_token
from attester.service.errors import ServiceError
from attester.service.operator import Administration
from attester.store.audit import Actor, ActorKind
from attester.store.errors import DatabaseUnavailable

BASE = "/admin/api/v1"
_BODY_LIMIT = 64 * 1024

_CODES = {
    400: "bad-request",
    403: "refused",
    404: "not-found",
    409: "conflict",
    413: "too-large",
    503: "unavailable",
}


class _Refused(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def _error(status: int, code: str, message: str) -> JSONResponse:
    headers = {"WWW-Authenticate": 'Bearer realm="attester-admin"'} if status == 401 else None
    return JSONResponse({"error": message, "code": code}, status_code=status, headers=headers)


def _admin(request: Request) -> Administration:
    found: Administration = request.app.state.attestation.admin
    return found


async def _actor(request: Request, scope: Scope) -> Actor:
    """The token's holder, when the token has ``scope``."""
    auth = request.headers.get("authorization", "")
    kind, _, token = auth.partition(" ")
    token = token.strip()
    if kind.lower() != "bearer" or not token:
        raise _Refused(401, "token-missing", "Send an admin token: Authorization: Bearer <token>.")
    found = (
        await run_in_threadpool(_admin(request).tokens.check, token)
        if looks_like_token(token)
        else None
    )
    if found is None:
        raise _Refused(401, "token-invalid", "This token is not valid (unknown or revoked).")
    if scope.value not in found.scopes:
        raise _Refused(
            403, "scope-missing", f"The token {found.name!r} lacks the scope {scope.value!r}."
        )
    return Actor(ActorKind.TOKEN, found.name, request.client.host if request.client else None)


async def _json_body(request: Request) -> dict[str, Any]:
    body = await read_limited(request, _BODY_LIMIT)
    if not body.strip():
        return {}
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise _Refused(400, "bad-request", "The body is not valid JSON.") from e
    if not isinstance(data, dict):
        raise _Refused(400, "bad-request", "The body must be a JSON object.")
    return data


def _text(data: dict[str, Any], name: str) -> str | None:
    value = data.get(name)
    if value is not None and not isinstance(value, str):
        raise _Refused(400, "bad-request", f"{name} is a string.")
    return value


Handler = Callable[[Request], Awaitable[Response]]


def _endpoint(
    scope: Scope, work: Callable[[Request, Actor], Awaitable[Any]], status: int = 200
) -> Handler:
    """A route: check the token, run ``work``, answer its result as JSON (or the error)."""

    async def endpoint(request: Request) -> Response:
        try:
            actor = await _actor(request, scope)
            result = await work(request, actor)
        except _Refused as e:
            return _error(e.status, e.code, e.message)
        except ServiceError as e:
            return _error(e.status, _CODES.get(e.status, "error"), e.message)
        except DatabaseUnavailable as e:
            return _error(503, "unavailable", str(e))
        if isinstance(result, Response):
            return result
        return JSONResponse(result, status_code=status)

    return endpoint


def _params(request: Request, names: tuple[str, ...]) -> dict[str, str | None]:
    q = request.query_params
    return {n: q.get(n) for n in (*names, "after", "limit")}


async def _keys(request: Request, actor: Actor) -> Any:
    return await run_in_threadpool(
        ops.list_keys, _admin(request), _params(request, ops.KEY_FILTERS)
    )


async def _key(request: Request, actor: Actor) -> Any:
    return await run_in_threadpool(ops.show_key, _admin(request), request.path_params["fpr"])


def _key_change(op: Callable[..., dict[str, Any]]) -> Callable[[Request, Actor], Awaitable[Any]]:
    async def work(request: Request, actor: Actor) -> Any:
        data = await _json_body(request)
        address = _text(data, "email")
        if not address:
            raise _Refused(400, "bad-request", "The JSON field 'email' is missing.")
        args: list[Any] = [_admin(request), request.path_params["fpr"], address, actor]
        if op is not ops.resend:
            args.append(_text(data, "reason"))
        return await run_in_threadpool(op, *args)

    return work


async def _removals(request: Request, actor: Actor) -> Any:
    return await run_in_threadpool(ops.removals, _admin(request))


async def _remove(request: Request, actor: Actor) -> Any:
    data = await _json_body(request)
    outcome = await run_in_threadpool(
        ops.remove, _admin(request), data, _text(data, "reason"), actor
    )
    return JSONResponse(outcome, status_code=201 if outcome["changed"] else 200)


async def _restore(request: Request, actor: Actor) -> Any:
    kind = request.path_params["kind"]
    if kind not in ("fingerprint", "email", "domain"):
        raise _Refused(404, "not-found", "Removals are of a fingerprint, an email or a domain.")
    selector = {kind: request.path_params["value"]}
    reason = request.query_params.get("reason")
    return await run_in_threadpool(ops.restore, _admin(request), selector, actor, reason)


async def _audit(request: Request, actor: Actor) -> Any:
    params = _params(request, ops.AUDIT_FILTERS)
    if request.query_params.get("format") == "jsonl":
        admin = _admin(request)
        lines = await run_in_threadpool(ops.audit_lines, admin, params)  # parses the filter

        def stream() -> Iterator[bytes]:
            for entry in lines:
                yield json.dumps(entry, sort_keys=True).encode() + b"\n"

        return StreamingResponse(stream(), media_type="application/x-ndjson")
    return await run_in_threadpool(ops.audit, _admin(request), params)


async def _policy(request: Request, actor: Actor) -> Any:
    return ops.policy(_admin(request))


async def _reload(request: Request, actor: Actor) -> Any:
    return await run_in_threadpool(ops.reload_policy, _admin(request), actor)


async def _stats(request: Request, actor: Actor) -> Any:
    return await run_in_threadpool(ops.stats, _admin(request))


async def _tokens(request: Request, actor: Actor) -> Any:
    return await run_in_threadpool(ops.tokens, _admin(request))


async def openapi(request: Request) -> Response:
    return JSONResponse(schema(request.app.state.settings.public_url))


def routes() -> list[Route]:
    read, write = Scope.READ, Scope.WRITE
    return [
        Route(f"{BASE}/openapi.json", openapi, methods=["GET"]),
        Route(f"{BASE}/keys", _endpoint(read, _keys), methods=["GET"]),
        Route(f"{BASE}/keys/{{fpr}}", _endpoint(read, _key), methods=["GET"]),
        Route(
            f"{BASE}/keys/{{fpr}}/attest",
            _endpoint(write, _key_change(ops.attest)),
            methods=["POST"],
        ),
        Route(
            f"{BASE}/keys/{{fpr}}/unattest",
            _endpoint(write, _key_change(ops.unattest)),
            methods=["POST"],
        ),
        Route(
            f"{BASE}/keys/{{fpr}}/resend",
            _endpoint(write, _key_change(ops.resend)),
            methods=["POST"],
        ),
        Route(f"{BASE}/removals", _endpoint(read, _removals), methods=["GET"]),
        Route(f"{BASE}/removals", _endpoint(write, _remove), methods=["POST"]),
        Route(
            f"{BASE}/removals/{{kind}}/{{value:path}}",
            _endpoint(write, _restore),
            methods=["DELETE"],
        ),
        Route(f"{BASE}/audit", _endpoint(read, _audit), methods=["GET"]),
        Route(f"{BASE}/policy", _endpoint(read, _policy), methods=["GET"]),
        Route(f"{BASE}/policy/reload", _endpoint(Scope.POLICY, _reload), methods=["POST"]),
        Route(f"{BASE}/stats", _endpoint(read, _stats), methods=["GET"]),
        Route(f"{BASE}/tokens", _endpoint(read, _tokens), methods=["GET"]),
    ]
