"""The ASGI application: one Starlette app, protocol adapters mounted below the configured
path prefix, the core built once in the lifespan and shared through ``app.state``."""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import anyio
import httpx
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.types import Receive, Scope, Send

from attester.admin import api as admin_api
from attester.attestation.delivery import OutboxWorker
from attester.attestation.mail import transport_from_url
from attester.attestation.oidc import OIDCSettings, OIDCVerifier
from attester.config import ConfigError, Settings
from attester.federation import Federation
from attester.http import redact
from attester.http.access import AccessGuard
from attester.http.cache import AnswerCache, AnswerCacheMiddleware, answer_kept
from attester.outbound import tls_context
from attester.protocols import fes, flowcrypt, hkp, vks, wkd
from attester.service.attestation import Attestation
from attester.service.client_config import ClientConfigurations
from attester.service.core import Clock, Core, utcnow
from attester.service.errors import ServiceError
from attester.service.operator import Administration
from attester.service.parsing import ParsePool
from attester.service.policy import Audience, Policy, PolicyInvalid
from attester.store.audit import Actor, ActorKind
from attester.store.db import open_database, upgrade
from attester.store.errors import DatabaseUnavailable
from attester.web import pages

log = logging.getLogger("attester")


def _routes() -> list[BaseRoute]:
    return [
        # Browsers get the search page; API clients probing "/" keep {"alive": true}.
        Route("/", pages.browser_or(flowcrypt.alive), methods=["GET", "HEAD"]),
        *flowcrypt.routes(),
        *fes.routes(),
        *pages.routes(),
        *vks.routes(),
        *wkd.routes(),
        *hkp.routes(),
        *admin_api.routes(),
    ]


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    message = {404: "Not found", 405: "Method not allowed"}.get(exc.status_code, exc.detail)
    return flowcrypt.error_response(exc.status_code, message)


async def _server_error(request: Request, exc: Exception) -> Response:
    # The exception goes to the log; the client gets a generic sentence, never internals.
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return JSONResponse(
        {
            "error": {"code": 500, "message": "Internal server error"},
            "code": 500,
            "message": "Internal server error",
        },
        status_code=500,
    )


def _unavailable(settings: Settings) -> Callable[[Request, Exception], Awaitable[Response]]:
    """The answer while the database cannot be reached: 503 with ``Retry-After``, in the
    body each surface's clients read (HKP text, VKS JSON, the FlowCrypt error body), and
    one log line instead of a traceback per request."""

    async def handle(request: Request, exc: Exception) -> Response:
        log.warning("503 for %s %s: %s", request.method, request.url.path[:80], exc)
        message = "The key server cannot reach its database right now. Please try again shortly."
        headers = {"Retry-After": str(settings.retry_after_seconds)}
        path = request.url.path.removeprefix(settings.path_prefix)
        response: Response
        if path.startswith("/pks/"):
            response = PlainTextResponse(message + "\n", 503, headers)
        elif path.startswith("/vks/"):
            response = JSONResponse({"error": message}, 503, headers)
        else:
            response = flowcrypt.error_response(503, message)
            response.headers.update(headers)
        return response

    return handle


async def _client_gone(request: Request, exc: Exception) -> Response:
    """A client that closed the connection in the middle of its body: one line, no
    traceback (nobody is left to read the answer; uvicorn drops it)."""
    log.info("client went away during the body of %s %s", request.method, request.url.path[:80])
    return Response(status_code=400)


async def _metrics(request: Request) -> Response:
    """Prometheus metrics (upstream latency, errors, circuit breakers, caches)."""
    federation: Federation = request.app.state.federation
    return Response(generate_latest(federation.metrics.registry), media_type=CONTENT_TYPE_LATEST)


