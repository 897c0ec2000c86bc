"""Removals from distribution (``removals``) and the flags lookups read
(``certs.removed``, ``user_ids.removed``).

The flags are what makes a removal cheap to honour: every lookup query carries one more
condition on a row it reads anyway, instead of a second query per request. They are kept
in step with the ``removals`` table at every write of a certificate (``flags_for`` here,
written with the served forms by ``WriteTx.write_forms``; ``service.publication``), and
for every certificate a removal touches when it is made or lifted (``service.removals``).
"""

from __future__ import annotations

import enum
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, delete, or_, select, text
from sqlalchemy.dialects import postgresql, sqlite

from attester.openpgp.types import Email, Fingerprint, KeyID
from attester.store.audit import Actor
from attester.store.db import Database
from attester.store.schema import certs, key_ids, removals, user_ids


class RemovalKind(enum.StrEnum):
    FINGERPRINT = "fingerprint"  # one certificate (its primary key's fingerprint)
    EMAIL = "email"  # one address, on every certificate
    DOMAIN = "domain"  # every address of a domain (exactly that domain)


@dataclass(frozen=True)
class Removal:
    kind: RemovalKind
    value: str
    reason: str
    created: datetime
    actor_kind: str
    actor: str

    def as_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind.value,
            "value": self.value,
            "reason": self.reason,
            "created": self.created.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "actor_kind": self.actor_kind,
            "actor": self.actor,
        }


def _removal(r: Any) -> Removal:
    return Removal(RemovalKind(r.kind), r.value, r.reason, r.created, r.actor_kind, r.actor)


def _domain_of(address: str) -> str:
    return address.rpartition("@")[2]


