"""Request bodies, read within a limit while they arrive: a body past its limit is
refused at the first chunk that crosses it (or at once, when ``Content-Length`` says so),
so no route ever buffers more than it accepts."""

from __future__ import annotations

import json
from typing import Any

from starlette.datastructures import FormData
from starlette.requests import Request

from attester.service.errors import BadRequest, PayloadTooLarge


async def read_limited(request: Request, limit: int) -> bytes:
    """The raw body; ``PayloadTooLarge`` as soon as it passes ``limit`` bytes."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"The request body is larger than the limit of {limit} bytes.")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"The request body is larger than the limit of {limit} bytes.")
        chunks.append(chunk)
    return b"".join(chunks)


async def read_body(request: Request) -> bytes:
    """The raw body of a key upload, within the configured upload limit."""
    return await read_limited(request, request.app.state.settings.max_input_bytes)


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


async def read_form(
    request: Request, limit: int, max_fields: int = 8, max_files: int = 0
) -> FormData:
    """The request's form within ``limit`` bytes: Starlette bounds form fields but not
    file parts, so the body is counted here first. Raises ``PayloadTooLarge`` or
    Starlette's ``MultiPartException`` (also for files beyond ``max_files``; a caller that
    allows files closes the form)."""
    body = await read_limited(request, limit)

    async def replay() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    buffered = Request(request.scope, replay)
    return await buffered.form(max_files=max_files, max_fields=max_fields, max_part_size=limit)
