"""Access tokens: who may use the admin API, and which clients outside the internal
networks may use protocols deployed in internal mode.

A token is 256 random bits, shown once when it is made (``attester admin token create``)
and stored as its SHA-256 only. Each has a unique name (what the audit log records) and
scopes:

    read     list and show keys, removals, stats, the audit log, the policy
    write    attest, unattest, remove, restore, resend verification mails
    policy   reload the policy
    access   use protocols deployed in internal mode from outside the internal networks

Tokens are made and revoked on the database itself (the CLI), never through the API: a
stolen admin token cannot mint itself a successor.
"""

from __future__ import annotations

import enum
import re
import secrets

from attester.service.core import Core
from attester.service.errors import BadRequest, Conflict, NotFound
from attester.store.access import AccessTokenStore, StoredToken
from attester.store.audit import Actor

PREFIX = "att_"  # tells our tokens apart from OIDC id tokens in an Authorization header
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")


class Scope(enum.StrEnum):
    READ = "read"
    WRITE = "write"
    POLICY = "policy"
    ACCESS = "access"


def parse_scopes(text: str) -> frozenset[Scope]:
    """``read,write`` → the scopes; an unknown or empty list is refused with a sentence."""
    names = [s.strip().lower() for s in text.replace(" ", ",").split(",") if s.strip()]
    if not names:
        raise BadRequest("Give at least one scope: read, write, policy, access.")
    out: set[Scope] = set()
    for n in names:
        try:
            out.add(Scope(n))
        except ValueError as e:
            raise BadRequest(
                f"{n!r} is no scope; scopes are read, write, policy and access."
            ) from e
    return frozenset(out)


def looks_like_token(value: str) -> bool:
    return value.startswith(PREFIX) and 20 <= len(value) <= 200


class AccessTokens:
    def __init__(self, core: Core) -> None:
        self.core = core
        self.store = AccessTokenStore(core.db)

    def create(self, name: str, scopes: frozenset[Scope], actor: Actor) -> str:
        """A new token; the only time it is ever seen."""
        if not _NAME.match(name):
            raise BadRequest(
                "A token name is 1 to 64 letters, digits, '.', '_', '@' and '-', starting "
                "with a letter or digit."
            )
        token = PREFIX + secrets.token_urlsafe(32)
        now = self.core.clock()
        with self.core.store.write() as tx:
            if tx.access.exists(name):
                raise Conflict(f"A token named {name!r} exists already; revoke it first.")
            tx.access.insert(name, token, frozenset(s.value for s in scopes), now, str(actor))
            tx.audit(
                now,
                actor,
                "token-create",
                detail={"token": name, "scopes": sorted(s.value for s in scopes)},
            )
        return token

    def revoke(self, name: str, actor: Actor) -> None:
        now = self.core.clock()
        with self.core.store.write() as tx:
            if not tx.access.delete(name):
                raise NotFound(f"No token is named {name!r}.")
            tx.audit(now, actor, "token-revoke", detail={"token": name})

    def list(self) -> list[StoredToken]:
        return self.store.all()

    def check(self, token: str) -> StoredToken | None:
        """The token's name and scopes, or None when it is no (longer a) valid token."""
        if not looks_like_token(token):
            return None
        return self.store.by_token(token)
