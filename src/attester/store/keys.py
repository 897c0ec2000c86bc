"""Queries over certificates, key ids and user IDs: the narrow contract the service uses.

Reads go through ``KeyStore``; every write happens inside ``KeyStore.write()``, one
transaction whose ``WriteTx`` offers the steps the service composes (merge a certificate,
attest or unpublish an address, queue a mail, use a token). A step never commits on its
own, so a confirmation that publishes an address and queues the "replaced" mail is one
atomic change.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, and_, delete, func, insert, select, text, update
from sqlalchemy.dialects import postgresql, sqlite

from attester.openpgp import Limits, ParsedCert, armor, merge, parse_certificate, publishable
from attester.openpgp.types import Email, Fingerprint, KeyID
from attester.openpgp.wkd import wkd_hash
from attester.store.db import Database
from attester.store.outbox import Outbox
from attester.store.recon import ReconTx
from attester.store.schema import (
    audit_log,
    cert_origins,
    certs,
    key_ids,
    origin_user_ids,
    user_ids,
)
from attester.store.tokens import Tokens


class ImportResult(enum.Enum):
    NEW = "new"
    UPDATED = "updated"
    UNCHANGED = "unchanged"


class AttestedBy(enum.StrEnum):
    EMAIL = "email"
    OIDC = "oidc"
    OPERATOR = "operator"


class OriginKind(enum.StrEnum):
    LOCAL = "local"  # this server's own users and operator
    UPSTREAM = "upstream"  # fetched from an upstream on a local miss
    MIRROR = "mirror"  # imported from a peer's dump, or refreshed by pull mirroring
    RECON = "recon"  # learnt from an SKS/Hockeypuck peer by set reconciliation


@dataclass(frozen=True)
class Origin:
    """Whose word the identities of a served certificate rest on: this server's own
    attestation, or a peer that published them (docs/federation.md)."""

    kind: OriginKind = OriginKind.LOCAL
    peer: str = ""  # the upstream's or mirror's name, e.g. "keys.openpgp.org"
    fetched_at: datetime | None = None  # when the peer last sent it

    @property
    def label(self) -> str:
        """``local``, ``upstream:<name>`` or ``mirror:<name>`` (also the stored form)."""
        return "local" if self.kind is OriginKind.LOCAL else f"{self.kind.value}:{self.peer}"

    @classmethod
    def from_label(cls, label: str, fetched_at: datetime | None = None) -> Origin:
        kind, _, peer = label.partition(":")
        return cls(OriginKind(kind), peer, fetched_at)


LOCAL = Origin()


@dataclass(frozen=True)
class StoredUserID:
    uid: str
    email: Email | None
    created: datetime
    revoked: bool
    attested_by: AttestedBy | None
    attested_at: datetime | None
    raw: bytes = field(default=b"", repr=False)  # the exact packet body (HKP index escaping)

    @property
    def published(self) -> bool:
        return self.attested_at is not None and not self.revoked


@dataclass(frozen=True)
class StoredCert:
    """A stored certificate as lookups see it: metadata and the precomputed armored forms."""

    id: int
    fingerprint: Fingerprint
    algorithm: int  # RFC 9580 public-key algorithm id (HKP index)
    algorithm_name: str
    bits: int
    created: datetime
    expires: datetime | None
    revoked: bool
    armored_identity_free: str
    armored_published: str | None
    digest: str
    source: str
    updated: datetime
    # Where the identities served come from; a peer's results carry that peer's copy in
    # ``armored_published`` (set by the core, never stored as attested).
    origin: Origin = LOCAL

    @property
    def armored(self) -> str:
        """What a fingerprint / key-id lookup serves: the attested identities when there are
        any, else the identity-free form (keys.openpgp.org behaves the same)."""
        return self.armored_published or self.armored_identity_free


@dataclass(frozen=True)
class MergeOutcome:
    result: ImportResult
    cert_id: int
    cert: ParsedCert


_CERT_COLUMNS = (
    certs.c.id,
    certs.c.fingerprint,
    certs.c.algorithm,
    certs.c.algorithm_name,
    certs.c.bits,
    certs.c.created,
    certs.c.expires,
    certs.c.revoked,
    certs.c.armored_identity_free,
    certs.c.armored_published,
    certs.c.digest,
    certs.c.source,
    certs.c.updated,
)


def _stored(row: Row[Any]) -> StoredCert:
    m = row._mapping
    return StoredCert(
        id=m["id"],
        fingerprint=Fingerprint(m["fingerprint"]),
        algorithm=m["algorithm"],
        algorithm_name=m["algorithm_name"],
        bits=m["bits"],
        created=m["created"],
        expires=m["expires"],
        revoked=m["revoked"],
        armored_identity_free=m["armored_identity_free"],
        armored_published=m["armored_published"],
        digest=m["digest"],
        source=m["source"],
        updated=m["updated"],
    )


def _stored_uid(r: Row[Any]) -> StoredUserID:
    return StoredUserID(
        uid=r.uid,
        email=Email(r.email) if r.email else None,
        created=r.created,
        revoked=r.revoked,
        attested_by=AttestedBy(r.attested_by) if r.attested_by else None,
        attested_at=r.attested_at,
        raw=bytes(r.uid_raw),
    )


def _like_escape(s: str) -> str:
    return s.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def uid_hash(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


class KeyStore:
    def __init__(self, db: Database, limits: Limits) -> None:
        self.db = db
        self.limits = limits

    # ---- reads: one indexed query each, no OpenPGP parsing
    def by_fingerprint(self, fpr: Fingerprint) -> StoredCert | None:
        """The certificate whose primary key or one of whose subkeys has this fingerprint."""
        q = (
            select(*_CERT_COLUMNS)
            .join(key_ids, key_ids.c.cert_id == certs.c.id)
            .where(key_ids.c.fingerprint == fpr.hex)
            .order_by(key_ids.c.is_primary.desc())
            .limit(1)
        )
        with self.db.reader.connect() as conn:
            row = conn.execute(q).first()
        return _stored(row) if row else None

    def by_key_id(self, kid: KeyID) -> list[StoredCert]:
        q = (
            select(*_CERT_COLUMNS)
            .join(key_ids, key_ids.c.cert_id == certs.c.id)
            .where(key_ids.c.key_id == kid.hex)
            .distinct()
            .order_by(certs.c.id)
        )
        with self.db.reader.connect() as conn:
            return [_stored(r) for r in conn.execute(q)]

    def by_email(self, email: Email) -> list[StoredCert]:
        """Certificates on which this address is attested, most recently attested first."""
        latest = (
            select(user_ids.c.cert_id, func.max(user_ids.c.attested_at).label("at"))
            .where(
                user_ids.c.email == email.address,
                user_ids.c.attested_at.is_not(None),
                user_ids.c.revoked.is_(False),
            )
            .group_by(user_ids.c.cert_id)
            .subquery()
        )
        q = (
            select(*_CERT_COLUMNS)
            .join(latest, latest.c.cert_id == certs.c.id)
            .where(certs.c.armored_published.is_not(None))
            .order_by(latest.c.at.desc(), certs.c.id.desc())
        )
        with self.db.reader.connect() as conn:
            return [_stored(r) for r in conn.execute(q)]

    def by_digest(self, digest: str) -> StoredCert | None:
        q = select(*_CERT_COLUMNS).where(certs.c.digest == digest.lower()).limit(1)
        with self.db.reader.connect() as conn:
            row = conn.execute(q).first()
        return _stored(row) if row else None

    def user_ids_of(self, cert_id: int) -> list[StoredUserID]:
        q = select(user_ids).where(user_ids.c.cert_id == cert_id).order_by(user_ids.c.id)
        with self.db.reader.connect() as conn:
            return [_stored_uid(r) for r in conn.execute(q)]

    def wkd(self, domain: str, hash_: str) -> list[bytes]:
        """WKD answers: per certificate, the binary form holding only the user IDs of the
        address whose local part hashes to ``hash_`` at ``domain``; newest attestation first."""
        # The domain condition belongs in both queries: one certificate may carry the same
        # local part at two domains (joe@a.example, joe@b.example), whose binaries differ.
        at_domain = user_ids.c.email.like(f"%@{_like_escape(domain)}", escape="\\")
        q = (
            select(user_ids.c.cert_id, func.max(user_ids.c.attested_at).label("at"))
            .where(
                user_ids.c.wkd_hash == hash_,
                at_domain,
                user_ids.c.wkd_binary.is_not(None),
            )
            .group_by(user_ids.c.cert_id)
            .subquery()
        )
        rows = select(user_ids.c.wkd_binary).join(q, q.c.cert_id == user_ids.c.cert_id).where(
            user_ids.c.wkd_hash == hash_, at_domain, user_ids.c.wkd_binary.is_not(None)
        ).order_by(q.c.at.desc(), user_ids.c.cert_id.desc())
        seen: list[bytes] = []
        with self.db.reader.connect() as conn:
            for r in conn.execute(rows):
                b = bytes(r[0])
                if b not in seen:
                    seen.append(b)
        return seen

    def search_text(self, words: Collection[str], limit: int) -> list[StoredCert]:
        """Certificates where every word occurs (case-insensitively) in a published user ID."""
        q = select(*_CERT_COLUMNS).where(certs.c.armored_published.is_not(None))
        for w in words:
            q = q.where(
                select(user_ids.c.id)
                .where(
                    user_ids.c.cert_id == certs.c.id,
                    user_ids.c.attested_at.is_not(None),
                    func.lower(user_ids.c.uid).like(f"%{_like_escape(w.lower())}%", escape="\\"),
                )
                .exists()
            )
        q = q.order_by(certs.c.id).limit(limit)
        with self.db.reader.connect() as conn:
            return [_stored(r) for r in conn.execute(q)]

    def published_user_ids(self, cert_ids: Collection[int]) -> dict[int, list[StoredUserID]]:
        """Published user IDs per certificate, for index listings (one query)."""
        out: dict[int, list[StoredUserID]] = {i: [] for i in cert_ids}
        if not cert_ids:
            return out
        q = (
            select(user_ids)
            .where(user_ids.c.cert_id.in_(list(cert_ids)), user_ids.c.attested_at.is_not(None))
            .order_by(user_ids.c.cert_id, user_ids.c.id)
        )
        with self.db.reader.connect() as conn:
            for r in conn.execute(q):
                out[r.cert_id].append(_stored_uid(r))
        return out

    def stats(self) -> dict[str, int]:
        with self.db.reader.connect() as conn:
            total = conn.execute(select(func.count()).select_from(certs)).scalar_one()
            published = conn.execute(
                select(func.count(func.distinct(user_ids.c.email))).where(
                    user_ids.c.attested_at.is_not(None)
                )
            ).scalar_one()
        return {"keys": int(total), "published_addresses": int(published)}

    def count(self) -> int:
        with self.db.reader.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(certs)).scalar_one())

    def stored_data(self, fpr: Fingerprint) -> bytes | None:
        """The full merged certificate (for exports and admin tools, not for lookups)."""
        with self.db.reader.connect() as conn:
            v = conn.execute(select(certs.c.data).where(certs.c.fingerprint == fpr.hex)).first()
        return bytes(v[0]) if v else None

    def data_by_digests(self, digests: Collection[str]) -> dict[str, bytes]:
        """Full merged certificates by SKS digest (HKP ``/pks/hashquery``, reconciliation
        peers): the exact stored bytes the digest was computed over."""
        wanted = sorted({d.lower() for d in digests})
        if not wanted:
            return {}
        q = select(certs.c.digest, certs.c.data).where(certs.c.digest.in_(wanted))
        with self.db.reader.connect() as conn:
            return {r.digest: bytes(r.data) for r in conn.execute(q)}

    # ---- writes
    @contextmanager
    def write(self) -> Iterator[WriteTx]:
        """One transaction; commits when the block ends, rolls back if it raises."""
        with self.db.writer.begin() as conn:
            tx = WriteTx(conn, self.limits)
            yield tx
            tx.recon.apply()  # the recon tree follows certs.digest, once per transaction


class WriteTx:
    def __init__(self, conn: Connection, limits: Limits) -> None:
        self.conn = conn
        self.limits = limits
        self._pg = conn.dialect.name == "postgresql"
        self.tokens = Tokens(conn)
        self.outbox = Outbox(conn)
        self.recon = ReconTx(conn)

    def _lock(self, fpr: Fingerprint) -> Row[Any] | None:
        q = select(certs.c.id, certs.c.data, certs.c.digest).where(certs.c.fingerprint == fpr.hex)
        if self._pg:
            # Row lock: concurrent merges into one certificate take turns. (SQLite already
            # holds the database write lock since BEGIN IMMEDIATE.)
            q = q.with_for_update()
        return self.conn.execute(q).first()

    def merge_cert(self, incoming: ParsedCert, source: str, now: datetime) -> MergeOutcome:
        """Merge ``incoming`` into the stored certificate with the same fingerprint, or store
        it. Steps: 1. lock (or create) the row; 2. merge in memory; 3. rewrite the row, its
        key ids and user IDs; 4. recompute what lookups serve."""
        fpr = incoming.fingerprint
        row = self._lock(fpr)
        if row is None:
            ins = (postgresql.insert if self._pg else sqlite.insert)(certs).values(
                **self._cert_values(incoming),
                source=source,
                first_seen=now,
                updated=now,
                armored_identity_free="",
                armored_published=None,
            )
            created = self.conn.execute(
                ins.on_conflict_do_nothing(index_elements=["fingerprint"]).returning(certs.c.id)
            ).first()
            if created is not None:
                cert_id = int(created[0])
                self.recon.change(added=incoming.digest)
                self._sync_components(cert_id, incoming)
                self.refresh_published(cert_id, incoming, now)
                return MergeOutcome(ImportResult.NEW, cert_id, incoming)
            row = self._lock(fpr)  # lost a race with another writer: merge into theirs
            assert row is not None
        cert_id, stored = int(row[0]), bytes(row[1])
        merged = merge(stored, incoming.data, self.limits)
        if merged.data == stored:
            return MergeOutcome(ImportResult.UNCHANGED, cert_id, merged)
        self.conn.execute(
            update(certs)
            .where(certs.c.id == cert_id)
            .values(**self._cert_values(merged), updated=now)
        )
        self.recon.change(removed=row[2], added=merged.digest)
        self._sync_components(cert_id, merged)
        self.refresh_published(cert_id, merged, now)
        return MergeOutcome(ImportResult.UPDATED, cert_id, merged)

    @staticmethod
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

    def _sync_components(self, cert_id: int, c: ParsedCert) -> None:
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
            r.uid_hash: r
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
                    update(user_ids).where(user_ids.c.id == existing[h].id).values(**values)
                )
            else:
                self.conn.execute(
                    insert(user_ids).values(cert_id=cert_id, uid_hash=h, uid_raw=u.raw, **values)
                )

    def refresh_published(self, cert_id: int, c: ParsedCert, now: datetime) -> None:
        """Re-derive what is published and precompute the armored forms.

        Invariants kept here, whoever changed the certificate: a revoked certificate
        publishes no address; a revoked user ID is not published; a new user ID whose
        address is already attested on this certificate is published with it (the owner
        proved the address, not one spelling of their name).
        """
        if c.revoked:
            self.conn.execute(
                update(user_ids)
                .where(user_ids.c.cert_id == cert_id)
                .values(attested_by=None, attested_at=None)
            )
        else:
            self.conn.execute(
                update(user_ids)
                .where(user_ids.c.cert_id == cert_id, user_ids.c.revoked.is_(True))
                .values(attested_by=None, attested_at=None)
            )
            rows = self.conn.execute(
                select(
                    user_ids.c.id, user_ids.c.email, user_ids.c.attested_by, user_ids.c.attested_at
                ).where(user_ids.c.cert_id == cert_id)
            ).all()
            attested = {r.email: r for r in rows if r.attested_at is not None and r.email}
            for r in rows:
                if r.attested_at is None and r.email in attested:
                    a = attested[r.email]
                    self.conn.execute(
                        update(user_ids)
                        .where(user_ids.c.id == r.id, user_ids.c.revoked.is_(False))
                        .values(attested_by=a.attested_by, attested_at=a.attested_at)
                    )
        published = self.conn.execute(
            select(user_ids.c.id, user_ids.c.uid_raw, user_ids.c.email).where(
                user_ids.c.cert_id == cert_id, user_ids.c.attested_at.is_not(None)
            )
        ).all()
        published_raw = {bytes(r.uid_raw) for r in published}
        by_email: dict[str, set[bytes]] = {}
        for r in published:
            if r.email:
                by_email.setdefault(r.email, set()).add(bytes(r.uid_raw))
        self.conn.execute(
            update(user_ids).where(user_ids.c.cert_id == cert_id).values(wkd_binary=None)
        )
        for r in published:
            if r.email:
                self.conn.execute(
                    update(user_ids)
                    .where(user_ids.c.id == r.id)
                    .values(wkd_binary=publishable(c, by_email[r.email]))
                )
        self.conn.execute(
            update(certs)
            .where(certs.c.id == cert_id)
            .values(
                armored_identity_free=armor(publishable(c, ())),
                armored_published=armor(publishable(c, published_raw)) if published_raw else None,
            )
        )
        self.refresh_origin_forms(cert_id, c)

    def refresh_origin_forms(self, cert_id: int, c: ParsedCert) -> None:
        """Recompute each peer's copy (``cert_origins.armored``: the user IDs that peer
        published) from the merged certificate, so a revocation learnt from any source
        reaches every copy. A revoked certificate keeps only its identity-free form."""
        origins = [
            int(r[0])
            for r in self.conn.execute(
                select(cert_origins.c.id).where(cert_origins.c.cert_id == cert_id)
            )
        ]
        if not origins:
            return
        valid = {} if c.revoked else {uid_hash(u.raw): u.raw for u in c.user_ids if not u.revoked}
        vouched: dict[int, set[bytes]] = {o: set() for o in origins}
        for r in self.conn.execute(
            select(origin_user_ids.c.origin_id, origin_user_ids.c.uid_hash).where(
                origin_user_ids.c.origin_id.in_(origins)
            )
        ):
            if r.uid_hash in valid:
                vouched[r.origin_id].add(valid[r.uid_hash])
        for origin_id, raws in vouched.items():
            self.conn.execute(
                update(cert_origins)
                .where(cert_origins.c.id == origin_id)
                .values(armored=armor(publishable(c, raws)))
            )

    def load(self, cert_id: int) -> ParsedCert:
        """Re-parse a stored certificate (write paths only: attestation changes)."""
        data = self.conn.execute(select(certs.c.data).where(certs.c.id == cert_id)).scalar_one()
        return parse_certificate(bytes(data), self.limits)

    def lock_cert(self, fpr: Fingerprint) -> tuple[int, ParsedCert] | None:
        row = self._lock(fpr)
        if row is None:
            return None
        return int(row[0]), parse_certificate(bytes(row[1]), self.limits)

    def attest(
        self,
        cert_id: int,
        cert: ParsedCert,
        emails: Collection[Email],
        by: AttestedBy,
        now: datetime,
    ) -> set[Email]:
        """Publish these addresses of the certificate (every valid, unrevoked user ID that
        carries one). Returns the addresses that had such a user ID."""
        if cert.revoked or not emails:
            return set()
        wanted = {e.address for e in emails}
        done = set()
        for u in cert.user_ids:
            if u.email is not None and u.email.address in wanted and not u.revoked:
                self.conn.execute(
                    update(user_ids)
                    .where(user_ids.c.cert_id == cert_id, user_ids.c.uid_hash == uid_hash(u.raw))
                    .values(attested_by=by.value, attested_at=now)
                )
                done.add(u.email)
        if done:
            self.refresh_published(cert_id, cert, now)
        return done

    def unpublish(self, cert_id: int, cert: ParsedCert, email: Email, now: datetime) -> bool:
        res = self.conn.execute(
            update(user_ids)
            .where(
                user_ids.c.cert_id == cert_id,
                user_ids.c.email == email.address,
                user_ids.c.attested_at.is_not(None),
            )
            .values(attested_by=None, attested_at=None)
        )
        if res.rowcount:
            self.refresh_published(cert_id, cert, now)
        return bool(res.rowcount)

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

    def cert_id(self, fpr: Fingerprint) -> int | None:
        v = self.conn.execute(select(certs.c.id).where(certs.c.fingerprint == fpr.hex)).first()
        return int(v[0]) if v else None

    def lock_address(self, email: Email) -> None:
        """Serialise decisions about one address (rate limits, the conflict rule) across
        concurrent transactions. SQLite's BEGIN IMMEDIATE already serialises everything."""
        if self._pg:
            self.conn.execute(
                text("SELECT pg_advisory_xact_lock(hashtext(:e))"), {"e": email.address}
            )

    def attested_certs(self, email: Email) -> list[tuple[int, Fingerprint]]:
        """Certificates on which the address is currently attested (for the conflict rule)."""
        rows = self.conn.execute(
            select(certs.c.id, certs.c.fingerprint)
            .distinct()
            .join(user_ids, user_ids.c.cert_id == certs.c.id)
            .where(and_(user_ids.c.email == email.address, user_ids.c.attested_at.is_not(None)))
        ).all()
        return [(int(r[0]), Fingerprint(r[1])) for r in rows]

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
