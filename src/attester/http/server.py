"""The front end ``attester serve`` runs: uvicorn's httptools protocol with the bounds
uvicorn does not have (issue 10, item 11; docs/security.md).

- **Request deadline**: from a connection's first byte (or the first byte of each next
  request) until the request, headers and body, has fully arrived, at most
  ``request_timeout_seconds``; a stalled client (slowloris, a half-sent body) is dropped.
- **Header size**: a request whose line and headers exceed ``max_header_bytes`` gets
  431 and the connection is closed (uvicorn's httptools protocol has no such bound).

Connection count (``limit_concurrency``) and idle keep-alive (``timeout_keep_alive``) are
uvicorn's own settings, set by ``attester.cli.serve``.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

log = logging.getLogger("attester.http")


class ListeningServer(uvicorn.Server):
    """Logs where it listens only once the socket accepts connections (port 0 resolved):
    scripts and tests wait for that line."""

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started and self.servers:
            for s in self.servers[0].sockets:
                host, port = s.getsockname()[:2]
                shown = f"[{host}]" if ":" in host else host
                logging.getLogger("attester").info(
                    "Attester listening on http://%s:%d", shown, port
                )


class BoundedHttpProtocol(HttpToolsProtocol):
    request_timeout: float = 30.0
    max_header_bytes: int = 32 * 1024

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline: asyncio.TimerHandle | None = None
        self._head_bytes = 0
        self._in_head = True

    def _arm(self) -> None:
        if self._deadline is None:
            self._deadline = self.loop.call_later(self.request_timeout, self._stalled)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _stalled(self) -> None:
        self._deadline = None
        if not self.transport.is_closing():
            log.info(
                "dropped a connection from %s: the request did not arrive within %g s",
                self.client[0] if self.client else "?",
                self.request_timeout,
            )
            self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._in_head:
            self._head_bytes += len(data)
            if self._head_bytes > self.max_header_bytes:
                self._disarm()
                self._too_large()
                return
        super().data_received(data)

    def _too_large(self) -> None:
        msg = f"The request line and headers exceed {self.max_header_bytes} bytes.\n"
        self.transport.write(
            b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
            b"content-type: text/plain; charset=utf-8\r\n"
            + f"content-length: {len(msg)}\r\n".encode()
            + b"connection: close\r\n\r\n"
            + msg.encode()
        )
        self.transport.close()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = True
        self._arm()

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._head_bytes = 0
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()


def protocol(request_timeout: float, max_header_bytes: int) -> type[BoundedHttpProtocol]:
    """The protocol class with these bounds (uvicorn builds one instance per connection)."""
    return type(
        "AttesterHttpProtocol",
        (BoundedHttpProtocol,),
        {"request_timeout": request_timeout, "max_header_bytes": max_header_bytes},
    )
