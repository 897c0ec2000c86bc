"""One write transaction and the storage steps the service composes in it.

A step never commits on its own: ``KeyStore.write()`` commits when its block ends, so a
confirmation that publishes an address and queues the "replaced" mail is one atomic
change. The steps store what they are given; deciding it (how certificates merge, which
user IDs are published, what each form holds) is the service's (``attester.service``).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, delete, insert, select, text, update
from sqlalchemy.dialects import postgresql, sqlite

from attester.openpgp import ParsedCert
from attester.openpgp.types import Email, Fingerprint
from attester.openpgp.wkd import wkd_hash
from attester.store import audit as _audit
from attester.store.access import AccessTokenTx
from attester.store.audit import Actor
from attester.store.origins import OriginTx
from attester.store.outbox import Outbox
from attester.store.removals import RemovalTx
from attester.store.schema import certs, key_ids, user_ids
from attester.store.tokens import Tokens
from attester.store.views import AttestedBy, uid_hash


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
    removed: bool = False


class WriteTx:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self._pg = conn.dialect.name == "postgresql"
        self.tokens = Tokens(conn)
        self.outbox = Outbox(conn)
        self.origins = OriginTx(conn)
        self.removals = RemovalTx(conn)
        self.access = AccessTokenTx(conn)

    # ---- certificates
    def lock(self, fpr: Fingerprint) -> tuple[int, bytes] | None:
        """The stored certificate's id and data, locked until the transaction ends:
        concurrent merges into one certificate take turns. (On SQLite the transaction
        already holds the database's write lock since BEGIN IMMEDIATE.)"""
        q = select(certs.c.id, certs.c.data).where(certs.c.fingerprint == fpr.hex)
        if self._pg:
            q = q.with_for_update()
        row = self.conn.execute(q).first()
        return (int(row[0]), bytes(row[1])) if row else None

    def insert_cert(self, cert: ParsedCert, source: str, now: datetime) -> int | None:
        """Store a new certificate (its forms are written by ``write_forms``); None when
        another writer stored the same fingerprint first."""
        ins = (postgresql.insert if self._pg else sqlite.insert)(certs).values(
            **_cert_values(cert),
            source=source,
            first_seen=now,
            updated=now,
            armored_identity_free="",
            armored_published=None,
        )
        created = self.conn.execute(
            ins.on_conflict_do_nothing(index_elements=["fingerprint"]).returning(certs.c.id)
        ).first()
        return int(created[0]) if created is not None else None

    def update_cert(self, cert_id: int, cert: ParsedCert, now: datetime) -> None:
        self.conn.execute(
            update(certs).where(certs.c.id == cert_id).values(**_cert_values(cert), updated=now)
        )

    def sync_components(self, cert_id: int, c: ParsedCert) -> None:
        """Key ids and user IDs of the certificate as ``c`` has them. User IDs are kept
        (with their attestation) when they are still there, added when new."""
        self.conn.execute(delete(key_ids).where(key_ids.c.cert_id == cert_id))
        self.conn.execute(
            insert(key_ids),
            [
                {
                    "cert_id": cert_id,
                    "fingerprint": k.fingerprint.hex,
                    "key_id": k.key_id.hex,
                    "is_primary": k is c.primary,
                }
                for k in (c.primary, *c.subkeys)
            ],
        )
        existing = {
            r.uid_hash: r.id
            for r in self.conn.execute(
                select(user_ids.c.id, user_ids.c.uid_hash).where(user_ids.c.cert_id == cert_id)
            )
        }
        for u in c.user_ids:
            h = uid_hash(u.raw)
            values = {
                "uid": u.text,
                "email": u.email.address if u.email else None,
                "wkd_hash": wkd_hash(u.email.local_part) if u.email else None,
                "created": u.created,
                "revoked": u.revoked,
            }
            if h in existing:
                self.conn.execute(
                    update(user_ids).where(user_ids.c.id == existing[h]).values(**values)
                )
            else:
                self.conn.execute(
                    insert(user_ids).values(cert_id=cert_id, uid_hash=h, uid_raw=u.raw, **values)
                )

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
                user_ids.c.removed,
            )
            .where(user_ids.c.cert_id == cert_id)
            .order_by(user_ids.c.id)
        )
        return [
            UserIDRow(
                r.id,
                r.uid_hash,
                bytes(r.uid_raw),
                r.email,
                r.revoked,
                r.attested_by,
                r.attested_at,
                r.removed,
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
        *,
        removed: bool = False,
        removed_user_ids: Collection[int] = (),
    ) -> None:
        """What lookups serve: the armored identity-free and published forms, per user ID
        row in ``wkd`` its WKD answer (every other row of the certificate gets none), and
        the removal flags (the certificate's, and those of the rows in
        ``removed_user_ids``), in the statements that write the forms anyway."""
        self.conn.execute(
            update(user_ids)
            .where(user_ids.c.cert_id == cert_id)
            .values(wkd_binary=None, removed=False)
        )
        if removed_user_ids:
            self.conn.execute(
                update(user_ids)
                .where(user_ids.c.id.in_(list(removed_user_ids)))
                .values(removed=True)
            )
        for row_id, binary in wkd.items():
            self.conn.execute(
                update(user_ids).where(user_ids.c.id == row_id).values(wkd_binary=binary)
            )
        self.conn.execute(
            update(certs)
            .where(certs.c.id == cert_id)
            .values(
                armored_identity_free=identity_free, armored_published=published, removed=removed
            )
        )

    def published_emails(self, cert_id: int | None) -> set[Email]:
        """The addresses this certificate is served with (attested, not removed)."""
        if cert_id is None:
            return set()
        rows = self.conn.execute(
            select(user_ids.c.email)
            .distinct()
            .where(
                user_ids.c.cert_id == cert_id,
                user_ids.c.attested_at.is_not(None),
                user_ids.c.email.is_not(None),
                user_ids.c.removed.is_(False),
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
        actor: Actor,
        action: str,
        fingerprint: Fingerprint | None = None,
        email: Email | None = None,
        detail: str | dict[str, Any] | None = None,
        *,
        domain: str | None = None,
        reason: str | None = None,
    ) -> None:
        """Append to the audit log, in this transaction: the entry exists exactly when the
        change does."""
        _audit.append(
            self.conn,
            now,
            actor,
            action,
            fingerprint=fingerprint,
            email=email,
            domain=domain,
            reason=reason,
            detail=detail,
        )


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
