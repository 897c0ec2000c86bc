"""The part of FlowCrypt's enterprise server API (FES) that steers the apps: the service
probe and the client configuration per domain (``service.client_config``).

FlowCrypt's apps look for an enterprise server at ``https://fes.<domain of the user>/``:
``GET /api/`` answering with ``service`` ``enterprise-server`` makes them use it, a 404
tells them there is none. Attester answers only when ``client_configuration`` is set, and
only for domains it has rules for (or a ``*`` default). The browser then asks
``/api/v1/client-configuration/authentication`` (``{}``: no identity provider of the
organisation's own) and ``/api/v1/client-configuration``; a 404 from either would fail the
user's setup, so a domain without rules gets ``{"flags": []}`` as from FlowCrypt's own server.
Errors use the FlowCrypt JSON error body.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from attester import __version__
from attester.protocols.flowcrypt import error_response
from attester.service.client_config import ClientConfigurations, normalise_domain

_NONE_HERE = "No FlowCrypt enterprise server configuration is served here"


def _configurations(request: Request) -> ClientConfigurations:
    configurations: ClientConfigurations = request.app.state.client_configurations
    return configurations


def _probed_domain(request: Request) -> str | None:
    """The organisation a probe is for when clients reached us as ``fes.<domain>``."""
    host = request.url.hostname or ""
    if host.startswith("fes."):
        try:
            return normalise_domain(host[4:])
        except ValueError:
            return None
    return None


async def service_info(request: Request) -> Response:
    configurations = _configurations(request)
    domain = _probed_domain(request)
    if not configurations.enabled or (domain is not None and not configurations.serves(domain)):
        return error_response(404, _NONE_HERE)
    settings = request.app.state.settings
    return JSONResponse(
        {
            "vendor": "Attester",
            "service": "enterprise-server",
            "orgId": domain or settings.service_name,
            "version": __version__,
            "apiVersion": "v1",
        }
    )


def _domain(request: Request) -> str:
    raw = request.query_params.get("domain", "")
    if not raw.strip():
        raise ValueError("The query parameter 'domain' is missing.")
    try:
        return normalise_domain(raw)
    except ValueError as e:
        raise ValueError(f"The domain {raw.strip()[:100]!r} is not a domain name.") from e


async def client_configuration(request: Request) -> Response:
    configurations = _configurations(request)
    if not configurations.enabled:
        return error_response(404, _NONE_HERE)
    try:
        domain = _domain(request)
    except ValueError as e:
        return error_response(400, str(e))
    return JSONResponse({"clientConfiguration": configurations.for_domain(domain)})


async def authentication(request: Request) -> Response:
    """No organisation-specific identity provider: the apps keep signing in with the mail
    provider (Google), as they do for FlowCrypt's own server."""
    if not _configurations(request).enabled:
        return error_response(404, _NONE_HERE)
    try:
        _domain(request)
    except ValueError as e:
        return error_response(400, str(e))
    return JSONResponse({})


def routes() -> list[Route]:
    return [
        Route("/api/", service_info, methods=["GET", "HEAD"]),
        Route("/api/v1/client-configuration", client_configuration, methods=["GET", "HEAD"]),
        Route(
            "/api/v1/client-configuration/authentication",
            authentication,
            methods=["GET", "HEAD"],
        ),
    ]
