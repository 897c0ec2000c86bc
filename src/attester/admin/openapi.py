"""The OpenAPI 3.1 description of the admin API, served at ``/admin/api/v1/openapi.json``
(``tests/admin/test_api.py`` checks that it lists exactly the routes ``api.py`` serves)."""

from __future__ import annotations

from typing import Any

from attester import __version__

_ERROR = {
    "type": "object",
    "required": ["error", "code"],
    "properties": {
        "error": {"type": "string", "description": "a sentence saying what is wrong"},
        "code": {
            "type": "string",
            "enum": [
                "bad-request",
                "token-missing",
                "token-invalid",
                "scope-missing",
                "refused",
                "not-found",
                "conflict",
                "too-large",
                "unavailable",
            ],
        },
    },
}

_USER_ID = {
    "type": "object",
    "properties": {
        "uid": {"type": "string"},
        "email": {"type": ["string", "null"]},
        "revoked": {"type": "boolean"},
        "attested_by": {"type": ["string", "null"], "enum": ["email", "oidc", "operator", None]},
        "attested_at": {"type": ["string", "null"], "format": "date-time"},
        "removed": {"type": "boolean", "description": "its address or domain is removed"},
    },
}

_KEY = {
    "type": "object",
    "properties": {
        "fingerprint": {"type": "string"},
        "algorithm": {"type": "string"},
        "bits": {"type": "integer"},
        "created": {"type": "string", "format": "date-time"},
        "expires": {"type": ["string", "null"], "format": "date-time"},
        "revoked": {"type": "boolean"},
        "removed": {"type": "boolean", "description": "a removal names the key itself"},
        "source": {"type": "string", "description": "upload, import, hkp, upstream:<name>..."},
        "first_seen": {"type": "string", "format": "date-time"},
        "updated": {"type": "string", "format": "date-time"},
        "addresses": {"type": "array", "items": {"type": "string"}},
        "attested": {"type": "array", "items": {"type": "string"}},
        "removed_addresses": {"type": "array", "items": {"type": "string"}},
        "user_ids": {"type": "array", "items": {"$ref": "#/components/schemas/UserID"}},
        "origins": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"origin": {"type": "string"}, "fetched_at": {"type": "string"}},
            },
        },
        "subkeys": {"type": "array", "items": {"type": "string"}},
    },
}

_AUDIT_ENTRY = {
    "type": "object",
    "properties": {
        "id": {"type": "integer"},
        "at": {"type": "string", "format": "date-time"},
        "actor_kind": {
            "type": "string",
            "enum": ["token", "cli", "email", "oidc", "import", "owner", "system"],
        },
        "actor": {"type": "string", "description": "token name, OS user, address, issuer+subject"},
        "client_address": {"type": ["string", "null"]},
        "action": {"type": "string"},
        "fingerprint": {"type": ["string", "null"]},
        "email": {"type": ["string", "null"]},
        "domain": {"type": ["string", "null"]},
        "reason": {"type": ["string", "null"]},
        "detail": {"type": ["string", "null"]},
    },
}

_REMOVAL = {
    "type": "object",
    "properties": {
        "kind": {"type": "string", "enum": ["fingerprint", "email", "domain"]},
        "value": {"type": "string"},
        "reason": {"type": "string"},
        "created": {"type": "string", "format": "date-time"},
        "actor_kind": {"type": "string"},
        "actor": {"type": "string"},
    },
}

_SELECTOR = {
    "type": "object",
    "description": "exactly one of fingerprint, email, domain",
    "properties": {
        "fingerprint": {"type": "string"},
        "email": {"type": "string"},
        "domain": {"type": "string"},
        "reason": {"type": "string", "description": "required: kept in the audit log"},
    },
    "required": ["reason"],
}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*statuses: int) -> dict[str, Any]:
    return {str(s): {"$ref": f"#/components/responses/E{s}"} for s in (401, 403, 503, *statuses)}


def _query(name: str, description: str, kind: str = "string") -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": {"type": kind},
    }


_FPR = {
    "name": "fpr",
    "in": "path",
    "required": True,
    "description": "fingerprint of the key or one of its subkeys",
    "schema": {"type": "string"},
}
_PAGE = [
    _query("after", "the `next` of the previous page", "integer"),
    _query("limit", "at most this many (up to admin_page_size)", "integer"),
]
_EMAIL_BODY = {
    "required": True,
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "required": ["email"],
                "properties": {"email": {"type": "string"}, "reason": {"type": "string"}},
            }
        }
    },
}


def _op(summary: str, scope: str, **extra: Any) -> dict[str, Any]:
    return {
        "summary": summary,
        "security": [{"token": [scope]}],
        "x-scope": scope,
        **extra,
    }


