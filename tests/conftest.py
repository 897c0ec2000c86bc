"""Shared fixtures. Every test that touches the store runs on SQLite and on PostgreSQL
(``--backend`` narrows it).

Each backend has one database per session (PostgreSQL: created here and dropped at the
end, so concurrent runs never collide), migrated once and emptied before every test that
uses it. The app with its usual settings is built once per backend and reached in process
(``server``, ``live``); over a real socket only where a real client is the point
(``socket_server``). A test that needs other settings starts its own app
(``AppServer.start``, in process; ``LiveServer.start`` on a socket).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from attester.config import Settings, load_settings
from attester.service.attestation import Attestation
from attester.service.core import Core
from tests.support import daemons, loop
from tests.support.clock import Clock
from tests.support.database import SessionDatabase, migrated, postgres_database
from tests.support.server import AppServer, LiveServer
from tests.support.session_app import SessionApp
from tests.support.smtp import (  # noqa: F401 - fixtures, imported so pytest registers them
    LoopbackSMTPServer,
    smtp_certificate,
    smtp_server,
    smtp_server_factory,
    smtp_session,
)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--backend",
        choices=("sqlite", "postgresql", "both"),
        default=os.environ.get("ATTESTER_TEST_BACKEND", "both"),
        help="database backend(s) to run store-backed tests on",
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "backend" in metafunc.fixturenames:
        choice = metafunc.config.getoption("--backend")
        backends = ["sqlite", "postgresql"] if choice == "both" else [choice]
        if metafunc.definition.get_closest_marker("one_backend") and len(backends) > 1:
            backends = backends[:1]
        metafunc.parametrize("backend", backends, scope="session")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    loop.stop()


@pytest.fixture(scope="session", autouse=True)
def _no_process_left(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Set up before, and so torn down after, every other fixture of the session: then
    nothing the tests started may still run (``tests.support.daemons``)."""
    basetemp = tmp_path_factory.getbasetemp()
    yield
    left = daemons.left_over(basetemp)
    if left:
        daemons.kill(left)
        listing = "\n".join(f"  {pid}: {cmd}" for pid, cmd in sorted(left.items()))
        pytest.fail(f"processes the tests started were still running (now killed):\n{listing}")


@pytest.fixture(autouse=True)
def _clean_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    # A developer's ATTESTER_* variables must not change what a test sees.
    for k in list(os.environ):
        if k.startswith("ATTESTER_") and not k.startswith("ATTESTER_TEST_"):
            monkeypatch.delenv(k)


@pytest.fixture(scope="session")
def test_database(
    backend: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SessionDatabase]:
    """The session's database of this backend, migrated."""
    with ExitStack() as stack:
        if backend == "sqlite":
            url = f"sqlite:///{tmp_path_factory.mktemp('sqlite') / 'attester.db'}"
        else:
            try:
                url = stack.enter_context(postgres_database())
            except RuntimeError as e:  # an environment problem, said loudly
                pytest.fail(str(e))
        yield stack.enter_context(migrated(url))


@pytest.fixture
def database_url(test_database: SessionDatabase) -> str:
    """The URL of the backend's database, emptied for this test."""
    test_database.empty()
    return test_database.url


@pytest.fixture
def fresh_database_url(backend: str, tmp_path: Path) -> Iterator[str]:
    """A database of this backend that nothing has touched yet (not even migrations)."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'fresh.db'}"
    else:
        with postgres_database() as url:
            yield url


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    # Per-client rate limits out of the way (every test request comes from 127.0.0.1);
    # tests/service/test_client_limits.py sets its own. One parsing worker per app: a
    # test sends one upload at a time, and the suite starts hundreds of apps (the tests
    # of the pool itself set their own).
    return load_settings(
        None,
        database_url=database_url,
        mail_url=f"file:{tmp_path / 'outbox'}",
        port=0,
        rate_limit_mail_requests="100000/minute",
        rate_limit_text_search="100000/minute",
        parse_workers=1,
    )


@pytest.fixture
def core(settings: Settings, test_database: SessionDatabase) -> Core:
    return Core(settings, test_database.db)


@pytest.fixture
def attestation(core: Core, settings: Settings) -> Attestation:
    return Attestation.build(core)


@pytest.fixture(scope="session")
def _session_clock() -> Clock:
    return Clock()


@pytest.fixture
def clock(_session_clock: Clock) -> Clock:
    """A clock tests can move; the session's app runs on it too (set back before each test)."""
    _session_clock.reset()
    return _session_clock


@pytest.fixture
def mail_settings(settings: Settings, smtp_server: LoopbackSMTPServer) -> Settings:  # noqa: F811
    """Settings whose mail goes to the loopback SMTP server, delivered promptly."""
    return settings.model_copy(
        update={
            "mail_url": smtp_server.url(),
            "mail_poll_seconds": 0.1,
            "mail_retry_base_seconds": 0.3,
        }
    )


@pytest.fixture(scope="session")
def _session_app(
    test_database: SessionDatabase,
    smtp_session: LoopbackSMTPServer,  # noqa: F811
    _session_clock: Clock,
) -> Iterator[SessionApp]:
    """The app of this backend with the usual settings, mailing to the session's SMTP
    server promptly. First asked for by ``_using_session_app``, after the database was
    emptied."""
    settings = load_settings(
        None,
        database_url=test_database.url,
        mail_url=smtp_session.url(),
        mail_poll_seconds=0.1,
        mail_retry_base_seconds=0.3,
        port=0,
        # As in ``settings``: every request of the session comes from 127.0.0.1.
        rate_limit_mail_requests="100000/minute",
        rate_limit_text_search="100000/minute",
    )
    app = SessionApp(settings, _session_clock)
    yield app
    app.close()


@pytest.fixture
def _using_session_app(
    database_url: str,
    smtp_server: LoopbackSMTPServer,  # noqa: F811
    clock: Clock,
    _session_app: SessionApp,
) -> Iterator[SessionApp]:
    with _session_app.in_use():
        yield _session_app


@pytest.fixture
def live(_using_session_app: SessionApp) -> AppServer:
    """The app, in process, mailing to ``smtp_server`` on a clock tests can move
    (``clock``). Its database starts empty."""
    return _using_session_app.in_process()


@pytest.fixture
def server(_using_session_app: SessionApp) -> AppServer:
    """The app, in process (the same one as ``live``)."""
    return _using_session_app.in_process()


@pytest.fixture
def socket_server(_using_session_app: SessionApp) -> LiveServer:
    """The app served by uvicorn on 127.0.0.1, for real clients (gpg, sq); its ``client``
    goes over the socket too."""
    return _using_session_app.on_socket()
