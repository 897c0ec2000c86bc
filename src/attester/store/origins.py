"""Queries for federation (docs/federation.md): certificates that peers supplied, the
addresses those peers vouch for, the upstream lookup cache, and dump exports.

A peer's copy of a certificate lives beside the certificate, never inside its
attestation: ``cert_origins`` holds the armored form each peer's published user IDs give,
``origin_user_ids`` which user IDs those were. ``user_ids.attested_*`` is never touched
here, so nothing a peer says makes an address attested by this server.
"""

from __future__ import annotations

import enum
from collections.abc import Collection, Iterator
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy import Connection, and_, bindparam, delete, exists, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql.elements import BindParameter

from attester.openpgp import ParsedCert
from attester.openpgp.types import Email, Fingerprint
from attester.store.db import Database
from attester.store.schema import (
    cert_origins,
    certs,
    origin_user_ids,
    upstream_lookups,
    user_ids,
)
from attester.store.views import (
    Origin,
    OriginKind,
    StoredCert,
    StoredUserID,
    cert_columns,
    cert_from_row,
    uid_hash,
    user_id_from_row,
)


class ExportSelection(enum.StrEnum):
    ALL = "all"  # every stored certificate
    LOCAL = "local"  # certificates no peer supplied (uploaded or imported here)
    ATTESTED = "attested"  # certificates with at least one address attested here


class ExportedCert(NamedTuple):
    fingerprint: Fingerprint
    data: bytes  # the full stored certificate
    armored_published: str | None
    armored_identity_free: str
    removed_user_ids: tuple[bytes, ...] = ()  # raw user IDs a removal names: never written


@dataclass(frozen=True)
class PeerForm:
    armored: str
    origin: Origin