class RemovalStore:
    """Reads."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def all(self) -> list[Removal]:
        q = select(removals).order_by(removals.c.created, removals.c.kind, removals.c.value)
        with self.db.read() as conn:
            return [_removal(r) for r in conn.execute(q)]

    def names(
        self, fingerprint: Fingerprint | None = None, email: Email | None = None
    ) -> Removal | None:
        """The removal in force that names this certificate, address or the address's
        domain (primary key lookups), or None."""
        wanted = []
        if fingerprint is not None:
            wanted.append((RemovalKind.FINGERPRINT, fingerprint.hex))
        if email is not None:
            wanted += [(RemovalKind.EMAIL, email.address), (RemovalKind.DOMAIN, email.domain)]
        if not wanted:
            return None
        q = select(removals).where(
            or_(*(and_(removals.c.kind == k.value, removals.c.value == v) for k, v in wanted))
        )
        with self.db.read() as conn:
            row = conn.execute(q.limit(1)).first()
        return _removal(row) if row else None

    def blocks(
        self,
        *,
        fingerprint: Fingerprint | None = None,
        email: Email | None = None,
        key_id: KeyID | None = None,
    ) -> bool:
        """Whether a removal names this address (or its domain), this fingerprint, or a
        stored certificate carrying this fingerprint or key id."""
        named = email is not None or fingerprint is not None
        if named and self.names(fingerprint=fingerprint, email=email) is not None:
            return True
        if fingerprint is None and key_id is None:
            return False
        q = select(key_ids.c.cert_id).join(certs, certs.c.id == key_ids.c.cert_id)
        if fingerprint is not None:
            q = q.where(key_ids.c.fingerprint == fingerprint.hex)
        else:
            assert key_id is not None
            q = q.where(key_ids.c.key_id == key_id.hex)
        with self.db.read() as conn:
            return conn.execute(q.where(certs.c.removed.is_(True)).limit(1)).first() is not None


# The PostgreSQL advisory lock that orders removals against certificate writes: a
# transaction that works out removal flags holds it shared until it ends, one that makes
# or lifts a removal holds it exclusively. Without it a removal and a concurrent write of
# a key it names could each miss the other (neither sees the other's uncommitted rows),
# leaving the key served. SQLite needs nothing: its writers run one at a time.
_REMOVALS_LOCK = 0x4174746573746572  # "Attester"


class RemovalTx:
    """Writes, inside a ``KeyStore.write()`` transaction (``WriteTx.removals``).

    Whether any removal is in force is read once per transaction and kept (most servers
    have none, and an import asks for every address of thousands of keys); the lock
    above keeps that answer true until the transaction ends."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self._pg = conn.dialect.name == "postgresql"
        self._any: bool | None = None
        self._held = ""  # "", "shared" or "exclusive": the lock this transaction holds

    def _lock(self, mode: str) -> None:
        if not self._pg or self._held == "exclusive" or self._held == mode:
            return
        fn = "pg_advisory_xact_lock" if mode == "exclusive" else "pg_advisory_xact_lock_shared"
        self.conn.execute(text(f"SELECT {fn}(:key)"), {"key": _REMOVALS_LOCK})
        self._held = mode

    def get(self, kind: RemovalKind, value: str) -> Removal | None:
        row = self.conn.execute(
            select(removals).where(removals.c.kind == kind.value, removals.c.value == value)
        ).first()
        return _removal(row) if row else None

    def add(self, kind: RemovalKind, value: str, reason: str, actor: Actor, now: datetime) -> bool:
        """Record a removal; False when one for the same target is already in force."""
        self._lock("exclusive")
        ins = (postgresql.insert if self._pg else sqlite.insert)(removals).values(
            kind=kind.value,
            value=value,
            reason=reason,
            created=now,
            actor_kind=actor.kind.value,
            actor=actor.name[:255],
        )
        done = self.conn.execute(
            ins.on_conflict_do_nothing(index_elements=["kind", "value"]).returning(removals.c.kind)
        ).first()
        if done is not None:
            self._any = True
        return done is not None

    def delete(self, kind: RemovalKind, value: str) -> Removal | None:
        self._lock("exclusive")
        found = self.get(kind, value)
        if found is not None:
            self.conn.execute(
                delete(removals).where(removals.c.kind == kind.value, removals.c.value == value)
            )
            self._any = None
        return found

    def primary_of(self, fpr: Fingerprint) -> Fingerprint | None:
        """The primary fingerprint of the stored certificate with this primary or subkey
        fingerprint."""
        row = self.conn.execute(
            select(certs.c.fingerprint)
            .join(key_ids, key_ids.c.cert_id == certs.c.id)
            .where(key_ids.c.fingerprint == fpr.hex)
            .order_by(key_ids.c.is_primary.desc())
            .limit(1)
        ).first()
        return Fingerprint(row[0]) if row else None

    def cert_ids(self, kind: RemovalKind, value: str) -> list[int]:
        """The stored certificates a removal of this target touches."""
        if kind is RemovalKind.FINGERPRINT:
            q = select(certs.c.id).where(certs.c.fingerprint == value)
        elif kind is RemovalKind.EMAIL:
            q = select(user_ids.c.cert_id).where(user_ids.c.email == value).distinct()
        else:
            # Addresses are stored normalised (lowercase, IDNA), so the domain is exactly
            # what follows the last "@".
            pattern = "%@" + value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            q = (
                select(user_ids.c.cert_id)
                .where(user_ids.c.email.like(pattern, escape="\\"))
                .distinct()
            )
        return sorted(int(r[0]) for r in self.conn.execute(q))

    def exist(self) -> bool:
        """Whether any removal is in force (most servers have none: then nothing written
        needs its flags worked out). Read once per transaction."""
        if self._any is None:
            self._lock("shared")
            self._any = self.conn.execute(select(removals.c.kind).limit(1)).first() is not None
        return self._any

    def flags_for(self, fingerprint: Fingerprint, emails: Collection[str]) -> tuple[bool, set[str]]:
        """Whether a removal names this certificate, and which of these addresses a
        removal names (by address or domain). One primary-key lookup per target."""
        if not self.exist():
            return False, set()
        domains = {_domain_of(e) for e in emails}
        conditions = [
            and_(
                removals.c.kind == RemovalKind.FINGERPRINT.value,
                removals.c.value == fingerprint.hex,
            )
        ]
        if emails:
            conditions.append(
                and_(removals.c.kind == RemovalKind.EMAIL.value, removals.c.value.in_(emails))
            )
            conditions.append(
                and_(removals.c.kind == RemovalKind.DOMAIN.value, removals.c.value.in_(domains))
            )
        rows = self.conn.execute(select(removals.c.kind, removals.c.value).where(or_(*conditions)))
        cert_removed = False
        named_emails: set[str] = set()
        named_domains: set[str] = set()
        for kind, value in rows:
            if kind == RemovalKind.FINGERPRINT.value:
                cert_removed = True
            elif kind == RemovalKind.EMAIL.value:
                named_emails.add(value)
            else:
                named_domains.add(value)
        removed = {e for e in emails if e in named_emails or _domain_of(e) in named_domains}
        return cert_removed, removed
