"""What the operator does, whichever way they reach the server: the admin API
(``attester.admin.api``) and ``attester admin`` on the database call exactly these.

    keys / key        list keys with filters; one key with its attestation history
    attest / unattest publish or withdraw an address as the operator (audited)
    resend            mail a verification link again, ignoring the rate window
    removals          remove from distribution and restore (``service.removals``)
    tokens            access tokens (``service.access``)
    audit             the audit log, filtered
    reload_policy     re-read the policy from the configuration file
    stats             what is stored and what is served

Every change is audited with its ``Actor`` in the same transaction.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from attester.openpgp.types import Email, Fingerprint
from attester.service._parsing import valid_emails
from attester.service.access import AccessTokens
from attester.service.core import Core
from attester.service.errors import BadRequest, NotFound
from attester.service.policy import Method, PolicyInvalid, PolicyReloadUnavailable
from attester.service.removals import Removals
from attester.service.verification import Verification
from attester.store.admin import AdminKey, AdminStore, KeyFilter
from attester.store.audit import Actor, AuditEntry, AuditFilter, AuditStore
from attester.store.removals import Removal, RemovalKind
from attester.store.views import AttestedBy
from attester.store.writes import WriteTx


@dataclass(frozen=True)
class KeyDetail:
    key: AdminKey
    removals: tuple[Removal, ...]  # removals in force that name the key or its addresses
    history: tuple[AuditEntry, ...]  # every audit entry about the key, oldest first

    def as_json(self) -> dict[str, Any]:
        return {
            **self.key.as_json(),
            "removals": [r.as_json() for r in self.removals],
            "history": [e.as_json() for e in self.history],
        }


class Administration:
    def __init__(self, core: Core, verification: Verification | None = None) -> None:
        self.core = core
        self.removals = Removals(core)
        self.tokens = AccessTokens(core)
        self.verification = verification or Verification(core)
        self._keys = AdminStore(core.db)
        self._audit = AuditStore(core.db)

    @property
    def page_size(self) -> int:
        return self.core.settings.admin_page_size

    def _limit(self, limit: int | None) -> int:
        if limit is None:
            return self.page_size
        if not 1 <= limit <= self.page_size:
            raise BadRequest(f"limit is between 1 and {self.page_size}.")
        return limit

    # ---- keys
    def keys(self, f: KeyFilter, *, after: int = 0, limit: int | None = None) -> list[AdminKey]:
        return self._keys.keys(f, after_id=after, limit=self._limit(limit))

    def key(self, fpr: Fingerprint) -> KeyDetail:
        found = self._keys.key(fpr)
        if found is None:
            raise NotFound(f"No key with fingerprint {fpr} is stored.")
        emails = {u.email for u in found.user_ids if u.email}
        named = [
            r
            for r in self.core.removals.all()
            if (r.kind is RemovalKind.FINGERPRINT and r.value == found.fingerprint.hex)
            or (r.kind is RemovalKind.EMAIL and r.value in emails)
            or (r.kind is RemovalKind.DOMAIN and any(e.endswith("@" + r.value) for e in emails))
        ]
        history = tuple(self._audit.all(AuditFilter(fingerprint=found.fingerprint)))
        return KeyDetail(found, tuple(named), history)

    def _locked(self, tx: WriteTx, fpr: Fingerprint) -> tuple[int, Any]:
        primary = tx.removals.primary_of(fpr) or fpr
        locked = self.core.ingest.lock(tx, primary)
        if locked is None:
            raise NotFound(f"No key with fingerprint {fpr} is stored.")
        return locked

    def attest(
        self, fpr: Fingerprint, email: Email, actor: Actor, reason: str | None = None
    ) -> bool:
        """Publish ``email`` on the key as the operator, under the policy, removals and
        the conflict rule. False when it was published there already."""
        now = self.core.clock()
        with self.core.store.write() as tx:
            cert_id, cert = self._locked(tx, fpr)
            if email not in valid_emails(cert):
                raise BadRequest(
                    f"The key {cert.fingerprint} has no valid, unrevoked user ID with {email}."
                )
            refused = self.core.publication.refusal(tx, cert.fingerprint, email, Method.OPERATOR)
            if refused is not None:
                raise refused
            if email in tx.published_emails(cert_id):
                return False
            done = self.core.publication.publish(
                tx, cert_id, cert, [email], AttestedBy.OPERATOR, actor, now, reason=reason
            )
        return bool(done)

    def unattest(
        self, fpr: Fingerprint, email: Email, actor: Actor, reason: str | None = None
    ) -> None:
        """Withdraw ``email`` from the key (it is no longer attested, whoever attested it)."""
        now = self.core.clock()
        with self.core.store.write() as tx:
            cert_id, cert = self._locked(tx, fpr)
            if not self.core.publication.unpublish(tx, cert_id, cert, email, now):
                raise NotFound(f"{email} is not attested on the key {cert.fingerprint}.")
            tx.audit(now, actor, "unattest", cert.fingerprint, email, reason=reason)

    def resend(self, fpr: Fingerprint, email: Email, actor: Actor) -> None:
        """Mail a fresh verification link for the address on this key now."""
        now = self.core.clock()
        with self.core.store.write() as tx:
            cert_id, cert = self._locked(tx, fpr)
            if email not in valid_emails(cert):
                raise BadRequest(
                    f"The key {cert.fingerprint} has no valid, unrevoked user ID with {email}."
                )
            if email in tx.published_emails(cert_id):
                raise BadRequest(f"{email} is published on the key already.")
            refused = self.core.publication.refusal(tx, cert.fingerprint, email, Method.EMAIL)
            if refused is not None:
                raise refused
            self.verification.send(tx, cert, email, now, force=True, actor=actor)

    # ---- the log, the policy, counts
    def audit(
        self, f: AuditFilter, *, after: int = 0, limit: int | None = None
    ) -> list[AuditEntry]:
        return self._audit.query(f, after_id=after, limit=self._limit(limit))

    def audit_all(self, f: AuditFilter) -> Iterator[AuditEntry]:
        return self._audit.all(f, page=self.page_size)

    def policy(self) -> dict[str, Any]:
        return self.core.policy.current.describe()

    def reload_policy(self, actor: Actor) -> dict[str, Any]:
        """Re-read the policy from the configuration. An invalid file is refused with the
        sentence naming the rule (``BadRequest``) and the policy in force stays."""
        now = self.core.clock()
        try:
            policy = self.core.policy.reload()
        except (PolicyInvalid, PolicyReloadUnavailable) as e:
            with self.core.store.write() as tx:
                tx.audit(now, actor, "policy-refused", detail=str(e))
            raise BadRequest(str(e)) from e
        described = policy.describe()
        with self.core.store.write() as tx:
            tx.audit(
                now,
                actor,
                "policy-reload",
                detail={
                    "rules": len(described["domains"]),
                    "modes": described["modes"],
                    "internal_networks": len(described["internal_networks"]),
                },
            )
        return described

    def stats(self) -> dict[str, Any]:
        return {"served": self.core.stats(), "stored": self._keys.counts()}
