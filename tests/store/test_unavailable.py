"""A database outage is an answer, not a crash: the store raises DatabaseUnavailable at
its one boundary, every surface answers 503 with Retry-After and a sentence, one log line
is written, and service resumes when the database is back."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import create_engine, text

from attester.config import load_settings
from attester.openpgp.types import Email
from attester.store.db import open_database
from attester.store.errors import DatabaseUnavailable
from attester.store.keys import KeyStore
from tests.support.database import PG_ADMIN_URL
from tests.support.server import AppServer


def test_an_unreachable_database_is_database_unavailable() -> None:
    db = open_database("postgresql://postgres@127.0.0.1:1/nowhere")
    try:
        with pytest.raises(DatabaseUnavailable, match="database is unavailable"):
            KeyStore(db).by_email(Email.parse("a@example.org"))
        with pytest.raises(DatabaseUnavailable), KeyStore(db).write():
            pass
    finally:
        db.dispose()


@pytest.fixture
def outage_database() -> Iterator[tuple[str, str]]:
    """A PostgreSQL database of its own, which the test can close to connections."""
    name = f"attester_outage_{secrets.token_hex(4)}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name, name
    finally:
        with admin.connect() as c:
            c.execute(text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true'))
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _close(name: str, allow: bool) -> None:
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS {str(allow).lower()}'))
        if not allow:
            c.execute(
                text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n"),
                {"n": name},
            )
    admin.dispose()


def test_an_outage_answers_503_everywhere_and_service_resumes(
    outage_database: tuple[str, str], tmp_path: object, caplog: pytest.LogCaptureFixture
) -> None:
    url, name = outage_database
    settings = load_settings(None, database_url=url, mail_url=f"file:{tmp_path}/outbox")
    with AppServer.start(settings) as live:
        client = live.client
        assert client.get("/pub/nobody@example.org").status_code == 404
        _close(name, allow=False)
        # Addresses never asked before: an answer kept from before the outage may be
        # served until the change feed notices its lost connection (a moment later).
        with caplog.at_level(logging.WARNING, logger="attester"):
            flowcrypt = client.get("/pub/nobody1@example.org")
            hkp = client.get("/pks/lookup", params={"op": "get", "search": "nobody2@example.org"})
            vks = client.get("/vks/v1/by-email/nobody3@example.org")
            page = client.get(
                "/search", params={"q": "nobody4@example.org"}, headers={"Accept": "text/html"}
            )
        for r in (flowcrypt, hkp, vks, page):
            assert r.status_code == 503, r.text
            assert r.headers["retry-after"] == str(settings.retry_after_seconds)
        assert flowcrypt.json()["error"]["code"] == 503
        assert "cannot reach its database" in flowcrypt.json()["message"]
        assert hkp.headers["content-type"].startswith("text/plain")
        assert "cannot reach its database" in hkp.text
        assert "cannot reach its database" in vks.json()["error"]
        assert page.headers["content-type"].startswith("text/html")
        # One line per request, no traceback.
        lines = [r for r in caplog.records if "503 for" in r.getMessage()]
        assert len(lines) == 4 and all(r.exc_info is None for r in lines)
        _close(name, allow=True)
        assert client.get("/pub/nobody@example.org").status_code == 404


def test_connections_the_database_dropped_cost_at_most_one_request(
    outage_database: tuple[str, str], tmp_path: object
) -> None:
    """No pre-ping per request: a pooled connection the database dropped (a restart, an
    idle timeout) fails the one request that meets it, and that discards the pool."""
    url, name = outage_database
    settings = load_settings(
        None, database_url=url, mail_url=f"file:{tmp_path}/outbox", answer_cache_entries=0
    )
    with AppServer.start(settings) as live:
        client = live.client
        # Several pooled connections: requests at once, each reading in its own thread.
        with ThreadPoolExecutor(8) as pool:
            found = list(pool.map(lambda i: client.get(f"/pub/a{i}@example.org"), range(32)))
        assert {r.status_code for r in found} == {404}
        _close(name, allow=False)  # every connection of the app is terminated
        _close(name, allow=True)
        statuses = [client.get(f"/pub/nobody{i}@example.org").status_code for i in range(6)]
        assert statuses.count(503) <= 1, statuses
        assert statuses[-1] == 404, statuses