def _background(
    loop: Callable[[], Awaitable[None]], name: str
) -> tuple[asyncio.Task[None], anyio.CancelScope]:
    """Run ``loop`` in its own task; stop it with ``scope.cancel()``, then ``await task``.

    The loops do their database work in threads (``anyio.to_thread.run_sync``), each call
    holding a pooled connection. A plain ``task.cancel()`` abandons such a call: the task
    ends at once while the thread goes on, so ``db.dispose()`` below ran while the thread
    still had its connection checked out (dispose closes only checked-in ones). The thread
    then checked it into the disposed pool, where nothing closes it, and the garbage
    collector later finalised it with psycopg's "connection deleted while still open"
    ResourceWarning. Cancelling through an anyio cancel scope instead waits for a running
    thread call to return (``run_sync`` shields it), then cancels at the next await.
    """
    scope = anyio.CancelScope()

    async def run() -> None:
        with scope:
            await loop()

    return asyncio.create_task(run(), name=name), scope


def _policy_source(reload: Callable[[], Settings]) -> Callable[[], Policy]:
    def source() -> Policy:
        try:
            return reload().make_policy()
        except ConfigError as e:
            raise PolicyInvalid(str(e)) from e

    return source


def _on_sighup(admin: Administration) -> Callable[[], None]:
    """``kill -HUP``: re-read the policy, as ``POST /admin/api/v1/policy/reload`` does
    (audited as the system; a refused file is logged and changes nothing)."""

    async def reload() -> None:
        try:
            await anyio.to_thread.run_sync(admin.reload_policy, Actor(ActorKind.SYSTEM, "SIGHUP"))
        except ServiceError as e:
            log.error("policy not reloaded (the policy in force stays): %s", e.message)
        except Exception:
            log.exception("policy reload on SIGHUP failed")
        else:
            log.info("policy reloaded on SIGHUP")

    running: set[asyncio.Task[None]] = set()  # keeps each reload alive until it is done

    def handle() -> None:
        task = asyncio.ensure_future(reload())
        running.add(task)
        task.add_done_callback(running.discard)

    return handle


