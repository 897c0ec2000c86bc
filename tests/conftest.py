"""Shared fixtures. Every test that touches the store runs on SQLite and on PostgreSQL
(``--backend`` narrows it); PostgreSQL runs use one database per test session, created
here and dropped at the end, so concurrent runs never collide."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from attester.config import Settings, load_settings
from attester.service.attestation import Attestation
from attester.service.core import Core
from attester.store.db import open_database, upgrade
from attester.store.schema import metadata
from tests.support.clock import Clock
from tests.support.server import LiveServer
from tests.support.smtp import (  # noqa: F401 - fixtures, imported so pytest registers them
    LoopbackSMTPServer,
    smtp_certificate,
    smtp_server,
    smtp_server_factory,
)

PG_ADMIN_URL = os.environ.get(
    "ATTESTER_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
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
        metafunc.parametrize("backend", backends, scope="session")


@pytest.fixture(autouse=True)
def _clean_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    # A developer's ATTESTER_* variables must not change what a test sees.
    for k in list(os.environ):
        if k.startswith("ATTESTER_") and not k.startswith("ATTESTER_TEST_"):
            monkeypatch.delenv(k)


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    name = f"attester_t_{os.getpid()}_{secrets.token_hex(3)}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as c:
            c.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as e:  # pragma: no cover - environment problem, said loudly
        pytest.fail(f"PostgreSQL at {PG_ADMIN_URL} is not usable: {e}")
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    db = open_database(url)
    upgrade(db)
    db.dispose()
    yield url
    with admin.connect() as c:
        c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture
def database_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'attester.db'}"
    url: str = request.getfixturevalue("pg_database")
    engine = create_engine(url)
    with engine.begin() as c:
        names = ", ".join(t.name for t in metadata.sorted_tables)
        c.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
    engine.dispose()
    return url


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    # Per-client rate limits out of the way (every test request comes from 127.0.0.1);
    # tests/service/test_client_limits.py sets its own.
    return load_settings(
        None,
        database_url=database_url,
        mail_url=f"file:{tmp_path / 'outbox'}",
        port=0,
        rate_limit_mail_requests="100000/minute",
        rate_limit_text_search="100000/minute",
    )


@pytest.fixture
def core(settings: Settings) -> Iterator[Core]:
    db = open_database(settings.database_url)
    upgrade(db)
    yield Core(settings, db)
    db.dispose()


@pytest.fixture
def attestation(core: Core, settings: Settings) -> Attestation:
    return Attestation.build(core)


@pytest.fixture
def clock() -> Clock:
    return Clock()


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


@pytest.fixture
def live(mail_settings: Settings, clock: Clock) -> Iterator[LiveServer]:
    """The real app on loopback, mailing to ``smtp_server``, on a clock tests can move."""
    with LiveServer.start(mail_settings, clock=clock) as server:
        yield server


@pytest.fixture
def server(settings: Settings) -> Iterator[LiveServer]:
    """The real ASGI app served by uvicorn on a free loopback port."""
    with LiveServer.start(settings) as live:
        yield live
