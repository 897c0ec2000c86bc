"""The test database of one backend: created and migrated once per session, emptied before
each test that uses it (much faster than a new database per test, and on PostgreSQL one
database per session keeps concurrent runs and pytest-xdist workers apart)."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from sqlalchemy import create_engine, text

from attester.store.db import Database, open_database, upgrade
from attester.store.schema import metadata, server_secrets

PG_ADMIN_URL = os.environ.get(
    "ATTESTER_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)

# Installation-wide secrets (the form key) are made once and cached by running app
# servers, as in production: the session's app keeps its copy across tests, so the row
# stays too. A test about how they are made starts from an empty table of its own.
KEPT = {server_secrets.name}
EMPTIED = [t for t in reversed(metadata.sorted_tables) if t.name not in KEPT]


def _sqlite_audit_guards() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The append-only triggers of the audit log on SQLite, as the migration made them."""
    from importlib import import_module

    migration = import_module("attester.store.migrations.versions.0005_enterprise")
    sql: tuple[str, ...] = migration._SQLITE_GUARD
    names = tuple(statement.split()[2] for statement in sql)
    return names, sql


_SQLITE_AUDIT_GUARDS, _SQLITE_AUDIT_GUARD_SQL = _sqlite_audit_guards()


@dataclass
class SessionDatabase:
    url: str
    db: Database  # engines shared by the session's fixtures
    sequences: list[str] = field(default_factory=list)  # PostgreSQL's, for the ids

    def empty(self) -> None:
        """Delete every row the application wrote and start ids at 1 again, as in a new
        database (the schema and its version stay). DELETE, not TRUNCATE: on tables this
        small it takes milliseconds where TRUNCATE takes a tenth of a second or more."""
        with self.db.writer.begin() as c:
            if not self.db.is_sqlite:
                # A connection left inside a transaction must fail the test, not hang it.
                c.execute(text("SET LOCAL lock_timeout = '10s'"))
                # The audit log refuses DELETE (a trigger: it is append-only); a test
                # database is the one place it may be emptied, with triggers off.
                c.execute(text("SET LOCAL session_replication_role = replica"))
            else:
                for trigger in _SQLITE_AUDIT_GUARDS:
                    c.execute(text(f"DROP TRIGGER IF EXISTS {trigger}"))
            for table in EMPTIED:  # children first: foreign keys are enforced
                c.execute(table.delete())
            for name in self.sequences:
                c.execute(text(f'ALTER SEQUENCE "{name}" RESTART'))
            if self.db.is_sqlite:
                for statement in _SQLITE_AUDIT_GUARD_SQL:
                    c.execute(text(statement))


@contextmanager
def migrated(url: str) -> Iterator[SessionDatabase]:
    db = open_database(url)
    try:
        upgrade(db)
        sequences: list[str] = []
        if not db.is_sqlite:
            with db.writer.connect() as c:
                q = text("SELECT sequencename FROM pg_sequences WHERE schemaname = 'public'")
                sequences = list(c.execute(q).scalars())
        yield SessionDatabase(url, db, sequences)
    finally:
        db.dispose()


@contextmanager
def postgres_database() -> Iterator[str]:
    """A new, empty PostgreSQL database, dropped afterwards; its URL."""
    name = f"attester_t_{os.getpid()}_{secrets.token_hex(3)}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as c:
            c.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as e:
        admin.dispose()
        raise RuntimeError(f"PostgreSQL at {PG_ADMIN_URL} is not usable: {e}") from e
    try:
        yield PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    finally:
        with admin.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
