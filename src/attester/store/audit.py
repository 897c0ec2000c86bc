"""The audit log: append (inside the transaction of the change it records) and query.

There is no update and no delete here, and the database refuses both (a trigger, migration
0004): the log is append-only. Entries name who acted (``Actor``) without any secret: an
admin token by its name, an id token by its issuer and subject, never a token itself.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, insert, select

from attester.openpgp.types import Email, Fingerprint
from attester.store.db import Database
from attester.store.schema import audit_log


class ActorKind(enum.StrEnum):
    TOKEN = "token"  # the admin API; name: the token's name
    CLI = "cli"  # ``attester admin`` on the database; name: the local OS user
    EMAIL = "email"  # a confirmation link; name: the confirmed address
    OIDC = "oidc"  # an id token; name: "<issuer> <subject>"
    IMPORT = "import"  # ``attester import --attest-emails``; name: the local OS user
    OWNER = "owner"  # a management link; name: the address it was mailed to
    SYSTEM = "system"  # the server itself (verification mails, SIGHUP reloads)


@dataclass(frozen=True)
class Actor:
    """Who makes a change, and from where (the client's address, when over HTTP)."""

    kind: ActorKind
    name: str
    address: str | None = None

    def __str__(self) -> str:
        return f"{self.kind.value}:{self.name}"


SYSTEM = Actor(ActorKind.SYSTEM, "attester")


@dataclass(frozen=True)
class AuditEntry:
    id: int
    at: datetime
    actor_kind: str
    actor: str
    client_address: str | None
    action: str
    fingerprint: str | None
    email: str | None
    domain: str | None
    reason: str | None
    detail: str | None

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "at": self.at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "actor_kind": self.actor_kind,
            "actor": self.actor,
            "client_address": self.client_address,
            "action": self.action,
            "fingerprint": self.fingerprint,
            "email": self.email,
            "domain": self.domain,
            "reason": self.reason,
            "detail": self.detail,
        }


@dataclass(frozen=True)
class AuditFilter:
    since: datetime | None = None
    until: datetime | None = None
    actor_kind: str | None = None
    actor: str | None = None
    action: str | None = None
    fingerprint: Fingerprint | None = None
    email: Email | None = None
    domain: str | None = None


# Built once (its compiled form is reused): an import appends an entry per address.
_APPEND = insert(audit_log)


def append(
    conn: Connection,
    now: datetime,
    actor: Actor,
    action: str,
    *,
    fingerprint: Fingerprint | None = None,
    email: Email | None = None,
    domain: str | None = None,
    reason: str | None = None,
    detail: str | dict[str, Any] | None = None,
) -> None:
    conn.execute(
        _APPEND,
        {
            "at": now,
            "actor_kind": actor.kind.value,
            "actor": actor.name[:255],
            "client_address": (actor.address or None) and actor.address[:64],
            "action": action[:32],
            "fingerprint": fingerprint.hex if fingerprint else None,
            "email": email.address if email else None,
            "domain": domain,
            "reason": reason,
            "detail": json.dumps(detail, sort_keys=True) if isinstance(detail, dict) else detail,
        },
    )


class AuditStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def query(self, f: AuditFilter, *, after_id: int = 0, limit: int = 1000) -> list[AuditEntry]:
        """Entries matching ``f`` with an id above ``after_id``, oldest first (page with
        the last id seen)."""
        q = select(audit_log).where(audit_log.c.id > after_id)
        if f.since is not None:
            q = q.where(audit_log.c.at >= f.since)
        if f.until is not None:
            q = q.where(audit_log.c.at < f.until)
        if f.actor_kind:
            q = q.where(audit_log.c.actor_kind == f.actor_kind)
        if f.actor:
            q = q.where(audit_log.c.actor == f.actor)
        if f.action:
            q = q.where(audit_log.c.action == f.action)
        if f.fingerprint is not None:
            q = q.where(audit_log.c.fingerprint == f.fingerprint.hex)
        if f.email is not None:
            q = q.where(audit_log.c.email == f.email.address)
        if f.domain:
            q = q.where(audit_log.c.domain == f.domain)
        q = q.order_by(audit_log.c.id).limit(limit)
        with self.db.read() as conn:
            return [_entry(r) for r in conn.execute(q)]

    def all(self, f: AuditFilter, page: int = 1000) -> Iterator[AuditEntry]:
        """Every matching entry, read a page at a time (exports)."""
        last = 0
        while True:
            rows = self.query(f, after_id=last, limit=page)
            yield from rows
            if len(rows) < page:
                return
            last = rows[-1].id


def _entry(r: Any) -> AuditEntry:
    return AuditEntry(
        id=r.id,
        at=r.at,
        actor_kind=r.actor_kind,
        actor=r.actor,
        client_address=r.client_address,
        action=r.action,
        fingerprint=r.fingerprint,
        email=r.email,
        domain=r.domain,
        reason=r.reason,
        detail=r.detail,
    )
