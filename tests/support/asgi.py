"""The real application called in process, without a socket: ``httpx.ASGITransport`` on
an event loop in a helper thread, with the app's lifespan run around the test (what
Starlette's ``TestClient`` does, without its deprecated httpx coupling)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any

import anyio.from_thread
import httpx

from attester.app import create_app
from attester.config import Settings


class InProcess:
    def __init__(self, portal: anyio.from_thread.BlockingPortal, client: httpx.AsyncClient) -> None:
        self._portal = portal
        self._client = client

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        response: httpx.Response = self._portal.call(
            partial(self._client.request, method, url, **kwargs)
        )
        return response

    def get(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", url, **kwargs)

    def options(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("OPTIONS", url, **kwargs)


@contextmanager
def in_process(
    settings: Settings, host: str = "testserver", **app_kwargs: Any
) -> Iterator[InProcess]:
    app = create_app(settings, **app_kwargs)
    with (
        anyio.from_thread.start_blocking_portal() as portal,
        portal.wrap_async_context_manager(app.router.lifespan_context(app)),
    ):
        client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url=f"http://{host}"
        )
        try:
            yield InProcess(portal, client)
        finally:
            portal.call(client.aclose)
