"""The services an application holds in ``app.state`` (built once in its lifespan,
``attester.app``), typed for the handlers that use them."""

from __future__ import annotations

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
