"""Helpers every adapter shares: bounded body reading and JSON bodies."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any
from urllib.parse import unquote

from starlette.requests import Request

from attester.service.errors import BadRequest, PayloadTooLarge
from attester.store.keys import StoredCert


async def read_body(request: Request) -> bytes:
    """The raw body, refused as soon as it passes the configured upload limit (the whole
    body is never buffered first)."""
    limit: int = request.app.state.settings.max_input_bytes
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"The upload is larger than the limit of {limit} bytes.")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"The upload is larger than the limit of {limit} bytes.")
        chunks.append(chunk)
    return b"".join(chunks)


async def read_json(request: Request, *fields: str) -> dict[str, Any]:
    """A JSON object body with these string fields present."""
    body = await read_body(request)
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise BadRequest("The body is not valid JSON.") from e
    if not isinstance(data, dict):
        raise BadRequest("The body must be a JSON object.")
    for f in fields:
        if not isinstance(data.get(f), str) or not data[f].strip():
            raise BadRequest(f"The JSON field {f!r} is missing or not a string.")
    return data


def origin_headers(found: Sequence[StoredCert]) -> dict[str, str]:
    """``X-Attester-Origin``: whose word the identities of each served certificate rest
    on, in the order served: ``local`` (attested here), or ``upstream:<name>`` /
    ``mirror:<name>`` with ``; fetched=<UTC time>`` (docs/federation.md)."""
    entries = []
    for c in found:
        entry = c.origin.label
        if c.origin.fetched_at is not None:
            entry += f"; fetched={c.origin.fetched_at.strftime('%Y-%m-%dT%H:%M:%SZ')}"
        entries.append(entry)
    return {"X-Attester-Origin": ", ".join(entries)} if entries else {}


def path_term(raw: str) -> str:
    """The search term of ``/pub/{term}``: Starlette has percent-decoded the path once; a
    client that encoded twice (``%2540``) or whose proxy re-encoded still means ``@``.
    ``unquote`` never turns ``+`` into a space, which FlowCrypt's contract forbids."""
    term = raw.strip()
    if "%" in term:
        term = unquote(term).strip()
    return term


def wake_mailer(request: Request) -> None:
    """Queued mail goes out now rather than at the worker's next poll."""
    worker = getattr(request.app.state, "mail_worker", None)
    if worker is not None:
        worker.wake()
