"""Reads for the operator (admin API and CLI): keys listed with filters, one key with
everything stored about it, and counts. Unlike lookups these see what is removed or not
attested; they are never used to answer a protocol request."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from sqlalchemy import and_, func, or_, select

from attester.openpgp.types import Fingerprint
from attester.store.db import Database
from attester.store.schema import (
    access_tokens,
    audit_log,
    cert_origins,
    certs,
    key_ids,
    outbox,
    removals,
    user_ids,
)


def _like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


@dataclass(frozen=True)
class KeyFilter:
    domain: str | None = None  # some user ID has an address at exactly this domain
    # "local" (no peer supplied it), "upstream", "mirror", or "upstream:<name>"...
    origin: str | None = None
    attested: bool | None = None  # some address is attested here (or none is)
    removed: bool | None = None  # the key, or an address on it, is removed (or nothing is)
    text: str | None = None  # in a user ID (any case), or the start of the fingerprint


@dataclass(frozen=True)
class AdminUserID:
    uid: str
    email: str | None
    revoked: bool
    attested_by: str | None
    attested_at: datetime | None
    removed: bool

    def as_json(self) -> dict[str, Any]:
        return {
            "uid": self.uid,
            "email": self.email,
            "revoked": self.revoked,
            "attested_by": self.attested_by,
            "attested_at": _ts(self.attested_at),
            "removed": self.removed,
        }


@dataclass(frozen=True)
class AdminKey:
    id: int
    fingerprint: Fingerprint
    algorithm: str
    bits: int
    created: datetime
    expires: datetime | None
    revoked: bool
    removed: bool
    source: str
    first_seen: datetime
    updated: datetime
    user_ids: tuple[AdminUserID, ...] = ()
    origins: tuple[tuple[str, datetime], ...] = ()  # (label, fetched_at)
    subkeys: tuple[Fingerprint, ...] = field(default=())

    def as_json(self) -> dict[str, Any]:
        return {
            "fingerprint": self.fingerprint.hex,
            "algorithm": self.algorithm,
            "bits": self.bits,
            "created": _ts(self.created),
            "expires": _ts(self.expires),
            "revoked": self.revoked,
            "removed": self.removed,
            "source": self.source,
            "first_seen": _ts(self.first_seen),
            "updated": _ts(self.updated),
            "addresses": sorted({u.email for u in self.user_ids if u.email}),
            "attested": sorted(
                {u.email for u in self.user_ids if u.email and u.attested_at and not u.revoked}
            ),
            "removed_addresses": sorted({u.email for u in self.user_ids if u.email and u.removed}),
            "user_ids": [u.as_json() for u in self.user_ids],
            "origins": [{"origin": o, "fetched_at": _ts(at)} for o, at in self.origins],
            "subkeys": [f.hex for f in self.subkeys],
        }


def _ts(t: datetime | None) -> str | None:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ") if t else None


class AdminStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def keys(self, f: KeyFilter, *, after_id: int = 0, limit: int = 100) -> list[AdminKey]:
        """Keys matching the filter, in storage order (page with the last key's id)."""
        q = select(certs).where(certs.c.id > after_id)
        uid = user_ids.c
        if f.domain:
            q = q.where(
                select(uid.id)
                .where(
                    uid.cert_id == certs.c.id, uid.email.like(f"%@{_like(f.domain)}", escape="\\")
                )
                .exists()
            )
        if f.origin:
            peers = select(cert_origins.c.id).where(cert_origins.c.cert_id == certs.c.id)
            if f.origin == "local":
                q = q.where(~peers.exists())
            elif ":" in f.origin:
                q = q.where(peers.where(cert_origins.c.origin == f.origin).exists())
            else:
                q = q.where(
                    peers.where(
                        cert_origins.c.origin.like(f"{_like(f.origin)}:%", escape="\\")
                    ).exists()
                )
        if f.attested is not None:
            attested = (
                select(uid.id)
                .where(uid.cert_id == certs.c.id, uid.attested_at.is_not(None))
                .exists()
            )
            q = q.where(attested if f.attested else ~attested)
        if f.removed is not None:
            removed = or_(
                certs.c.removed.is_(True),
                select(uid.id).where(uid.cert_id == certs.c.id, uid.removed.is_(True)).exists(),
            )
            q = q.where(removed if f.removed else ~removed)
        if f.text:
            t = f.text.strip()
            q = q.where(
                or_(
                    certs.c.fingerprint.like(f"{_like(t.upper().replace(' ', ''))}%", escape="\\"),
                    select(uid.id)
                    .where(
                        uid.cert_id == certs.c.id,
                        func.lower(uid.uid).like(f"%{_like(t.lower())}%", escape="\\"),
                    )
                    .exists(),
                )
            )
        q = q.order_by(certs.c.id).limit(limit)
        with self.db.read() as conn:
            rows = conn.execute(q).all()
            ids = [int(r.id) for r in rows]
            uids = self._user_ids(conn, ids)
            origins = self._origins(conn, ids)
        return [_key(r, uids.get(int(r.id), ()), origins.get(int(r.id), ())) for r in rows]

    def key(self, fpr: Fingerprint) -> AdminKey | None:
        """The certificate with this primary or subkey fingerprint, everything included."""
        q = (
            select(certs)
            .join(key_ids, key_ids.c.cert_id == certs.c.id)
            .where(key_ids.c.fingerprint == fpr.hex)
            .order_by(key_ids.c.is_primary.desc())
            .limit(1)
        )
        with self.db.read() as conn:
            row = conn.execute(q).first()
            if row is None:
                return None
            cid = int(row.id)
            subkeys = tuple(
                Fingerprint(r[0])
                for r in conn.execute(
                    select(key_ids.c.fingerprint).where(
                        key_ids.c.cert_id == cid, key_ids.c.is_primary.is_(False)
                    )
                )
            )
            uids = self._user_ids(conn, [cid]).get(cid, ())
            origins = self._origins(conn, [cid]).get(cid, ())
        return replace(_key(row, uids, origins), subkeys=subkeys)

    def counts(self) -> dict[str, int]:
        uid = user_ids.c
        with self.db.read() as conn:

            def one(q: Any) -> int:
                return int(conn.execute(q).scalar_one())

            return {
                "keys": one(select(func.count()).select_from(certs)),
                "keys_removed": one(
                    select(func.count()).select_from(certs).where(certs.c.removed.is_(True))
                ),
                "keys_from_peers": one(select(func.count(func.distinct(cert_origins.c.cert_id)))),
                "addresses_attested": one(
                    select(func.count(func.distinct(uid.email))).where(
                        uid.attested_at.is_not(None), uid.revoked.is_(False)
                    )
                ),
                "addresses_removed": one(
                    select(func.count(func.distinct(uid.email))).where(uid.removed.is_(True))
                ),
                "removals": one(select(func.count()).select_from(removals)),
                "mails_waiting": one(
                    select(func.count())
                    .select_from(outbox)
                    .where(and_(outbox.c.sent_at.is_(None), outbox.c.failed_at.is_(None)))
                ),
                "mails_failed": one(
                    select(func.count()).select_from(outbox).where(outbox.c.failed_at.is_not(None))
                ),
                "access_tokens": one(select(func.count()).select_from(access_tokens)),
                "audit_entries": one(select(func.count()).select_from(audit_log)),
            }

    @staticmethod
    def _user_ids(conn: Any, ids: list[int]) -> dict[int, tuple[AdminUserID, ...]]:
        out: dict[int, list[AdminUserID]] = {}
        if ids:
            q = select(user_ids).where(user_ids.c.cert_id.in_(ids)).order_by(user_ids.c.id)
            for r in conn.execute(q):
                out.setdefault(int(r.cert_id), []).append(
                    AdminUserID(r.uid, r.email, r.revoked, r.attested_by, r.attested_at, r.removed)
                )
        return {k: tuple(v) for k, v in out.items()}

    @staticmethod
    def _origins(conn: Any, ids: list[int]) -> dict[int, tuple[tuple[str, datetime], ...]]:
        out: dict[int, list[tuple[str, datetime]]] = {}
        if ids:
            q = (
                select(cert_origins.c.cert_id, cert_origins.c.origin, cert_origins.c.fetched_at)
                .where(cert_origins.c.cert_id.in_(ids))
                .order_by(cert_origins.c.id)
            )
            for r in conn.execute(q):
                out.setdefault(int(r.cert_id), []).append((r.origin, r.fetched_at))
        return {k: tuple(v) for k, v in out.items()}


def _key(
    r: Any, uids: tuple[AdminUserID, ...], origins: tuple[tuple[str, datetime], ...]
) -> AdminKey:
    return AdminKey(
        id=int(r.id),
        fingerprint=Fingerprint(r.fingerprint),
        algorithm=r.algorithm_name,
        bits=r.bits,
        created=r.created,
        expires=r.expires,
        revoked=r.revoked,
        removed=r.removed,
        source=r.source,
        first_seen=r.first_seen,
        updated=r.updated,
        user_ids=uids,
        origins=origins,
    )
