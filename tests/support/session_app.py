"""One application per database backend for the whole session, shared by the tests that
need the app with its usual settings (the ``server`` and ``live`` fixtures).

It is built once: its lifespan runs on the shared loop from the first test that asks for
it to the end of the backend's tests. Between tests the database is emptied
(``SessionDatabase.empty``), the clock set back and the SMTP server's inbox cleared. What
stays is what a running server keeps: its settings, its cached form key.

Its outbox worker must not act outside the tests that use the app: a mail queued by one
test must not reach the next test's SMTP inbox, and tests that run their own worker or
app on the same database must not have mails taken by this one. So the worker's rounds
pass a gate (``WorkerGate``): open while a test uses the app; closed, once the round in
progress has ended, when it is done.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

import anyio
import httpx

from attester.app import create_app
from attester.attestation.delivery import OutboxWorker
from attester.config import Settings
from tests.support import loop
from tests.support.clock import Clock
from tests.support.server import (
    AppServer,
    LiveServer,
    in_process_client,
    reserve_port,
    uvicorn_serving,
)


class WorkerGate:
    """Wraps the worker's ``run_once`` (which its loop calls each round) so that rounds
    start only while the gate is open, and ``close()`` returns once none is running. The
    real ``run_once`` does the work; nothing about sending changes."""

    def __init__(self, worker: OutboxWorker) -> None:
        # A tripwire: should the worker's loop stop calling run_once, this gate would hold
        # nothing back and mails could cross between tests.
        if "run_once" not in type(worker).run_forever.__code__.co_names:
            raise RuntimeError("OutboxWorker.run_forever no longer calls run_once")
        self._run_once = worker.run_once
        self._open = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        worker.run_once = self.run_once  # type: ignore[method-assign]

    async def run_once(self) -> int:
        await self._open.wait()
        self._idle.clear()
        try:
            return await self._run_once()
        finally:
            self._idle.set()

    async def open(self) -> None:
        self._open.set()

    async def close(self) -> None:
        self._open.clear()
        with anyio.fail_after(60):  # a round sends what it claimed, then ends
            await self._idle.wait()


class SessionApp:
    def __init__(self, settings: Settings, clock: Clock) -> None:
        self._stack = ExitStack()
        # The port the app names itself by; held, and served only if a test needs a socket.
        self._socket: socket.socket | None = self._stack.enter_context(reserve_port())
        self.port: int = self._socket.getsockname()[1]
        self.settings = settings.model_copy(
            update={"base_url": f"http://127.0.0.1:{self.port}{settings.path_prefix}"}
        )
        self.base_url = self.settings.base_url
        self.clock = clock
        self.app = create_app(self.settings, clock=clock)
        self._real_client: httpx.Client | None = None
        try:
            # The tables are empty when this starts (the fixture that builds it runs after
            # the database was emptied), so the worker's first round, before the gate is
            # in, finds nothing to send.
            self._stack.enter_context(loop.lifespan(self.app))
            self.gate: WorkerGate = loop.call(self._install_gate)
            self._client = self._stack.enter_context(in_process_client(self.app, self.base_url))
        except BaseException:
            self._stack.close()
            raise

    async def _install_gate(self) -> WorkerGate:
        return WorkerGate(self.app.state.mail_worker)

    def close(self) -> None:
        self._stack.close()

    @contextmanager
    def in_use(self) -> Iterator[None]:
        """For one test: the worker runs; afterwards it is stopped between rounds."""
        self.clock.reset()
        for client in (self._client, self._real_client):
            if client is not None:  # the app sets none today; a test must not inherit any
                client.cookies.clear()
        loop.call(self.gate.open)
        try:
            yield
        finally:
            loop.call(self.gate.close)

    def in_process(self) -> AppServer:
        return AppServer(self.app, self.base_url, self._client, self.settings)

    def on_socket(self) -> LiveServer:
        """The same app served by uvicorn on its port (started the first time, kept until
        the session's end), with a client that goes over the socket."""
        if self._socket is not None:
            sock, self._socket = self._socket, None
            self._stack.enter_context(uvicorn_serving(self.app, sock, lifespan=False))
            self._real_client = self._stack.enter_context(
                httpx.Client(base_url=self.base_url, timeout=30)
            )
        assert self._real_client is not None
        return LiveServer(self.app, self.base_url, self._real_client, self.settings)
