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

from sqlalchemy import Connection, bindparam, delete, insert, select, text, update
from sqlalchemy.dialects import postgresql, sqlite

from attester.openpgp import ParsedCert, UserIDInfo
from attester.openpgp.types import Email, Fingerprint
from attester.openpgp.wkd import wkd_hash
from attester.store import audit as _audit
from attester.store.access import AccessTokenTx
from attester.store.audit import Actor
from attester.store.origins import OriginTx
from attester.store.outbox import Outbox
from attester.store.recon import ReconTx
from attester.store.removals import RemovalTx
from attester.store.schema import certs, key_ids, user_ids
from attester.store.tokens import Tokens
from attester.store.views import AttestedBy, uid_hash

# One statement for many rows (SQLAlchemy's "insertmanyvalues" batches the rows at run
# time: a multi-row VALUES built per batch was compiled anew each time).
_INSERT_CERTS = {
    pg: (postgresql.insert if pg else sqlite.insert)(certs)
    .on_conflict_do_nothing(index_elements=["fingerprint"])
    .returning(certs.c.id, certs.c.fingerprint)
    for pg in (False, True)
}
_CHUNK = 500  # values per IN list, rows per insert (SQLite allows 32,766 bound values)

# The statements every publication step runs, built once: SQLAlchemy then reuses their
# cache key and compiled form, where a statement built per call costs more to build and
# key than the database takes to run it (an import runs them for every key). Bound
# parameter names start with ``b_``: an UPDATE may not bind a column's own name.
_CERT_ID = select(certs.c.id).where(certs.c.fingerprint == bindparam("b_fpr"))
_CERT_DATA = select(certs.c.data).where(certs.c.id == bindparam("b_id"))
_USER_ID_ROWS = (
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
    .where(user_ids.c.cert_id == bindparam("b_id"))
    .order_by(user_ids.c.id)
)
_SET_ATTESTED = (
    update(user_ids)
    .where(user_ids.c.id.in_(bindparam("b_ids", expanding=True)))
    .values(attested_by=bindparam("b_by"), attested_at=bindparam("b_at"))
)
_CLEAR_USER_ID_FORMS = (
    update(user_ids)
    .where(user_ids.c.cert_id == bindparam("b_id"))
    .values(wkd_binary=None, removed=False)
)
_MARK_REMOVED = (
    update(user_ids)
    .where(user_ids.c.id.in_(bindparam("b_ids", expanding=True)))
    .values(removed=True)
)
_SET_WKD = (
    update(user_ids).where(user_ids.c.id == bindparam("b_id")).values(wkd_binary=bindparam("b_wkd"))
)
_SET_CERT_FORMS = (
    update(certs)
    .where(certs.c.id == bindparam("b_id"))
    .values(
        armored_identity_free=bindparam("b_free"),
        armored_published=bindparam("b_published"),
        removed=bindparam("b_removed"),
    )
)
_PUBLISHED_EMAILS = (
    select(user_ids.c.email)
    .distinct()
    .where(
        user_ids.c.cert_id == bindparam("b_id"),
        user_ids.c.attested_at.is_not(None),
        user_ids.c.email.is_not(None),
        user_ids.c.removed.is_(False),
    )
)
_ATTESTED_CERTS = (
    select(certs.c.id, certs.c.fingerprint)
    .distinct()
    .join(user_ids, user_ids.c.cert_id == certs.c.id)
    .where(user_ids.c.email == bindparam("b_email"), user_ids.c.attested_at.is_not(None))
)
_LOCK_ADDRESS = text("SELECT pg_advisory_xact_lock(hashtext(:e))")


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
    removed: bool = False


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
        self.removals = RemovalTx(conn)
        self.access = AccessTokenTx(conn)

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
            created = self.conn.execute(_INSERT_CERTS[self._pg], rows)
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
        v = self.conn.execute(_CERT_ID, {"b_fpr": fpr.hex}).first()
        return int(v[0]) if v else None

    def cert_data(self, cert_id: int) -> bytes:
        return bytes(self.conn.execute(_CERT_DATA, {"b_id": cert_id}).scalar_one())

    # ---- publication
    def user_id_rows(self, cert_id: int) -> list[UserIDRow]:
        rows = self.conn.execute(_USER_ID_ROWS, {"b_id": cert_id})
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
                _SET_ATTESTED, {"b_ids": list(ids), "b_by": str(by) if by else None, "b_at": at}
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
        self.conn.execute(_CLEAR_USER_ID_FORMS, {"b_id": cert_id})
        if removed_user_ids:
            self.conn.execute(_MARK_REMOVED, {"b_ids": list(removed_user_ids)})
        if wkd:
            self.conn.execute(
                _SET_WKD, [{"b_id": row_id, "b_wkd": binary} for row_id, binary in wkd.items()]
            )
        self.conn.execute(
            _SET_CERT_FORMS,
            {
                "b_id": cert_id,
                "b_free": identity_free,
                "b_published": published,
                "b_removed": removed,
            },
        )

    def published_emails(self, cert_id: int | None) -> set[Email]:
        """The addresses this certificate is served with (attested, not removed)."""
        if cert_id is None:
            return set()
        return {Email(r[0]) for r in self.conn.execute(_PUBLISHED_EMAILS, {"b_id": cert_id})}

    def attested_certs(self, email: Email) -> list[tuple[int, Fingerprint]]:
        """Certificates on which the address is currently attested (for the conflict rule)."""
        rows = self.conn.execute(_ATTESTED_CERTS, {"b_email": email.address}).all()
        return [(int(r[0]), Fingerprint(r[1])) for r in rows]

    def lock_address(self, email: Email) -> None:
        """Serialise decisions about one address (rate limits, the conflict rule) across
        concurrent transactions. SQLite's BEGIN IMMEDIATE already serialises everything."""
        if self._pg:
            self.conn.execute(_LOCK_ADDRESS, {"e": email.address})

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
