"""The migrations build exactly the schema the queries are written against, and running
them again (every app server does, on every start) changes nothing."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, inspect, select

import attester.store
from attester.store.db import Database, open_database, upgrade
from attester.store.schema import metadata, server_secrets

MIGRATIONS = Path(attester.store.__file__).parent / "migrations"


def test_migrated_schema_matches_the_metadata(database_url: str) -> None:
    db = open_database(database_url)
    upgrade(db)
    with db.writer.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    db.dispose()
    assert diff == [], f"schema.py and the migrations disagree: {diff}"


def _schema(conn: Connection) -> dict[str, Any]:
    """Everything the database says about its tables, comparable with ``==``."""
    insp = inspect(conn)
    out: dict[str, Any] = {}
    for table in sorted(insp.get_table_names()):
        out[table] = {
            "columns": [
                (c["name"], str(c["type"]), c["nullable"], str(c.get("default")))
                for c in insp.get_columns(table)
            ],
            "primary key": insp.get_pk_constraint(table),
            "foreign keys": sorted(map(repr, insp.get_foreign_keys(table))),
            "unique": sorted(map(repr, insp.get_unique_constraints(table))),
            "indexes": sorted(map(repr, insp.get_indexes(table))),
        }
    return out


def _state(db: Database) -> tuple[dict[str, Any], tuple[str, ...], list[bytes]]:
    with db.writer.connect() as conn:
        heads = MigrationContext.configure(conn).get_current_heads()
        rows = list(conn.execute(select(server_secrets.c.value)).scalars())
        return _schema(conn), heads, rows


def test_migrations_are_idempotent(fresh_database_url: str) -> None:
    head = ScriptDirectory(str(MIGRATIONS)).get_current_head()
    db = open_database(fresh_database_url)
    try:
        upgrade(db)
        with db.writer.begin() as conn:
            conn.execute(
                server_secrets.insert().values(
                    name="kept", value=b"\x01" * 32, created=datetime.now(UTC)
                )
            )
        schema, heads, rows = _state(db)
        assert heads == (head,)
        assert set(schema) == {t.name for t in metadata.sorted_tables} | {"alembic_version"}
        assert rows == [b"\x01" * 32]
        upgrade(db)  # at head already: nothing to do, nothing may change
        assert _state(db) == (schema, heads, rows)
    finally:
        db.dispose()
