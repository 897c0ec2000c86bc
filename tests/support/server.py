"""The real application under test, reached in one of two ways:

- ``AppServer``: in process. The test's ``httpx.Client`` hands each request straight to
  the ASGI app (``httpx.ASGITransport``) on the shared loop (``tests.support.loop``), where
  the app's lifespan runs as it would under uvicorn. No socket and no server start: the
  way to test what the app answers.
- ``LiveServer``: the app served by uvicorn on 127.0.0.1, for tests whose point is a real
  client on a real socket (gpg, sq, chromium, a peer another Attester calls).

Both name themselves ``http://127.0.0.1:PORT`` (links in mails, the Host header), so a
test reads the same either way. An in-process server holds its port bound but not
listening: nothing else takes it, and a stray real connection is refused at once.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass

import httpx
import uvicorn
from starlette.applications import Starlette

from attester.app import create_app
from attester.config import Settings
from tests.support import loop

# The client address the app sees for in-process requests: loopback, as over a socket
# (HKP's sync peers and the form tokens depend on it).
CLIENT = ("127.0.0.1", 50000)


@dataclass
class Server:
    app: Starlette
    base_url: str  # including the path prefix
    client: httpx.Client
    settings: Settings

    @property
    def origin(self) -> str:
        """scheme://host:port, for following absolute paths found in pages."""
        return "/".join(self.base_url.split("/")[:3])


def reserve_port(host: str = "127.0.0.1") -> socket.socket:
    """A socket bound to a free port of ``host`` (a loopback address), not listening."""
    sock = socket.socket()
    sock.bind((host, 0))
    return sock


def named(settings: Settings, port: int, host: str = "127.0.0.1") -> Settings:
    """``settings`` with ``base_url`` naming this port, unless one is configured."""
    if settings.base_url:
        return settings
    return settings.model_copy(update={"base_url": f"http://{host}:{port}{settings.path_prefix}"})


class InProcessTransport(httpx.BaseTransport):
    """A synchronous transport into an ASGI app running on the shared loop. Like uvicorn,
    an exception in the app is the 500 response the app sent, not an error in the test."""

    def __init__(self, app: Starlette) -> None:
        self._asgi = httpx.ASGITransport(app, raise_app_exceptions=False, client=CLIENT)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        request.read()  # the body as bytes, which the async transport can stream too
        return loop.call(self._handle, request)

    async def _handle(self, request: httpx.Request) -> httpx.Response:
        response = await self._asgi.handle_async_request(request)
        body = await response.aread()
        return httpx.Response(
            response.status_code,
            headers=response.headers,
            stream=httpx.ByteStream(body),
            extensions=response.extensions,
        )


def in_process_client(app: Starlette, base_url: str) -> httpx.Client:
    return httpx.Client(
        transport=InProcessTransport(app), base_url=base_url, timeout=30, follow_redirects=False
    )


@dataclass
class AppServer(Server):
    @classmethod
    @contextmanager
    def start(cls, settings: Settings, **app_kwargs: object) -> Iterator[AppServer]:
        """A fresh app with these settings, in process, its lifespan running."""
        with reserve_port() as sock:
            settings = named(settings, sock.getsockname()[1])
            app = create_app(settings, **app_kwargs)  # type: ignore[arg-type]
            base = f"http://127.0.0.1:{sock.getsockname()[1]}{settings.path_prefix}"
            with loop.lifespan(app), in_process_client(app, base) as client:
                yield cls(app, base, client, settings)


@contextmanager
def uvicorn_serving(app: Starlette, sock: socket.socket, *, lifespan: bool) -> Iterator[None]:
    """uvicorn serving ``app`` on ``sock`` from the shared loop until the block ends; with
    ``lifespan=False`` it serves an app whose lifespan already runs."""
    config = uvicorn.Config(app, log_level="warning", lifespan="on" if lifespan else "off")
    server = uvicorn.Server(config)
    done: Future[None] = loop.portal().start_task_soon(server.serve, [sock])
    deadline = time.monotonic() + 20
    while not server.started:
        if done.done():
            done.result()  # raises what stopped it
            raise RuntimeError("test server stopped while starting")
        if time.monotonic() > deadline:
            raise RuntimeError("test server did not start")
        time.sleep(0.005)
    try:
        yield
    finally:
        server.should_exit = True
        done.result(timeout=20)


@dataclass
class LiveServer(Server):
    @classmethod
    @contextmanager
    def start(
        cls, settings: Settings, host: str = "127.0.0.1", **app_kwargs: object
    ) -> Iterator[LiveServer]:
        """A fresh app with these settings, served by uvicorn on a free port of ``host``
        (another loopback address, 127.0.0.2, makes a second keyserver on this machine)."""
        # Bind first, so links in mails (base_url) can name the real port.
        sock = reserve_port(host)
        port = sock.getsockname()[1]
        settings = named(settings, port, host)
        if settings.recon_peers and not settings.recon_http_port:
            # Recon peers fetch keys from the HTTP port we announce: this one.
            settings = settings.model_copy(update={"recon_http_port": port})
        app = create_app(settings, **app_kwargs)  # type: ignore[arg-type]
        base = f"http://{host}:{port}{settings.path_prefix}"
        with (
            uvicorn_serving(app, sock, lifespan=True),
            httpx.Client(base_url=base, timeout=30) as client,
        ):
            yield cls(app, base, client, settings)
