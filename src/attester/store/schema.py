"""The schema, in SQLAlchemy Core. Alembic migrations under ``migrations/`` create it; this
module is what queries are written against. One schema for SQLite and PostgreSQL.

Lookups are served from columns computed at write time (``armored_*``), so the request
path reads one row and never parses OpenPGP.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.types import TypeDecorator


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite keeps no zone: store naive UTC)."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; use timezone-aware UTC")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

certs = Table(
    "certs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("fingerprint", String(64), nullable=False, unique=True),
    Column("version", SmallInteger, nullable=False),
    Column("algorithm", SmallInteger, nullable=False),
    Column("algorithm_name", String(32), nullable=False),
    Column("bits", Integer, nullable=False),
    Column("created", UTCDateTime, nullable=False),
    Column("expires", UTCDateTime, nullable=True),
    Column("revoked", Boolean, nullable=False, default=False),
    # The full merged certificate as uploaded (canonical binary, third-party sigs included).
    Column("data", LargeBinary, nullable=False),
    # What lookups serve: cleaned, armored. identity_free has no user IDs; published holds
    # the attested ones and is NULL while nothing is attested.
    Column("armored_identity_free", Text, nullable=False),
    Column("armored_published", Text, nullable=True),
    Column("digest", String(32), nullable=False, index=True),  # SKS MD5 key digest
    Column("source", String(200), nullable=False),  # "upload", "import", "mirror:<name>"
    Column("first_seen", UTCDateTime, nullable=False),
    Column("updated", UTCDateTime, nullable=False),
)

key_ids = Table(
    "key_ids",
    metadata,
    Column("cert_id", Integer, ForeignKey("certs.id", ondelete="CASCADE"), nullable=False),
    Column("fingerprint", String(64), nullable=False, index=True),
    Column("key_id", String(16), nullable=False, index=True),
    Column("is_primary", Boolean, nullable=False),
    UniqueConstraint("cert_id", "fingerprint"),
)

user_ids = Table(
    "user_ids",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("cert_id", Integer, ForeignKey("certs.id", ondelete="CASCADE"), nullable=False),
    # sha256 of the raw packet body: a user ID can be large, and btree keys cannot.
    Column("uid_hash", String(64), nullable=False),
    Column("uid_raw", LargeBinary, nullable=False),
    Column("uid", Text, nullable=False),
    Column("email", String(254), nullable=True, index=True),
    Column("created", UTCDateTime, nullable=False),
    Column("revoked", Boolean, nullable=False, default=False),
    # Attestation: by what ("email", "oidc", "operator") and when; NULL = not published.
    Column("attested_by", String(16), nullable=True),
    Column("attested_at", UTCDateTime, nullable=True),
    # Web Key Directory: hash of the address's local part, and (while published) the binary
    # certificate holding only this address's user IDs, as WKD serves it.
    Column("wkd_hash", String(32), nullable=True, index=True),
    Column("wkd_binary", LargeBinary, nullable=True),
    UniqueConstraint("cert_id", "uid_hash"),
)

Index("ix_user_ids_email_attested", user_ids.c.email, user_ids.c.attested_at)

# Single-use tokens (verification, management, upload sessions). Only a hash of the token
# is stored: a leaked database does not leak working links.
tokens = Table(
    "tokens",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("purpose", String(16), nullable=False),  # "verify", "manage", "upload"
    Column("fingerprint", String(64), nullable=False, index=True),
    Column("email", String(254), nullable=True),
    Column("created", UTCDateTime, nullable=False),
    Column("expires", UTCDateTime, nullable=False),
    Column("used_at", UTCDateTime, nullable=True),
)

# Durable outbox: a mail is committed in the same transaction as the state that caused it.
outbox = Table(
    "outbox",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("send_id", String(64), nullable=False, unique=True),  # becomes the Message-ID
    Column("kind", String(16), nullable=False),
    Column("recipient", String(254), nullable=False),
    Column("subject", Text, nullable=False),
    Column("body_text", Text, nullable=False),
    Column("body_html", Text, nullable=False),
    Column("created", UTCDateTime, nullable=False),
    Column("next_attempt", UTCDateTime, nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("sent_at", UTCDateTime, nullable=True),
    Column("failed_at", UTCDateTime, nullable=True),  # gave up (permanent error / max attempts)
    Column("last_error", Text, nullable=True),
)
Index("ix_outbox_due", outbox.c.sent_at, outbox.c.failed_at, outbox.c.next_attempt)
Index("ix_outbox_recipient_kind", outbox.c.recipient, outbox.c.kind, outbox.c.created)

audit_log = Table(
    "audit_log",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", UTCDateTime, nullable=False, index=True),
    Column("actor", String(64), nullable=False),  # "operator", "email", "oidc:<iss>", "system"
    Column("action", String(32), nullable=False),
    Column("fingerprint", String(64), nullable=True, index=True),
    Column("email", String(254), nullable=True),
    Column("detail", Text, nullable=True),
)

# ---- federation (docs/federation.md)

# Where a certificate came from besides this server's own users: one row per certificate
# and peer ("upstream:<name>" when fetched on a local miss, "mirror:<name>" when imported
# from a dump or refreshed by pull mirroring). ``armored`` is what lookups serve for the
# peer: the certificate with only the user IDs the peer published (recomputed whenever the
# certificate changes). Nothing here ever sets ``user_ids.attested_*``.
cert_origins = Table(
    "cert_origins",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("cert_id", Integer, ForeignKey("certs.id", ondelete="CASCADE"), nullable=False),
    Column("origin", String(120), nullable=False),  # "upstream:<name>", "mirror:<name>"
    Column("peer", String(100), nullable=False),  # <name>, which pull mirroring refreshes
    Column("digest", String(32), nullable=False, index=True),  # of what the peer last sent
    Column("first_seen", UTCDateTime, nullable=False),
    Column("fetched_at", UTCDateTime, nullable=False),
    Column("armored", Text, nullable=False),
    UniqueConstraint("cert_id", "origin"),
)
Index("ix_cert_origins_peer_fetched", cert_origins.c.peer, cert_origins.c.fetched_at)

# The user IDs a peer published for a certificate: the addresses it vouches for. Email
# lookups fall back to these only while no address is attested here.
origin_user_ids = Table(
    "origin_user_ids",
    metadata,
    Column("origin_id", Integer, ForeignKey("cert_origins.id", ondelete="CASCADE"), nullable=False),
    Column("uid_hash", String(64), nullable=False),  # user_ids.uid_hash of the same user ID
    Column("email", String(254), nullable=True, index=True),
    UniqueConstraint("origin_id", "uid_hash"),
)

# When upstreams were last asked about a query, and until when that answer (found or not)
# stands. Keyed by a hash of the query: the cache does not keep the addresses people asked
# about in clear.
upstream_lookups = Table(
    "upstream_lookups",
    metadata,
    Column("query_hash", String(64), primary_key=True),
    Column("checked_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False, index=True),
    Column("found", Boolean, nullable=False),
)


# Installation-wide secrets made once and shared by every app server (e.g. the key that
# signs web form tokens), so nothing needs configuring and restarts keep them.
server_secrets = Table(
    "server_secrets",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("value", LargeBinary, nullable=False),
    Column("created", UTCDateTime, nullable=False),
)


# ---- SKS reconciliation (store/recon.py; docs/federation.md, "Reconciliation")

# The set reconciled with SKS and Hockeypuck peers: the SKS digest of every stored
# certificate, raw (16 bytes), so a prefix-tree node's elements are one key range.
recon_elements = Table(
    "recon_elements",
    metadata,
    Column("element", LargeBinary(16), primary_key=True),
)

# The prefix tree over ``recon_elements`` (bitquantum 2, mbar 5): per node, its element
# count and the 6 sample values (6 x 17 bytes, little-endian), and whether it is a leaf.
# ``prefix`` is the node's path in base-4 digits; "" is the root. Kept in step with
# ``certs.digest`` in the same transactions, so every app server sees one tree.
recon_nodes = Table(
    "recon_nodes",
    metadata,
    Column("prefix", String(64), primary_key=True),
    Column("size", Integer, nullable=False),
    Column("leaf", Boolean, nullable=False),
    Column("svalues", LargeBinary, nullable=False),
)