def paths() -> dict[str, dict[str, Any]]:
    return {
        "/keys": {
            "get": _op(
                "List keys, with filters",
                "read",
                parameters=[
                    _query("domain", "some address of the key is at this domain"),
                    _query("origin", "local, upstream, mirror, or upstream:<name> / mirror:<name>"),
                    _query("attested", "some address is attested here (true/false)", "boolean"),
                    _query("removed", "the key or one of its addresses is removed", "boolean"),
                    _query("q", "text in a user ID, or the start of the fingerprint"),
                    *_PAGE,
                ],
                responses={
                    "200": _json(
                        {
                            "type": "object",
                            "properties": {
                                "keys": {"type": "array", "items": _ref("Key")},
                                "next": {"type": ["integer", "null"]},
                            },
                        }
                    ),
                    **_errors(400),
                },
            )
        },
        "/keys/{fpr}": {
            "get": _op(
                "One key, with the removals that name it and its full audit history",
                "read",
                parameters=[_FPR],
                responses={"200": _json(_ref("KeyDetail")), **_errors(400, 404)},
            )
        },
        "/keys/{fpr}/attest": {
            "post": _op(
                "Attest an address of the key as the operator (policy and removals apply)",
                "write",
                parameters=[_FPR],
                requestBody=_EMAIL_BODY,
                responses={"200": _json(_ref("KeyDetail")), **_errors(400, 404)},
            )
        },
        "/keys/{fpr}/unattest": {
            "post": _op(
                "Withdraw an attested address from the key",
                "write",
                parameters=[_FPR],
                requestBody=_EMAIL_BODY,
                responses={"200": _json(_ref("KeyDetail")), **_errors(400, 404)},
            )
        },
        "/keys/{fpr}/resend": {
            "post": _op(
                "Mail a fresh verification link for an address of the key (no rate window)",
                "write",
                parameters=[_FPR],
                requestBody=_EMAIL_BODY,
                responses={"200": _json({"type": "object"}), **_errors(400, 404)},
            )
        },
        "/removals": {
            "get": _op(
                "Removals from distribution in force",
                "read",
                responses={
                    "200": _json(
                        {
                            "type": "object",
                            "properties": {"removals": {"type": "array", "items": _ref("Removal")}},
                        }
                    ),
                    **_errors(),
                },
            ),
            "post": _op(
                "Remove a key, an address or a domain from distribution",
                "write",
                requestBody={
                    "required": True,
                    "content": {"application/json": {"schema": _SELECTOR}},
                },
                responses={
                    "201": _json(_ref("RemovalOutcome"), "removed"),
                    "200": _json(_ref("RemovalOutcome"), "already removed: nothing changed"),
                    **_errors(400),
                },
            ),
        },
        "/removals/{kind}/{value}": {
            "delete": _op(
                "Lift a removal: what is attested is served again",
                "write",
                parameters=[
                    {
                        "name": "kind",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string", "enum": ["fingerprint", "email", "domain"]},
                    },
                    {"name": "value", "in": "path", "required": True, "schema": {"type": "string"}},
                    _query("reason", "why (kept in the audit log)"),
                ],
                responses={"200": _json(_ref("RemovalOutcome")), **_errors(400, 404)},
            )
        },
        "/audit": {
            "get": _op(
                "The audit log, oldest first; format=jsonl streams every matching entry as "
                "JSON lines",
                "read",
                parameters=[
                    _query("since", "ISO 8601 time, inclusive"),
                    _query("until", "ISO 8601 time, exclusive"),
                    _query("actor_kind", "token, cli, email, oidc, import, owner, system"),
                    _query("actor", "token name, OS user, address..."),
                    _query("action", "attest, unattest, replaced, unpublish, remove, restore, ..."),
                    _query("fingerprint", "about this key"),
                    _query("email", "about this address"),
                    _query("domain", "about this domain (domain removals)"),
                    _query("format", "jsonl: every entry, one JSON object per line"),
                    *_PAGE,
                ],
                responses={
                    "200": {
                        "description": "OK",
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "properties": {
                                        "entries": {"type": "array", "items": _ref("AuditEntry")},
                                        "next": {"type": ["integer", "null"]},
                                    },
                                }
                            },
                            "application/x-ndjson": {"schema": _ref("AuditEntry")},
                        },
                    },
                    **_errors(400),
                },
            )
        },
        "/policy": {
            "get": _op(
                "The policy in force",
                "read",
                responses={"200": _json({"type": "object"}), **_errors()},
            )
        },
        "/policy/reload": {
            "post": _op(
                "Re-read the policy from the configuration file; an invalid one is refused "
                "(400, naming the rule) and the policy in force stays",
                "policy",
                responses={"200": _json({"type": "object"}), **_errors(400)},
            )
        },
        "/stats": {
            "get": _op(
                "What is served and what is stored",
                "read",
                responses={"200": _json({"type": "object"}), **_errors()},
            )
        },
        "/tokens": {
            "get": _op(
                "Access tokens by name and scopes (made and revoked with the CLI only)",
                "read",
                responses={"200": _json({"type": "object"}), **_errors()},
            )
        },
    }


def schema(public_url: str) -> dict[str, Any]:
    responses = {
        f"E{status}": _json(_ref("Error"), text)
        for status, text in (
            (400, "the request is malformed"),
            (401, "no token, or not a valid one"),
            (403, "the token lacks the scope, or the policy or a removal refuses"),
            (404, "not found"),
            (503, "the database cannot be reached"),
        )
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Attester admin API",
            "version": __version__,
            "description": "Keys, attestations, removals from distribution, the policy and "
            "the audit log of an Attester server. Tokens: `attester admin token create NAME "
            "--scope read,write,policy`.",
        },
        "servers": [{"url": f"{public_url}/admin/api/v1"}],
        "paths": {
            "/openapi.json": {
                "get": {
                    "summary": "This document",
                    "security": [],
                    "responses": {"200": {"description": "OK"}},
                }
            },
            **paths(),
        },
        "components": {
            "securitySchemes": {"token": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": _ERROR,
                "UserID": _USER_ID,
                "Key": _KEY,
                "KeyDetail": {
                    "allOf": [
                        _ref("Key"),
                        {
                            "type": "object",
                            "properties": {
                                "removals": {"type": "array", "items": _ref("Removal")},
                                "history": {"type": "array", "items": _ref("AuditEntry")},
                            },
                        },
                    ]
                },
                "Removal": _REMOVAL,
                "RemovalOutcome": {
                    "type": "object",
                    "properties": {
                        "removal": _ref("Removal"),
                        "certificates": {"type": "integer"},
                        "changed": {"type": "boolean"},
                    },
                },
                "AuditEntry": _AUDIT_ENTRY,
            },
            "responses": responses,
        },
    }
