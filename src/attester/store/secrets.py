"""Installation-wide secrets, made on first use and kept in the database."""

from __future__ import annotations

import secrets
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite

from attester.store.db import Database
from attester.store.schema import server_secrets


def server_secret(db: Database, name: str, now: datetime, size: int = 32) -> bytes:
    """The secret called ``name``: ``size`` random bytes made the first time it is asked
    for. App servers that race to make it agree on the one that was stored first
    (INSERT ... ON CONFLICT DO NOTHING, then read back)."""
    insert = postgresql.insert if db.writer.dialect.name == "postgresql" else sqlite.insert
    with db.write() as conn:
        conn.execute(
            insert(server_secrets)
            .values(name=name, value=secrets.token_bytes(size), created=now)
            .on_conflict_do_nothing(index_elements=["name"])
        )
        value = conn.execute(
            select(server_secrets.c.value).where(server_secrets.c.name == name)
        ).scalar_one()
    return bytes(value)
