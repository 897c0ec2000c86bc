"""One write transaction and the storage steps the service composes in it.

A step never commits on its own: ``KeyStore.write()`` commits when its block ends, so a
confirmation that publishes an address and queues the "replaced" mail is one atomic
change. The steps store what they are given; deciding it (how certificates merge, which
user IDs are published, what each form holds) is the service's (``attester.service``).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, delete, insert, select, text, update
from sqlalchemy.dialects import postgresql, sqlite

from attester.openpgp import ParsedCert, UserIDInfo
from attester.openpgp.types import Email, Fingerprint
from attester.openpgp.wkd import wkd_hash
from attester.store.origins import OriginTx
from attester.store.outbox import Outbox
from attester.store.recon import ReconTx
from attester.store.schema import audit_log, certs, key_ids, user_ids
from attester.store.tokens import Tokens
from attester.store.views import AttestedBy, uid_hash

_CHUNK = 500  # rows per multi-row statement (SQLite allows 32766 bound values)


@dataclass(frozen=True)
class LockedCert:
    """A stored certificate's row, locked until the transaction ends."""

    id: int
    data: bytes
    digest: str


@dataclass(frozen=True)
class UserIDRow:
    """A stored user ID as the publication rules read it."""

    id: int
    uid_hash: str
    raw: bytes
    email: str | None
    revoked: bool
    attested_by: str | None
    attested_at: datetime | None


