"""Run the real application under uvicorn on 127.0.0.1 in a background thread."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import httpx
import uvicorn
from starlette.applications import Starlette

from attester.app import create_app
from attester.config import Settings


@dataclass
class LiveServer:
    app: Starlette
    base_url: str  # including the path prefix
    client: httpx.Client
    settings: Settings

    @property
    def origin(self) -> str:
        """scheme://host:port, for following absolute paths found in pages."""
        return "/".join(self.base_url.split("/")[:3])

    @classmethod
    @contextmanager
    def start(
        cls, settings: Settings, host: str = "127.0.0.1", **app_kwargs: object
    ) -> Iterator[LiveServer]:
        # Bind first, so links in mails (base_url) can name the real port. ``host`` may be
        # another loopback address (127.0.0.2: a second keyserver on this machine).
        sock = socket.socket()
        sock.bind((host, 0))
        port = sock.getsockname()[1]
        if not settings.base_url:
            settings = settings.model_copy(
                update={"base_url": f"http://{host}:{port}{settings.path_prefix}"}
            )
        if settings.recon_peers and not settings.recon_http_port:
            # Recon peers fetch keys from the HTTP port we announce: this one.
            settings = settings.model_copy(update={"recon_http_port": port})
        app = create_app(settings, **app_kwargs)  # type: ignore[arg-type]
        config = uvicorn.Config(app, log_level="warning")
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        deadline = time.monotonic() + 20
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("test server did not start")
            time.sleep(0.01)
        base = f"http://{host}:{port}{settings.path_prefix}"
        with httpx.Client(base_url=base, timeout=30) as client:
            try:
                yield cls(app, base, client, settings)
            finally:
                server.should_exit = True
                thread.join(10)
