"""Single-use tokens for links in mails. Only the SHA-256 of a token is stored, so reading
the database does not give anyone working links; each token carries its purpose, so a
management link cannot verify an address or the other way round."""

from __future__ import annotations

import enum
import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection, func, insert, select, update

from attester.openpgp.types import Email, Fingerprint
from attester.store.schema import tokens


class Purpose(enum.StrEnum):
    VERIFY = "verify"
    MANAGE = "manage"
    UPLOAD = "upload"


class TokenState(enum.Enum):
    VALID = "valid"
    USED = "used"
    EXPIRED = "expired"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class TokenInfo:
    state: TokenState
    purpose: Purpose | None = None
    fingerprint: Fingerprint | None = None
    email: Email | None = None
    expires: datetime | None = None
    used_at: datetime | None = None


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()


class Tokens:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def issue(
        self,
        purpose: Purpose,
        fingerprint: Fingerprint,
        email: Email | None,
        now: datetime,
        ttl: timedelta,
        expires: datetime | None = None,
    ) -> str:
        """A new token (192 random bits, URL-safe). ``expires`` overrides ``now + ttl`` when a
        token replaces another without extending its life (management links)."""
        token = secrets.token_urlsafe(24)
        self.conn.execute(
            insert(tokens).values(
                token_hash=_hash(token),
                purpose=purpose.value,
                fingerprint=fingerprint.hex,
                email=email.address if email else None,
                created=now,
                expires=expires or now + ttl,
            )
        )
        return token

    def inspect(self, token: str, purpose: Purpose, now: datetime) -> TokenInfo:
        row = self.conn.execute(
            select(tokens).where(
                tokens.c.token_hash == _hash(token), tokens.c.purpose == purpose.value
            )
        ).first()
        if row is None:
            return TokenInfo(TokenState.UNKNOWN)
        if row.used_at is not None:
            state = TokenState.USED
        elif row.expires <= now:
            state = TokenState.EXPIRED
        else:
            state = TokenState.VALID
        return TokenInfo(
            state,
            Purpose(row.purpose),
            Fingerprint(row.fingerprint),
            Email(row.email) if row.email else None,
            row.expires,
            row.used_at,
        )

    def outstanding(
        self, purpose: Purpose, fingerprint: Fingerprint, email: Email, now: datetime
    ) -> bool:
        """An unused, unexpired token of this purpose exists for the key and address."""
        row = self.conn.execute(
            select(tokens.c.id)
            .where(
                tokens.c.purpose == purpose.value,
                tokens.c.fingerprint == fingerprint.hex,
                tokens.c.email == email.address,
                tokens.c.used_at.is_(None),
                tokens.c.expires > now,
            )
            .limit(1)
        ).first()
        return row is not None

    def issued_since(
        self, purpose: Purpose, fingerprint: Fingerprint, email: Email | None, since: datetime
    ) -> int:
        """Tokens of this purpose issued for the key (and address, unless None) since
        ``since`` and not used: what the mail limits per key and per (address, key) count."""
        q = (
            select(func.count())
            .select_from(tokens)
            .where(
                tokens.c.purpose == purpose.value,
                tokens.c.fingerprint == fingerprint.hex,
                tokens.c.created > since,
            )
        )
        if email is not None:
            q = q.where(tokens.c.email == email.address, tokens.c.used_at.is_(None))
        return int(self.conn.execute(q).scalar_one())

    def use(self, token: str, purpose: Purpose, now: datetime) -> TokenInfo:
        """Consume a token: exactly one caller gets VALID, even when two race (the UPDATE's
        condition is the check)."""
        info = self.inspect(token, purpose, now)
        if info.state is not TokenState.VALID:
            return info
        res = self.conn.execute(
            update(tokens)
            .where(tokens.c.token_hash == _hash(token), tokens.c.used_at.is_(None))
            .values(used_at=now)
        )
        if res.rowcount != 1:
            return TokenInfo(
                TokenState.USED, info.purpose, info.fingerprint, info.email, info.expires, now
            )
        return info
