"""Removal from distribution: the operator takes a key (by fingerprint), an address, or a
whole domain out of everything this server serves, with a reason, until the removal is
lifted (docs/enterprise.md).

What a removal means, everywhere:

- **Nothing removed is served.** No lookup by fingerprint, key id or address, no text
  search, WKD answer, HKP index, ``op=stats`` count, hashquery, export or page shows a
  removed key, or a removed address on any key. A key that only loses an address stays
  findable by fingerprint with its other identities.
- **A removal wins** over uploads (a removed key is refused), confirmation links, id
  tokens and operator imports (a removed address is not published), and over mirrors,
  dumps and upstream answers (what they bring in is stored but stays hidden). A lookup
  for something removed is not asked upstream either.
- **Lifting restores what was there**: attestations are never dropped by a removal, only
  hidden, so lifting it serves again exactly what is attested (and what changed since:
  revocations merged in the meantime stay).

How: a removal is a row of ``removals``; making or lifting one recomputes, in the same
transaction, the removal flags and served forms of every stored certificate it touches
(``Publication.refresh``, invariant 5), and every later write of a certificate does the
same. Lookups read the flags: one more condition on rows they read anyway. The commit
moves the database's change feed (``store.changes``), so kept lookup answers go with it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from attester.openpgp.errors import InvalidEmail, InvalidIdentifier
from attester.openpgp.types import Email, Fingerprint
from attester.service.core import Core
from attester.service.errors import BadRequest, NotFound
from attester.service.policy import normalise_pattern
from attester.store.audit import Actor
from attester.store.removals import Removal, RemovalKind
from attester.store.writes import WriteTx


@dataclass(frozen=True)
class Target:
    """What a removal names, normalised: a primary fingerprint (hex), an address, or a
    domain (lowercase, IDNA form)."""

    kind: RemovalKind
    value: str

    @classmethod
    def parse(
        cls,
        *,
        fingerprint: str | None = None,
        email: str | None = None,
        domain: str | None = None,
    ) -> Target:
        given = [
            (k, v)
            for k, v in (
                (RemovalKind.FINGERPRINT, fingerprint),
                (RemovalKind.EMAIL, email),
                (RemovalKind.DOMAIN, domain),
            )
            if v is not None and v.strip()
        ]
        if len(given) != 1:
            raise BadRequest("Name exactly one of a fingerprint, an email address or a domain.")
        kind, raw = given[0]
        try:
            if kind is RemovalKind.FINGERPRINT:
                return cls(kind, Fingerprint.parse(raw).hex)
            if kind is RemovalKind.EMAIL:
                return cls(kind, Email.parse(raw).address)
        except (InvalidIdentifier, InvalidEmail) as e:
            raise BadRequest(str(e)) from e
        try:
            value = normalise_pattern(raw)
        except ValueError as e:
            raise BadRequest(str(e)) from e
        if "*" in value:
            raise BadRequest(
                "A domain removal names one domain exactly; remove each subdomain on its own."
            )
        return cls(kind, value)

    def __str__(self) -> str:
        return f"{self.kind.value} {self.value}"

    def as_json(self) -> dict[str, str]:
        return {self.kind.value: self.value}


@dataclass(frozen=True)
class RemovalOutcome:
    removal: Removal
    certificates: int  # stored certificates whose served forms were recomputed
    changed: bool  # False: the removal was in force already (remove) — nothing done

    def as_json(self) -> dict[str, object]:
        return {
            "removal": self.removal.as_json(),
            "certificates": self.certificates,
            "changed": self.changed,
        }


class Removals:
    def __init__(self, core: Core) -> None:
        self.core = core

    def list(self) -> list[Removal]:
        return self.core.removals.all()

    def remove(self, target: Target, reason: str, actor: Actor) -> RemovalOutcome:
        """Remove ``target`` from distribution, at once and everywhere. Removing what is
        already removed changes nothing (the first reason stands)."""
        reason = self._reason(reason)
        now = self.core.clock()
        with self.core.store.write() as tx:
            target = self._primary(tx, target)
            if not tx.removals.add(target.kind, target.value, reason, actor, now):
                existing = tx.removals.get(target.kind, target.value)
                assert existing is not None
                return RemovalOutcome(existing, 0, False)
            count = self._recompute(tx, target)
            _audit(tx, now, actor, "remove", target, reason, {"certificates": count})
            removal = tx.removals.get(target.kind, target.value)
            assert removal is not None
        return RemovalOutcome(removal, count, True)

    def restore(self, target: Target, actor: Actor, reason: str | None = None) -> RemovalOutcome:
        """Lift the removal of ``target``: what is attested is served again."""
        reason = self._reason(reason) if reason and reason.strip() else None
        now = self.core.clock()
        with self.core.store.write() as tx:
            target = self._primary(tx, target)
            removal = tx.removals.delete(target.kind, target.value)
            if removal is None:
                raise NotFound(f"No removal of {target} is in force.")
            count = self._recompute(tx, target)
            detail = {"certificates": count, "removed_for": removal.reason}
            _audit(tx, now, actor, "restore", target, reason, detail)
        return RemovalOutcome(removal, count, True)

    def _reason(self, reason: str | None) -> str:
        text = " ".join((reason or "").split())
        if not text:
            raise BadRequest("A removal needs a reason (it is kept in the audit log).")
        limit = self.core.settings.admin_reason_max_chars
        if len(text) > limit:
            raise BadRequest(f"The reason is longer than {limit} characters.")
        return text

    @staticmethod
    def _primary(tx: WriteTx, target: Target) -> Target:
        """A subkey's fingerprint stands for its certificate: removals name primaries."""
        if target.kind is not RemovalKind.FINGERPRINT:
            return target
        primary = tx.removals.primary_of(Fingerprint(target.value))
        return Target(target.kind, primary.hex) if primary else target

    def _recompute(self, tx: WriteTx, target: Target) -> int:
        """Flags and served forms of every stored certificate the target touches, from
        the removals now in force."""
        now = self.core.clock()
        ids = tx.removals.cert_ids(target.kind, target.value)
        for cert_id in ids:
            cert = self.core.publication.load(tx, cert_id)
            self.core.publication.refresh(tx, cert_id, cert, now)
        return len(ids)


def _audit(
    tx: WriteTx,
    now: datetime,
    actor: Actor,
    action: str,
    target: Target,
    reason: str | None,
    detail: dict[str, object],
) -> None:
    kind, value = target.kind, target.value
    tx.audit(
        now,
        actor,
        action,
        fingerprint=Fingerprint(value) if kind is RemovalKind.FINGERPRINT else None,
        email=Email(value) if kind is RemovalKind.EMAIL else None,
        domain=value if kind is RemovalKind.DOMAIN else None,
        reason=reason,
        detail=detail,
    )
