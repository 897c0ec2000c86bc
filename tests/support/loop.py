"""One event loop, in a thread of its own, for every application the tests run.

Tests are synchronous; the applications are ASGI. Rather than a server and a loop per test,
every app under test (in process or behind uvicorn) runs on this loop: its lifespan (outbox
worker, mirrors) as a task, each request as a call from the test's thread
(``anyio.from_thread.BlockingPortal``). ``stop()`` ends it at the end of the session.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractContextManager, ExitStack, asynccontextmanager
from typing import Any, TypeVar

import anyio
from anyio.from_thread import BlockingPortal, start_blocking_portal
from starlette.types import ASGIApp, Message

T = TypeVar("T")

_stack: ExitStack | None = None
_portal: BlockingPortal | None = None


def portal() -> BlockingPortal:
    """The loop's portal, started on first use."""
    global _stack, _portal
    if _portal is None:
        _stack = ExitStack()
        _portal = _stack.enter_context(start_blocking_portal(name="attester-tests-loop"))
    return _portal


def call(fn: Callable[..., Awaitable[T]], *args: Any) -> T:
    """Run ``await fn(*args)`` on the loop and return its result."""
    return portal().call(fn, *args)


def stop() -> None:
    global _stack, _portal
    if _stack is not None:
        _stack.close()
    _stack = _portal = None


def lifespan(app: ASGIApp) -> AbstractContextManager[None]:
    """The app's lifespan running on the loop for the block: startup before, shutdown after,
    as uvicorn drives it (the ASGI lifespan protocol, through every middleware)."""
    return portal().wrap_async_context_manager(_lifespan(app))


@asynccontextmanager
async def _lifespan(app: ASGIApp) -> AsyncIterator[None]:
    to_app, app_inbox = anyio.create_memory_object_stream[Message](1)
    app_outbox, from_app = anyio.create_memory_object_stream[Message](1)
    scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}, "state": {}}

    async def expect(sent: str, wanted: str) -> None:
        await to_app.send({"type": sent})
        reply = await from_app.receive()
        if reply["type"] != wanted:
            raise RuntimeError(f"{sent}: the app answered {reply}")

    async with to_app, app_inbox, app_outbox, from_app, anyio.create_task_group() as tg:
        tg.start_soon(app, scope, app_inbox.receive, app_outbox.send)
        await expect("lifespan.startup", "lifespan.startup.complete")
        try:
            yield
        finally:
            await expect("lifespan.shutdown", "lifespan.shutdown.complete")
