"""Access tokens (``access_tokens``): the bearer tokens of the admin API and of clients let
into internal deployments. Stored as the SHA-256 of the token only; the token itself is
shown once, when it is made, and is in no table and no log."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, delete, insert, select

from attester.store.db import Database
from attester.store.schema import access_tokens


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()


@dataclass(frozen=True)
class StoredToken:
    name: str
    scopes: frozenset[str]
    created: datetime
    created_by: str

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "scopes": sorted(self.scopes),
            "created": self.created.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "created_by": self.created_by,
        }


def _stored(r: Any) -> StoredToken:
    return StoredToken(
        r.name, frozenset(s for s in r.scopes.split(",") if s), r.created, r.created_by
    )


class AccessTokenStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def by_token(self, token: str) -> StoredToken | None:
        q = select(access_tokens).where(access_tokens.c.token_hash == token_hash(token))
        with self.db.read() as conn:
            row = conn.execute(q).first()
        return _stored(row) if row else None

    def all(self) -> list[StoredToken]:
        with self.db.read() as conn:
            return [
                _stored(r)
                for r in conn.execute(select(access_tokens).order_by(access_tokens.c.name))
            ]


class AccessTokenTx:
    """Writes, inside a ``KeyStore.write()`` transaction (``WriteTx.access``)."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def insert(
        self, name: str, token: str, scopes: frozenset[str], now: datetime, created_by: str
    ) -> None:
        self.conn.execute(
            insert(access_tokens).values(
                name=name,
                token_hash=token_hash(token),
                scopes=",".join(sorted(scopes)),
                created=now,
                created_by=created_by[:255],
            )
        )

    def exists(self, name: str) -> bool:
        q = select(access_tokens.c.id).where(access_tokens.c.name == name)
        return self.conn.execute(q).first() is not None

    def delete(self, name: str) -> bool:
        done = self.conn.execute(delete(access_tokens).where(access_tokens.c.name == name))
        return bool(done.rowcount)