class OriginStore:
    """Reads: one or two indexed queries each, no OpenPGP parsing."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def by_email(self, email: Email) -> list[StoredCert]:
        """Certificates on which a peer published this address (by a valid, unrevoked user
        ID of an unrevoked certificate), each once, as that peer's copy: the most recently
        fetched peer first."""
        q = (
            select(
                *cert_columns,
                cert_origins.c.origin,
                cert_origins.c.fetched_at,
                cert_origins.c.armored.label("peer_armored"),
            )
            .select_from(origin_user_ids)
            .join(cert_origins, cert_origins.c.id == origin_user_ids.c.origin_id)
            .join(certs, certs.c.id == cert_origins.c.cert_id)
            .join(
                user_ids,
                and_(
                    user_ids.c.cert_id == certs.c.id,
                    user_ids.c.uid_hash == origin_user_ids.c.uid_hash,
                ),
            )
            .where(
                origin_user_ids.c.email == email.address,
                user_ids.c.revoked.is_(False),
                user_ids.c.removed.is_(False),
                certs.c.revoked.is_(False),
                certs.c.removed.is_(False),
            )
            .order_by(cert_origins.c.fetched_at.desc(), certs.c.id.desc())
        )
        out: dict[int, StoredCert] = {}
        with self.db.read() as conn:
            for r in conn.execute(q):
                if r.id not in out:
                    out[r.id] = _as_peer(r)
        return list(out.values())

    def forms(self, cert_ids: Collection[int]) -> dict[int, PeerForm]:
        """The most recently fetched peer copy of each of these certificates that has one."""
        if not cert_ids:
            return {}
        q = (
            select(
                cert_origins.c.cert_id,
                cert_origins.c.origin,
                cert_origins.c.fetched_at,
                cert_origins.c.armored,
            )
            .where(cert_origins.c.cert_id.in_(list(cert_ids)))
            .order_by(cert_origins.c.fetched_at.desc(), cert_origins.c.id.desc())
        )
        out: dict[int, PeerForm] = {}
        with self.db.read() as conn:
            for r in conn.execute(q):
                if r.cert_id not in out:
                    out[r.cert_id] = PeerForm(r.armored, Origin.from_label(r.origin, r.fetched_at))
        return out

    def user_ids(self, origins: dict[int, str]) -> dict[int, list[StoredUserID]]:
        """Per certificate id, the user IDs the named origin (``upstream:<name>``...)
        published, for index listings. They are not attested here, and say so."""
        out: dict[int, list[StoredUserID]] = {i: [] for i in origins}
        if not origins:
            return out
        q = (
            select(user_ids, cert_origins.c.origin)
            .join(cert_origins, cert_origins.c.cert_id == user_ids.c.cert_id)
            .join(
                origin_user_ids,
                and_(
                    origin_user_ids.c.origin_id == cert_origins.c.id,
                    origin_user_ids.c.uid_hash == user_ids.c.uid_hash,
                ),
            )
            .where(
                user_ids.c.cert_id.in_(list(origins)),
                user_ids.c.revoked.is_(False),
                user_ids.c.removed.is_(False),
            )
            .order_by(user_ids.c.cert_id, user_ids.c.id)
        )
        with self.db.read() as conn:
            for r in conn.execute(q):
                if origins.get(r.cert_id) == r.origin:
                    out[r.cert_id].append(user_id_from_row(r))
        return out

    def known_digests(self, digests: Collection[str]) -> set[str]:
        """Which of these SKS digests name a certificate stored exactly so, or exactly what
        a peer last sent us (a dump re-read after an interruption skips them)."""
        wanted = sorted(set(digests))
        if not wanted:
            return set()
        with self.db.read() as conn:
            a = conn.execute(select(certs.c.digest).where(certs.c.digest.in_(wanted)))
            b = conn.execute(select(cert_origins.c.digest).where(cert_origins.c.digest.in_(wanted)))
            return {r[0] for r in a} | {r[0] for r in b}

    def due_for_refresh(self, peer: str, before: datetime, limit: int) -> list[Fingerprint]:
        """Fingerprints this peer supplied that were last fetched before ``before``, the
        longest-waiting first (pull mirroring)."""
        q = (
            select(certs.c.fingerprint, func.min(cert_origins.c.fetched_at).label("at"))
            .join(cert_origins, cert_origins.c.cert_id == certs.c.id)
            .where(cert_origins.c.peer == peer, cert_origins.c.fetched_at < before)
            .group_by(certs.c.fingerprint)
            .order_by("at", certs.c.fingerprint)
            .limit(limit)
        )
        with self.db.read() as conn:
            return [Fingerprint(r[0]) for r in conn.execute(q)]

    def cached(self, query_hash: str, now: datetime) -> bool | None:
        """The standing upstream answer to a query: found or not, or None when upstreams
        were never asked or their answer expired."""
        q = select(upstream_lookups.c.found).where(
            upstream_lookups.c.query_hash == query_hash, upstream_lookups.c.expires_at > now
        )
        with self.db.read() as conn:
            v = conn.execute(q).first()
        return None if v is None else bool(v[0])

    def export(self, selection: ExportSelection, batch: int = 500) -> Iterator[ExportedCert]:
        """Every selected certificate that is not removed from distribution, in id order,
        with the user IDs a removal names (the writer leaves them out). Pages by id, so
        memory stays flat and a concurrent writer is never blocked for long."""
        last = 0
        where: list[Any] = [certs.c.removed.is_(False)]
        if selection is ExportSelection.LOCAL:
            where.append(~exists().where(cert_origins.c.cert_id == certs.c.id))
        elif selection is ExportSelection.ATTESTED:
            where.append(
                exists().where(
                    user_ids.c.cert_id == certs.c.id, user_ids.c.attested_at.is_not(None)
                )
            )
        while True:
            q = (
                select(
                    certs.c.id,
                    certs.c.fingerprint,
                    certs.c.data,
                    certs.c.armored_published,
                    certs.c.armored_identity_free,
                )
                .where(certs.c.id > last, *where)
                .order_by(certs.c.id)
                .limit(batch)
            )
            with self.db.read() as conn:
                rows = conn.execute(q).all()
                hidden: dict[int, list[bytes]] = {}
                if rows:
                    for h in conn.execute(
                        select(user_ids.c.cert_id, user_ids.c.uid_raw).where(
                            user_ids.c.cert_id.in_([r.id for r in rows]),
                            user_ids.c.removed.is_(True),
                        )
                    ):
                        hidden.setdefault(int(h.cert_id), []).append(bytes(h.uid_raw))
            if not rows:
                return
            for r in rows:
                yield ExportedCert(
                    Fingerprint(r.fingerprint),
                    bytes(r.data),
                    r.armored_published,
                    r.armored_identity_free,
                    tuple(hidden.get(int(r.id), ())),
                )
            last = int(rows[-1].id)


def _as_peer(r: Any) -> StoredCert:
    return replace(
        cert_from_row(r),
        armored_published=r.peer_armored,
        origin=Origin.from_label(r.origin, r.fetched_at),
    )


# Statements run for every certificate a peer supplies, built once: building and
# compiling them per call was most of the cost of storing a recon session's keys.
_ORIGIN_ROW: dict[str, BindParameter[Any]] = {
    c: bindparam(f"b_{c}")
    for c in ("cert_id", "origin", "peer", "digest", "first_seen", "fetched_at", "armored")
}
_INSERT_ORIGIN = {
    pg: (postgresql.insert if pg else sqlite.insert)(cert_origins)
    .values(_ORIGIN_ROW)
    .on_conflict_do_nothing(index_elements=["cert_id", "origin"])
    for pg in (False, True)
}
_ORIGIN_IDS = select(cert_origins.c.id).where(
    cert_origins.c.cert_id == bindparam("b_cert_id"), cert_origins.c.peer == bindparam("b_peer")
)
_IN_IDS: BindParameter[Any] = bindparam("b_ids", expanding=True)
_PEER_COPIES = select(cert_origins.c.id, cert_origins.c.cert_id).where(
    cert_origins.c.peer == bindparam("b_peer"), cert_origins.c.cert_id.in_(_IN_IDS)
)
_TOUCH_ORIGIN = (
    update(cert_origins)
    .where(cert_origins.c.id == bindparam("b_id"))
    .values(digest=bindparam("b_digest"), fetched_at=bindparam("b_now"))
)
_TOUCH_FETCHED = (
    update(cert_origins).where(cert_origins.c.id.in_(_IN_IDS)).values(fetched_at=bindparam("b_now"))
)
_FORGET_VOUCHED = delete(origin_user_ids).where(origin_user_ids.c.origin_id.in_(_IN_IDS))
_VOUCH = insert(origin_user_ids)
_COPIES = select(cert_origins.c.id).where(cert_origins.c.cert_id == bindparam("b_cert_id"))
_VOUCHED = select(origin_user_ids.c.origin_id, origin_user_ids.c.uid_hash).where(
    origin_user_ids.c.origin_id.in_(_IN_IDS)
)
_SET_FORM = (
    update(cert_origins)
    .where(cert_origins.c.id == bindparam("b_id"))
    .values(armored=bindparam("b_armored"))
)


class OriginTx:
    """Writes, inside a ``KeyStore.write()`` transaction (``WriteTx.origins``). Forms are
    written as the service computes them (``set_form``)."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self._pg = conn.dialect.name == "postgresql"

    def record(
        self,
        cert_id: int,
        merged: ParsedCert,
        origin: Origin,
        vouched: Collection[bytes],
        digest: str,
        now: datetime,
    ) -> None:
        """Remember that ``origin`` supplied this certificate and published these user IDs
        (raw packet bodies; invalid or revoked ones are recorded but never served). What
        the peer says replaces what it said before, under every label it has for the
        certificate (a key fetched on a miss and later pull-mirrored is one peer's word):
        a peer that stopped publishing an address no longer vouches for it."""
        self.record_many([(cert_id, merged, vouched, digest)], origin, now)

    def record_many(
        self,
        items: Collection[tuple[int, ParsedCert, Collection[bytes], str]],
        origin: Origin,
        now: datetime,
    ) -> None:
        """``record`` for many certificates of one peer (cert id, merged certificate,
        vouched user IDs, digest) in a few statements, whatever their number; of two
        items for one certificate the later one stands, as it would recorded in turn."""
        assert origin.kind is not OriginKind.LOCAL
        last = {cert_id: (merged, vouched, digest) for cert_id, merged, vouched, digest in items}
        if not last:
            return
        self.conn.execute(
            _INSERT_ORIGIN[self._pg],
            [
                {
                    "b_cert_id": cert_id,
                    "b_origin": origin.label,
                    "b_peer": origin.peer,
                    "b_digest": digest,
                    "b_first_seen": now,
                    "b_fetched_at": now,
                    "b_armored": "",
                }
                for cert_id, (_, _, digest) in last.items()
            ],
        )
        copies: dict[int, list[int]] = {}
        for chunk in _chunks(list(last), 500):
            for r in self.conn.execute(_PEER_COPIES, {"b_peer": origin.peer, "b_ids": chunk}):
                copies.setdefault(int(r.cert_id), []).append(int(r.id))
        ids = [i for found in copies.values() for i in found]
        if not ids:
            return  # (the insert above leaves at least one row per certificate)
        self.conn.execute(
            _TOUCH_ORIGIN,
            [
                {"b_id": i, "b_digest": last[cert_id][2], "b_now": now}
                for cert_id, found in copies.items()
                for i in found
            ],
        )
        for chunk in _chunks(ids, 500):
            self.conn.execute(_FORGET_VOUCHED, {"b_ids": chunk})
        rows = []
        for cert_id, found in copies.items():
            merged, vouched, _ = last[cert_id]
            emails = {u.raw: u.email for u in merged.user_ids}
            for raw in set(vouched):
                e = emails.get(raw)
                address = e.address if e else None
                for i in found:
                    rows.append({"origin_id": i, "uid_hash": uid_hash(raw), "email": address})
        if rows:
            self.conn.execute(_VOUCH, rows)

    def withdraw(self, cert_id: int, peer: str, now: datetime) -> bool:
        """The peer no longer serves this certificate: it vouches for none of its addresses
        any more (the certificate itself stays; it may be served identity-free). False when
        the peer never supplied it."""
        ids = self._ids(cert_id, peer)
        if not ids:
            return False
        self.conn.execute(_FORGET_VOUCHED, {"b_ids": ids})
        self.conn.execute(_TOUCH_FETCHED, {"b_ids": ids, "b_now": now})
        return True

    def _ids(self, cert_id: int, peer: str) -> list[int]:
        return [
            int(r[0])
            for r in self.conn.execute(_ORIGIN_IDS, {"b_cert_id": cert_id, "b_peer": peer})
        ]

    def vouched(self, cert_id: int) -> dict[int, set[str]]:
        """Per peer copy of this certificate (``cert_origins`` id), the hashes of the user
        IDs that peer published."""
        out: dict[int, set[str]] = {
            int(r[0]): set() for r in self.conn.execute(_COPIES, {"b_cert_id": cert_id})
        }
        if out:
            for r in self.conn.execute(_VOUCHED, {"b_ids": list(out)}):
                out[r.origin_id].add(r.uid_hash)
        return out

    def set_form(self, origin_id: int, armored: str) -> None:
        self.conn.execute(_SET_FORM, {"b_id": origin_id, "b_armored": armored})

    def remember_lookup(self, query_hash: str, found: bool, now: datetime, ttl: float) -> None:
        """Let an upstream answer stand for ``ttl`` seconds (and drop expired ones)."""
        self.conn.execute(delete(upstream_lookups).where(upstream_lookups.c.expires_at <= now))
        values = {"checked_at": now, "expires_at": now + timedelta(seconds=ttl), "found": found}
        ins = (postgresql.insert if self._pg else sqlite.insert)(upstream_lookups).values(
            query_hash=query_hash, **values
        )
        self.conn.execute(ins.on_conflict_do_update(index_elements=["query_hash"], set_=values))


def _chunks(values: list[int], size: int) -> Iterator[list[int]]:
    # Bounded IN lists: SQLite allows 32,766 bound parameters per statement.
    for start in range(0, len(values), size):
        yield values[start : start + size]
