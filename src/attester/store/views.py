"""What reads of the store return: plain values, built from rows, no OpenPGP parsing.

Lookups get ``StoredCert`` (metadata and the armored forms precomputed at write time) and
``StoredUserID``; ``Origin`` says whose word the identities of a served certificate rest
on. ``cert_columns`` and the ``*_from_row`` functions are how every query module builds
them, so a certificate looks the same whichever query found it.
"""

from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Row

from attester.openpgp.types import Email, Fingerprint
from attester.store.schema import certs


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


cert_columns = (
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


def cert_from_row(row: Row[Any]) -> StoredCert:
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


def user_id_from_row(r: Row[Any]) -> StoredUserID:
    return StoredUserID(
        uid=r.uid,
        email=Email(r.email) if r.email else None,
        created=r.created,
        revoked=r.revoked,
        attested_by=AttestedBy(r.attested_by) if r.attested_by else None,
        attested_at=r.attested_at,
        raw=bytes(r.uid_raw),
    )


def uid_hash(raw: bytes) -> str:
    """How the store names a user ID: the SHA-256 of its exact packet body."""
    return hashlib.sha256(raw).hexdigest()
