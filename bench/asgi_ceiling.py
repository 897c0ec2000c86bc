"""Minimal apps for the serving-stack ceiling (``./bench/run`` section "Serving stack").

``app``: a raw ASGI app answering every request with the same 4 KiB body (about the size
of an armored key Attester serves), so what is measured is the server (uvicorn with
httptools and uvloop, or Granian) and nothing else. ``rsgi_app``: the same for Granian's
native RSGI interface. ``starlette_app``: the same body from one Starlette route behind
the CORS middleware Attester uses, to show what the framework itself costs.
"""

from __future__ import annotations

from typing import Any

_HEAD = b"-----BEGIN PGP PUBLIC KEY BLOCK-----\n\n"
_TAIL = b"\n-----END PGP PUBLIC KEY BLOCK-----\n"
BODY = _HEAD + b"A" * (4096 - len(_HEAD) - len(_TAIL)) + _TAIL
_HEADERS = [
    (b"content-type", b"application/pgp-keys"),
    (b"content-length", str(len(BODY)).encode()),
    (b"access-control-allow-origin", b"*"),
]


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    await send({"type": "http.response.start", "status": 200, "headers": _HEADERS})
    await send({"type": "http.response.body", "body": BODY})


class _RSGI:
    async def __rsgi__(self, scope: Any, protocol: Any) -> None:
        protocol.response_bytes(
            200,
            [("content-type", "application/pgp-keys"), ("access-control-allow-origin", "*")],
            BODY,
        )


rsgi_app = _RSGI()


def _starlette() -> Any:
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.middleware.cors import CORSMiddleware
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    async def key(request: Request) -> Response:
        return Response(BODY, media_type="application/pgp-keys")

    return Starlette(
        routes=[Route("/{path:path}", key)],
        middleware=[Middleware(CORSMiddleware, allow_origins=["*"])],
    )


def __getattr__(name: str) -> Any:
    # Built on first use so Granian's venv, which has no Starlette, can import ``app``.
    if name == "starlette_app":
        return _starlette()
    raise AttributeError(name)
