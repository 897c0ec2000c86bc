"""The migrations build exactly the schema the queries are written against."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from attester.store.db import open_database, upgrade
from attester.store.schema import metadata


def test_migrated_schema_matches_the_metadata(database_url: str) -> None:
    db = open_database(database_url)
    upgrade(db)
    with db.writer.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    db.dispose()
    assert diff == [], f"schema.py and the migrations disagree: {diff}"
