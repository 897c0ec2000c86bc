"""Reads of certificates, user IDs and digests: one indexed query each, no OpenPGP
parsing (lookups serve what was precomputed when a certificate was written). Writes go
through ``KeyStore.write()``: one transaction whose ``WriteTx`` (``writes.py``) offers
the storage steps the service composes.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, case, func, select, text

from attester.openpgp.types import Email, Fingerprint, KeyID
from attester.store.changes import CHANNEL
from attester.store.db import Database
from attester.store.schema import certs, key_ids, user_ids
from attester.store.tokens import Purpose, TokenInfo, Tokens
from attester.store.views import (
    StoredCert,
    StoredUserID,
    cert_columns,
    cert_from_row,
    user_id_from_row,
)
from attester.store.writes import WriteTx


def _like_escape(s: str) -> str:
    return s.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


# The lookup queries, built once: SQLAlchemy then only binds parameters and finds the
# compiled statement in its cache, instead of building and hashing the construct each call
# (which cost lookups more than the database did).


def _by_key_statement(column: Any) -> Any:
    primary = func.max(case((key_ids.c.is_primary, 1), else_=0)).label("primary")
    match = (
        select(key_ids.c.cert_id, primary)
        .where(column == bindparam("value"))
        .group_by(key_ids.c.cert_id)
        .subquery()
    )
    return (
        select(*cert_columns, match.c.primary, certs.c.removed)
        .join(match, match.c.cert_id == certs.c.id)
        .order_by(match.c.primary.desc(), certs.c.armored_published.is_(None), certs.c.id)
    )


_BY_FINGERPRINT = _by_key_statement(key_ids.c.fingerprint)
_BY_KEY_ID = _by_key_statement(key_ids.c.key_id)

_LATEST = (
    select(user_ids.c.cert_id, func.max(user_ids.c.attested_at).label("at"))
    .where(
        user_ids.c.email == bindparam("email"),
        user_ids.c.attested_at.is_not(None),
        user_ids.c.revoked.is_(False),
        user_ids.c.removed.is_(False),
    )
    .group_by(user_ids.c.cert_id)
    .subquery()
)
_BY_EMAIL = (
    select(*cert_columns)
    .join(_LATEST, _LATEST.c.cert_id == certs.c.id)
    .where(certs.c.armored_published.is_not(None), certs.c.removed.is_(False))
    .order_by(_LATEST.c.at.desc(), certs.c.id.desc())
)
_BY_DIGEST = (
    select(*cert_columns)
    .where(certs.c.digest == bindparam("digest"), certs.c.removed.is_(False))
    .limit(1)
)

_PUBLISHED_USER_IDS = (
    select(user_ids)
    .where(
        user_ids.c.cert_id.in_(bindparam("ids", expanding=True)),
        user_ids.c.attested_at.is_not(None),
        user_ids.c.removed.is_(False),
    )
    .order_by(user_ids.c.cert_id, user_ids.c.id)
)


class KeyStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    # ---- reads: one indexed query each, no OpenPGP parsing
    def by_fingerprint(self, fpr: Fingerprint) -> list[StoredCert]:
        """The certificates with this primary key or subkey fingerprint (``_by_key``)."""
        return self._by_key(key_ids.c.fingerprint, fpr.hex)

    def by_key_id(self, kid: KeyID) -> list[StoredCert]:
        """The certificates with a primary key or subkey of this key id (``_by_key``)."""
        return self._by_key(key_ids.c.key_id, kid.hex)

    def _by_key(self, column: Any, value: str) -> list[StoredCert]:
        """A primary key match always wins, alone: anybody can bind someone else's key as
        a subkey of his own (an encryption subkey needs no back-signature), so a subkey
        match must never hide or join the real owner's certificate. Without one, every
        certificate with such a subkey, those with attested addresses first, then in the
        order they were stored: deterministic on every database."""
        q = _BY_FINGERPRINT if column is key_ids.c.fingerprint else _BY_KEY_ID
        with self.db.read() as conn:
            rows = conn.execute(q, {"value": value}).all()
        if rows and rows[0].primary:
            rows = [r for r in rows if r.primary]
        # Removed from distribution: dropped after the primary rule, so removing the real
        # owner's key never lets a certificate that merely binds its subkey answer instead.
        return [cert_from_row(r) for r in rows if not r.removed]

    def by_email(self, email: Email) -> list[StoredCert]:
        """Certificates on which this address is attested, most recently attested first."""
        with self.db.read() as conn:
            return [cert_from_row(r) for r in conn.execute(_BY_EMAIL, {"email": email.address})]

    def by_digest(self, digest: str) -> StoredCert | None:
        with self.db.read() as conn:
            row = conn.execute(_BY_DIGEST, {"digest": digest.lower()}).first()
        return cert_from_row(row) if row else None

    def user_ids_of(self, cert_id: int) -> list[StoredUserID]:
        q = select(user_ids).where(user_ids.c.cert_id == cert_id).order_by(user_ids.c.id)
        with self.db.read() as conn:
            return [user_id_from_row(r) for r in conn.execute(q)]

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
                user_ids.c.removed.is_(False),
            )
            .group_by(user_ids.c.cert_id)
            .subquery()
        )
        rows = (
            select(user_ids.c.wkd_binary)
            .join(q, q.c.cert_id == user_ids.c.cert_id)
            .where(user_ids.c.wkd_hash == hash_, at_domain, user_ids.c.wkd_binary.is_not(None))
            .order_by(q.c.at.desc(), user_ids.c.cert_id.desc())
        )
        seen: list[bytes] = []
        with self.db.read() as conn:
            for r in conn.execute(rows):
                b = bytes(r[0])
                if b not in seen:
                    seen.append(b)
        return seen

    def search_text(self, words: Collection[str], limit: int) -> list[StoredCert]:
        """Certificates where every word occurs (case-insensitively) in a published user ID."""
        q = select(*cert_columns).where(
            certs.c.armored_published.is_not(None), certs.c.removed.is_(False)
        )
        for w in words:
            q = q.where(
                select(user_ids.c.id)
                .where(
                    user_ids.c.cert_id == certs.c.id,
                    user_ids.c.attested_at.is_not(None),
                    user_ids.c.removed.is_(False),
                    func.lower(user_ids.c.uid).like(f"%{_like_escape(w.lower())}%", escape="\\"),
                )
                .exists()
            )
        q = q.order_by(certs.c.id).limit(limit)
        with self.db.read() as conn:
            return [cert_from_row(r) for r in conn.execute(q)]

    def published_user_ids(self, cert_ids: Collection[int]) -> dict[int, list[StoredUserID]]:
        """Published user IDs per certificate, for index listings (one query)."""
        out: dict[int, list[StoredUserID]] = {i: [] for i in cert_ids}
        if not cert_ids:
            return out
        with self.db.read() as conn:
            for r in conn.execute(_PUBLISHED_USER_IDS, {"ids": list(cert_ids)}):
                out[r.cert_id].append(user_id_from_row(r))
        return out

    def stats(self) -> dict[str, int]:
        """What is served: keys not removed, and the addresses published on them."""
        with self.db.read() as conn:
            total = conn.execute(
                select(func.count()).select_from(certs).where(certs.c.removed.is_(False))
            ).scalar_one()
            published = conn.execute(
                select(func.count(func.distinct(user_ids.c.email)))
                .join(certs, certs.c.id == user_ids.c.cert_id)
                .where(
                    user_ids.c.attested_at.is_not(None),
                    user_ids.c.revoked.is_(False),
                    user_ids.c.removed.is_(False),
                    certs.c.removed.is_(False),
                )
            ).scalar_one()
        return {"keys": int(total), "published_addresses": int(published)}

    def stored_data(self, fpr: Fingerprint) -> bytes | None:
        """The full merged certificate (for exports and admin tools, not for lookups)."""
        with self.db.read() as conn:
            v = conn.execute(select(certs.c.data).where(certs.c.fingerprint == fpr.hex)).first()
        return bytes(v[0]) if v else None

    def data_by_digests(self, digests: Collection[str]) -> dict[str, bytes]:
        """Full merged certificates by SKS digest (HKP ``/pks/hashquery``, reconciliation
        peers): the exact stored bytes the digest was computed over. A removed certificate,
        or one carrying a removed address, is left out as unknown digests are: its stored
        bytes hold what was removed."""
        wanted = sorted({d.lower() for d in digests})
        if not wanted:
            return {}
        q = select(certs.c.digest, certs.c.data).where(
            certs.c.digest.in_(wanted),
            certs.c.removed.is_(False),
            ~select(user_ids.c.id)
            .where(user_ids.c.cert_id == certs.c.id, user_ids.c.removed.is_(True))
            .exists(),
        )
        with self.db.read() as conn:
            return {r.digest: bytes(r.data) for r in conn.execute(q)}

    def emails_by_digest(self, digests: Collection[str]) -> dict[str, set[str]]:
        """Every address on the certificates with these digests, attested or not (what a
        full certificate carries)."""
        out: dict[str, set[str]] = {d: set() for d in digests}
        if not out:
            return out
        q = (
            select(certs.c.digest, user_ids.c.email)
            .join(user_ids, user_ids.c.cert_id == certs.c.id)
            .where(certs.c.digest.in_(list(out)), user_ids.c.email.is_not(None))
        )
        with self.db.read() as conn:
            for r in conn.execute(q):
                out.setdefault(r.digest, set()).add(r.email)
        return out

    def token(self, token: str, purpose: Purpose, now: datetime) -> TokenInfo:
        """What a token is, without using it up (pages that only show what a link does)."""
        with self.db.read() as conn:
            return Tokens(conn).inspect(token, purpose, now)

    def published_emails(self, fpr: Fingerprint) -> set[Email]:
        """The addresses attested on this certificate."""
        q = (
            select(user_ids.c.email)
            .distinct()
            .join(certs, certs.c.id == user_ids.c.cert_id)
            .where(
                certs.c.fingerprint == fpr.hex,
                user_ids.c.attested_at.is_not(None),
                user_ids.c.email.is_not(None),
                user_ids.c.removed.is_(False),
            )
        )
        with self.db.read() as conn:
            return {Email(r[0]) for r in conn.execute(q)}

    @contextmanager
    def write(self) -> Iterator[WriteTx]:
        """One transaction; commits when the block ends, rolls back if it raises."""
        with self.db.write() as conn:
            tx = WriteTx(conn)
            yield tx
            tx.recon.apply()  # the recon tree follows certs.digest, once per transaction
            if conn.dialect.name == "postgresql":
                # Delivered at commit to every process listening (store.changes).
                conn.execute(text(f"NOTIFY {CHANNEL}, '{self.db.changes.sender}'"))
        self.db.changes.bump()