class _App(Starlette):
    """The application, with one fast path before its middleware: a lookup whose answer is
    kept (``http.cache``) is answered straight away while nothing in between could change
    it: the policy makes no difference of who asks (the access guard), and CORS allows
    every origin (its headers are then the same for everyone). Starlette's middleware
    stack costs a lookup more than the lookup itself; the rest is as it would be."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET":
            cache: AnswerCache | None = getattr(self.state, "answer_cache", None)
            if (
                cache is not None
                and self.state.cors_all
                and not self.state.core.policy.current.audience_matters
                and await answer_kept(cache, self, scope, send, str(Audience.OUTSIDE), _EXPOSE)
            ):
                return
        await super().__call__(scope, receive, send)


_EXPOSED = ["X-Attester-Origin"]  # browser clients may show a key's origin
_EXPOSE = ", ".join(_EXPOSED).encode()


def create_app(
    settings: Settings,
    clock: Clock = utcnow,
    reload: Callable[[], Settings] | None = None,
    *,
    singletons: bool = True,
) -> Starlette:
    """The application. ``reload`` re-reads the configuration (the file and environment
    ``settings`` came from): the policy is reloaded from it on ``SIGHUP`` and by the admin
    API; without it, a reload is refused. ``singletons``: also run the jobs one server
    needs only once (pull mirroring, reconciliation's listener and gossip); ``attester
    serve --workers`` gives them to one worker."""

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        redact.install()
        anyio.to_thread.current_default_thread_limiter().total_tokens = settings.threads
        db = open_database(settings.database_url, settings.database_pool_size)
        upgrade(db)
        app.state.answer_cache = None
        if settings.answer_cache_entries:
            db.changes.watch()  # other processes' writes, too
            app.state.answer_cache = AnswerCache(
                db.changes,
                settings.answer_cache_entries,
                settings.answer_cache_bytes,
                settings.answer_cache_seconds,
                clock,
            )
        core = Core(settings, db, clock)
        if reload is not None:
            core.policy.source = _policy_source(reload)
        parsing = ParsePool(settings.parse_workers, settings.parse_timeout_seconds)
        await anyio.to_thread.run_sync(parsing.start)
        core.use_parser(parsing)
        federation = Federation(settings, core)
        core.upstreams = federation.fallback
        async with httpx.AsyncClient(
            timeout=10, follow_redirects=False, verify=tls_context()
        ) as http:
            oidc = None
            if settings.oidc_issuers:
                oidc = OIDCVerifier(
                    OIDCSettings(
                        issuers=settings.oidc_issuers,
                        audiences=settings.oidc_audiences,
                        leeway_seconds=settings.oidc_leeway_seconds,
                        jwks_cache_seconds=settings.oidc_jwks_cache_seconds,
                    ),
                    http,
                )
            worker = OutboxWorker(
                db,
                transport_from_url(settings.mail_url),
                core.mails.settings,
                clock,
                poll_seconds=settings.mail_poll_seconds,
                retry_base_seconds=settings.mail_retry_base_seconds,
                max_attempts=settings.mail_max_attempts,
                lease_seconds=settings.mail_lease_seconds,
                retry_max_seconds=settings.mail_retry_max_seconds,
            )
            app.state.core = core
            app.state.attestation = Attestation.build(core, oidc)
            app.state.mail_worker = worker
            app.state.federation = federation
            app.state.recon = None
            if settings.recon_peers:
                # SKS/Hockeypuck reconciliation: listener, gossip, recovery (one worker);
                # every worker knows the partners (hashquery) and answers op=stats.
                from attester.service.recon import prepare_tree, recon_service

                app.state.recon = recon_service(core, federation.metrics.registry)
                if singletons:
                    await anyio.to_thread.run_sync(prepare_tree, core)
                    await app.state.recon.start()
            loops = [_background(worker.run_forever, "outbox-worker")]
            if federation.mirrors is not None and singletons:
                loops.append(_background(federation.mirrors.run_forever, "mirrors"))
            # Signals reach only the main thread's loop (``attester serve``); an app run
            # elsewhere (tests, embedded) reloads through the admin API.
            loop = asyncio.get_running_loop()
            hup = threading.current_thread() is threading.main_thread() and hasattr(
                signal, "SIGHUP"
            )
            if hup:
                loop.add_signal_handler(signal.SIGHUP, _on_sighup(app.state.attestation.admin))
            try:
                yield
            finally:
                if hup:
                    loop.remove_signal_handler(signal.SIGHUP)
                if app.state.recon is not None:
                    await app.state.recon.close()
                if federation.mirrors is not None:
                    federation.mirrors.stop()  # a running round ends after its current key
                for _, scope in loops:
                    scope.cancel()
                for task, _ in loops:
                    await task  # no thread of theirs uses the database after this
                await federation.aclose()
                await anyio.to_thread.run_sync(parsing.close)
                if app.state.answer_cache is not None:
                    app.state.answer_cache = None
                    db.changes.unwatch()
                db.dispose()

    routes = _routes()
    if settings.metrics_enabled:
        routes.append(Route("/metrics", _metrics, methods=["GET"]))
    if settings.path_prefix:
        routes = [Mount(settings.path_prefix, routes=routes)]
    middleware = [
        Middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS"],
            allow_headers=["authorization", "content-type", "api-version", "x-attester-token"],
            expose_headers=_EXPOSED,
            max_age=86400,
        ),
        # Inside CORS, so a refusal of internal mode still carries CORS headers.
        Middleware(AccessGuard),
        # Then kept answers (http/cache.py): after the guard, which decides who may ask and
        # as which audience (part of what an answer is kept under); before everything else.
        Middleware(AnswerCacheMiddleware),
    ]
    app = _App(
        routes=routes,
        middleware=middleware,
        lifespan=lifespan,
        # Browsers get error pages in the site's style; API clients the JSON body.
        exception_handlers={
            HTTPException: pages.html_or(_http_error),
            ClientDisconnect: _client_gone,
            DatabaseUnavailable: pages.html_or(_unavailable(settings)),
            Exception: pages.html_or(_server_error),
        },
    )
    app.state.settings = settings
    app.state.cors_all = "*" in settings.cors_origins
    app.state.client_configurations = ClientConfigurations(
        settings.client_configuration, settings.public_url
    )
    return app