class WriteTx:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self._pg = conn.dialect.name == "postgresql"
        self.tokens = Tokens(conn)
        self.outbox = Outbox(conn)
        self.origins = OriginTx(conn)
        # The recon prefix tree follows certs.digest: every write of a digest tells it, and
        # KeyStore.write applies the changes once, last in the transaction.
        self.recon = ReconTx(conn)

    # ---- certificates
    def lock(self, fpr: Fingerprint) -> LockedCert | None:
        """The stored certificate, locked until the transaction ends: concurrent merges
        into one certificate take turns. (On SQLite the transaction already holds the
        database's write lock since BEGIN IMMEDIATE.)"""
        return self.lock_many([fpr]).get(fpr.hex)

    def lock_many(self, fprs: Collection[Fingerprint]) -> dict[str, LockedCert]:
        """``lock`` for many, by fingerprint (hex); locked in fingerprint order, so two
        writers locking overlapping batches cannot deadlock."""
        wanted = sorted({f.hex for f in fprs})
        out: dict[str, LockedCert] = {}
        for start in range(0, len(wanted), _CHUNK):
            q = (
                select(certs.c.id, certs.c.fingerprint, certs.c.data, certs.c.digest)
                .where(certs.c.fingerprint.in_(wanted[start : start + _CHUNK]))
                .order_by(certs.c.fingerprint)
            )
            if self._pg:
                q = q.with_for_update()
            for r in self.conn.execute(q):
                out[r.fingerprint] = LockedCert(int(r.id), bytes(r.data), r.digest)
        return out

    def insert_certs(
        self, new: Sequence[tuple[ParsedCert, str]], source: str, now: datetime
    ) -> dict[str, int]:
        """Store new certificates, each with its identity-free armored form, and their key
        ids and user IDs: a few statements for the whole batch. Returns the ids by
        fingerprint (hex); one another writer stored first is left out (merge into it)."""
        out: dict[str, int] = {}
        by_fpr = {c.fingerprint.hex: c for c, _ in new}
        for start in range(0, len(new), _CHUNK):
            rows = [
                {
                    **_cert_values(c),
                    "source": source,
                    "first_seen": now,
                    "updated": now,
                    "armored_identity_free": identity_free,
                    "armored_published": None,
                }
                for c, identity_free in new[start : start + _CHUNK]
            ]
            ins = (postgresql.insert if self._pg else sqlite.insert)(certs).values(rows)
            created = self.conn.execute(
                ins.on_conflict_do_nothing(index_elements=["fingerprint"]).returning(
                    certs.c.id, certs.c.fingerprint
                )
            )
            out.update({r.fingerprint: int(r.id) for r in created})
        for fpr in out:
            self.recon.change(added=by_fpr[fpr].digest)
        self._insert_components({cert_id: by_fpr[fpr] for fpr, cert_id in out.items()})
        return out

    def update_cert(self, locked: LockedCert, cert: ParsedCert, now: datetime) -> None:
        """Replace the locked certificate's data with ``cert`` (the same primary key), with
        its key ids and user IDs: user IDs are kept (with their attestation) when they are
        still there, added when new."""
        self.conn.execute(
            update(certs).where(certs.c.id == locked.id).values(**_cert_values(cert), updated=now)
        )
        self.recon.change(removed=locked.digest, added=cert.digest)
        self.conn.execute(delete(key_ids).where(key_ids.c.cert_id == locked.id))
        existing = {
            r.uid_hash: r.id
            for r in self.conn.execute(
                select(user_ids.c.id, user_ids.c.uid_hash).where(user_ids.c.cert_id == locked.id)
            )
        }
        for u in cert.user_ids:
            h = uid_hash(u.raw)
            if h in existing:
                self.conn.execute(
                    update(user_ids)
                    .where(user_ids.c.id == existing[h])
                    .values(**_user_id_values(u))
                )
        self._insert_components({locked.id: cert}, skip_user_ids=set(existing))

    def _insert_components(
        self, certs_by_id: Mapping[int, ParsedCert], skip_user_ids: Collection[str] = ()
    ) -> None:
        keys = [
            {
                "cert_id": cert_id,
                "fingerprint": k.fingerprint.hex,
                "key_id": k.key_id.hex,
                "is_primary": k is c.primary,
            }
            for cert_id, c in certs_by_id.items()
            for k in (c.primary, *c.subkeys)
        ]
        uids = [
            {"cert_id": cert_id, "uid_hash": h, "uid_raw": u.raw, **_user_id_values(u)}
            for cert_id, c in certs_by_id.items()
            for u in c.user_ids
            if (h := uid_hash(u.raw)) not in skip_user_ids
        ]
        if keys:
            self.conn.execute(insert(key_ids), keys)
        if uids:
            self.conn.execute(insert(user_ids), uids)

    def cert_id(self, fpr: Fingerprint) -> int | None:
        v = self.conn.execute(select(certs.c.id).where(certs.c.fingerprint == fpr.hex)).first()
        return int(v[0]) if v else None

    def cert_data(self, cert_id: int) -> bytes:
        return bytes(
            self.conn.execute(select(certs.c.data).where(certs.c.id == cert_id)).scalar_one()
        )

    # ---- publication
    def user_id_rows(self, cert_id: int) -> list[UserIDRow]:
        rows = self.conn.execute(
            select(
                user_ids.c.id,
                user_ids.c.uid_hash,
                user_ids.c.uid_raw,
                user_ids.c.email,
                user_ids.c.revoked,
                user_ids.c.attested_by,
                user_ids.c.attested_at,
            )
            .where(user_ids.c.cert_id == cert_id)
            .order_by(user_ids.c.id)
        )
        return [
            UserIDRow(
                r.id, r.uid_hash, bytes(r.uid_raw), r.email, r.revoked, r.attested_by, r.attested_at
            )
            for r in rows
        ]

    def set_attested(
        self, ids: Collection[int], by: AttestedBy | str | None, at: datetime | None
    ) -> None:
        """Mark these user ID rows attested (``by``, ``at``), or not (None, None)."""
        if ids:
            self.conn.execute(
                update(user_ids)
                .where(user_ids.c.id.in_(list(ids)))
                .values(attested_by=str(by) if by else None, attested_at=at)
            )

    def write_forms(
        self,
        cert_id: int,
        identity_free: str,
        published: str | None,
        wkd: Mapping[int, bytes],
    ) -> None:
        """What lookups serve: the armored identity-free and published forms, and per user
        ID row in ``wkd`` its WKD answer (every other row of the certificate gets none)."""
        self.conn.execute(
            update(user_ids).where(user_ids.c.cert_id == cert_id).values(wkd_binary=None)
        )
        for row_id, binary in wkd.items():
            self.conn.execute(
                update(user_ids).where(user_ids.c.id == row_id).values(wkd_binary=binary)
            )
        self.conn.execute(
            update(certs)
            .where(certs.c.id == cert_id)
            .values(armored_identity_free=identity_free, armored_published=published)
        )

    def published_emails(self, cert_id: int | None) -> set[Email]:
        if cert_id is None:
            return set()
        rows = self.conn.execute(
            select(user_ids.c.email)
            .distinct()
            .where(
                user_ids.c.cert_id == cert_id,
                user_ids.c.attested_at.is_not(None),
                user_ids.c.email.is_not(None),
            )
        )
        return {Email(r[0]) for r in rows}

    def attested_certs(self, email: Email) -> list[tuple[int, Fingerprint]]:
        """Certificates on which the address is currently attested (for the conflict rule)."""
        rows = self.conn.execute(
            select(certs.c.id, certs.c.fingerprint)
            .distinct()
            .join(user_ids, user_ids.c.cert_id == certs.c.id)
            .where(and_(user_ids.c.email == email.address, user_ids.c.attested_at.is_not(None)))
        ).all()
        return [(int(r[0]), Fingerprint(r[1])) for r in rows]

    def lock_address(self, email: Email) -> None:
        """Serialise decisions about one address (rate limits, the conflict rule) across
        concurrent transactions. SQLite's BEGIN IMMEDIATE already serialises everything."""
        if self._pg:
            self.conn.execute(
                text("SELECT pg_advisory_xact_lock(hashtext(:e))"), {"e": email.address}
            )

    # ---- audit
    def audit(
        self,
        now: datetime,
        actor: str,
        action: str,
        fingerprint: Fingerprint | None = None,
        email: Email | None = None,
        detail: str | None = None,
    ) -> None:
        self.conn.execute(
            insert(audit_log).values(
                at=now,
                actor=actor,
                action=action,
                fingerprint=fingerprint.hex if fingerprint else None,
                email=email.address if email else None,
                detail=detail,
            )
        )


def _user_id_values(u: UserIDInfo) -> dict[str, Any]:
    return {
        "uid": u.text,
        "email": u.email.address if u.email else None,
        "wkd_hash": wkd_hash(u.email.local_part) if u.email else None,
        "created": u.created,
        "revoked": u.revoked,
    }


def _cert_values(c: ParsedCert) -> dict[str, Any]:
    p = c.primary
    return {
        "fingerprint": p.fingerprint.hex,
        "version": p.fingerprint.version,
        "algorithm": p.algorithm,
        "algorithm_name": p.algorithm_name,
        "bits": p.bits,
        "created": p.created,
        "expires": p.expires,
        "revoked": p.revoked,
        "data": c.data,
        "digest": c.digest,
    }
