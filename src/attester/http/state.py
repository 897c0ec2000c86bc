"""The services an application holds in ``app.state`` (built once in its lifespan,
``attester.app``), typed for the handlers that use them."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from attester.service.attestation import Attestation
from attester.service.core import Core


def core(request: Request) -> Core:
    found: Core = request.app.state.core
    return found


def attestation(request: Request) -> Attestation:
    found: Attestation = request.app.state.attestation
    return found


def wake_mailer(request: Request) -> None:
    """Queued mail goes out now rather than at the worker's next poll."""
    worker = getattr(request.app.state, "mail_worker", None)
    if worker is not None:
        worker.wake()


def client_address(request: Request) -> str:
    """The address a request came from, after uvicorn applied ``forwarded_allow_ips`` (the
    proxy's ``X-Forwarded-For`` when it is a trusted proxy): what rate limits count by."""
    return request.client.host if request.client else ""


async def limit_mail_requests(request: Request) -> None:
    """Count a request that can send mail against its client address (``RateLimited``)."""
    await run_in_threadpool(core(request).client_limits.mail_request, client_address(request))
