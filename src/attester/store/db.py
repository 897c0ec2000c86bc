"""Engines for the configured database URL, and migrations applied on start.

SQLite gets WAL, a busy timeout and ``BEGIN IMMEDIATE`` for writing transactions so that
read-merge-write sequences are serialised (a deferred transaction would upgrade its lock
late and fail with "database is locked" under concurrent writers). PostgreSQL uses row
locks (``SELECT ... FOR UPDATE``) in the queries themselves.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, create_engine, event, exc, inspect, text
from sqlalchemy.engine import make_url

from attester.store.changes import Changes, changes_for
from attester.store.errors import DatabaseUnavailable

if TYPE_CHECKING:
    from alembic.config import Config

_MIGRATIONS = Path(__file__).parent / "migrations"


class DatabaseURLError(ValueError):
    pass


def normalise_url(url: str) -> str:
    """Accept the URLs operators write (``postgresql://``, ``postgres://``) and pick the
    driver we ship (psycopg 3); create the folder of a SQLite file."""
    u = url.strip()
    if u.startswith("postgres://"):
        u = "postgresql://" + u[len("postgres://") :]
    if u.startswith("postgresql://"):
        u = "postgresql+psycopg://" + u[len("postgresql://") :]
    try:
        parsed = make_url(u)
    except Exception as e:
        raise DatabaseURLError(f"database URL {url!r} is not a valid URL") from e
    if parsed.get_backend_name() not in ("sqlite", "postgresql"):
        raise DatabaseURLError(
            f"database URL {url!r}: only sqlite:/// and postgresql:// are supported"
        )
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    return u


@dataclass(frozen=True)
class Database:
    """A reader and a writer engine (the same engine on PostgreSQL)."""

    reader: Engine
    writer: Engine
    # When stored data may have changed (``store.changes``): what caches of answers check.
    changes: Changes = field(default_factory=Changes)

    @property
    def is_sqlite(self) -> bool:
        return self.writer.dialect.name == "sqlite"

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A connection for reading (no transaction is held open for writes)."""
        with _unavailable_as_store_error(), self.reader.connect() as conn:
            yield conn

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """One write transaction: commits when the block ends, rolls back if it raises."""
        with _unavailable_as_store_error(), self.writer.begin() as conn:
            yield conn

    def dispose(self) -> None:
        self.reader.dispose()
        if self.writer is not self.reader:
            self.writer.dispose()


@contextmanager
def _unavailable_as_store_error() -> Iterator[None]:
    """The one place SQLAlchemy's errors about reaching the database become ours: a
    connection that fails or breaks, a pool that stays exhausted, a lock that outlasts its
    timeout. Every other database error is a bug and stays what it is (a 500 and a log)."""
    try:
        yield
    except exc.DBAPIError as e:
        if isinstance(e, exc.OperationalError | exc.InterfaceError) or e.connection_invalidated:
            raise DatabaseUnavailable(f"the database is unavailable: {_first_line(e)}") from e
        raise
    except exc.TimeoutError as e:  # the pool had no connection to give within its timeout
        raise DatabaseUnavailable(f"the database is unavailable: {_first_line(e)}") from e


def _first_line(e: BaseException) -> str:
    return (str(getattr(e, "orig", None) or e).strip().splitlines() or [type(e).__name__])[0]


def _sqlite_engine(url: str, immediate: bool) -> Engine:
    engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event below issue BEGIN itself.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


def open_database(url: str, pool_size: int = 5) -> Database:
    u = normalise_url(url)
    changes = changes_for(make_url(u))
    if u.startswith("sqlite"):
        return Database(_sqlite_engine(u, False), _sqlite_engine(u, True), changes)
    # No pre-ping: it cost every lookup a round trip. A pooled connection the server has
    # dropped fails its request once (503, like any outage), and that error makes
    # SQLAlchemy discard every connection of the pool made before it.
    engine = create_engine(u, pool_size=pool_size, max_overflow=pool_size * 2)
    return Database(engine, engine, changes)


def _alembic_config() -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(_MIGRATIONS))
    return cfg


@functools.cache
def _head() -> str | None:
    """The newest migration's revision (reading the scripts once per process)."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_alembic_config()).get_current_head()


def _at_head(db: Database) -> bool:
    """Whether the schema is already at the newest migration: then an app start or a
    command skips Alembic, which reads and compiles every migration script each time
    (a fifth of an app start's CPU)."""
    with db.reader.connect() as conn:  # no write lock (SQLite: BEGIN IMMEDIATE)
        if not inspect(conn).has_table("alembic_version"):
            return False
        versions = conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
    return versions == [_head()]


def upgrade(db: Database) -> None:
    """Apply every pending Alembic migration. On PostgreSQL an advisory lock makes app
    servers that start together take turns instead of racing on DDL."""
    from alembic import command

    if _at_head(db):
        return
    cfg = _alembic_config()
    with db.writer.begin() as conn:
        if not db.is_sqlite:
            conn.execute(text("SELECT pg_advisory_xact_lock(7412395)"))
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
