"""What is published, and what each published form holds: the rules every change of a
certificate or of an attestation goes through, whoever made it.

Invariants, kept by ``refresh`` after every change:

1. a revoked certificate publishes no address;
2. a revoked user ID is not published;
3. a user ID whose address is already attested on the same certificate is published with
   it (the owner proved the address, not one spelling of their name);
4. the forms lookups serve (identity-free, published, one WKD answer per address, and each
   peer's copy) are computed from the certificate as it now is, so a revocation learnt
   from any source reaches every form.

``publish`` adds the conflict rule: unless several keys per address are allowed, the newly
attested key replaces the previous one, and the address is told so by mail.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime

from attester.config import Settings
from attester.openpgp import Limits, ParsedCert, armor, parse_certificate, publishable
from attester.openpgp.types import Email
from attester.service.mails import Mails
from attester.store.views import AttestedBy, uid_hash
from attester.store.writes import UserIDRow, WriteTx


class Publication:
    def __init__(self, settings: Settings, mails: Mails) -> None:
        self.limits: Limits = settings.limits
        self.multiple_keys_per_address = settings.multiple_keys_per_address
        self.mails = mails

    def load(self, tx: WriteTx, cert_id: int) -> ParsedCert:
        """A stored certificate, parsed again (write paths only: attestation changes)."""
        return parse_certificate(tx.cert_data(cert_id), self.limits)

    @staticmethod
    def identity_free(cert: ParsedCert) -> str:
        """The form served for a certificate with nothing published (a new one)."""
        return armor(publishable(cert, ()))

    def refresh(self, tx: WriteTx, cert_id: int, cert: ParsedCert, now: datetime) -> None:
        """Apply invariants 1-4 to the stored certificate ``cert_id``, which is ``cert``."""
        rows = tx.user_id_rows(cert_id)
        dropped = [r.id for r in rows if r.attested_at and (cert.revoked or r.revoked)]
        tx.set_attested(dropped, None, None)
        rows = [_cleared(r) if r.id in dropped else r for r in rows]
        if not cert.revoked:
            attested = {r.email: r for r in rows if r.attested_at is not None and r.email}
            for r in rows:
                a = attested.get(r.email) if r.email else None
                if r.attested_at is None and a is not None and not r.revoked:
                    tx.set_attested([r.id], a.attested_by, a.attested_at)
                    rows = [_attested_as(x, a) if x.id == r.id else x for x in rows]
        published = [r for r in rows if r.attested_at is not None]
        by_email: dict[str, set[bytes]] = {}
        for r in published:
            if r.email:
                by_email.setdefault(r.email, set()).add(r.raw)
        wkd_forms = {e: publishable(cert, raws) for e, raws in by_email.items()}
        raws = {r.raw for r in published}
        tx.write_forms(
            cert_id,
            self.identity_free(cert),
            armor(publishable(cert, raws)) if raws else None,
            {r.id: wkd_forms[r.email] for r in published if r.email},
        )
        self.refresh_peer_forms(tx, cert_id, cert)

    def refresh_peer_forms(self, tx: WriteTx, cert_id: int, cert: ParsedCert) -> None:
        """Each peer's copy (the user IDs that peer published) from the certificate as it
        now is. A revoked certificate keeps only its identity-free form."""
        vouched = tx.origins.vouched(cert_id)
        if not vouched:
            return
        valid = (
            {} if cert.revoked else {uid_hash(u.raw): u.raw for u in cert.user_ids if not u.revoked}
        )
        for origin_id, hashes in vouched.items():
            raws = {valid[h] for h in hashes if h in valid}
            tx.origins.set_form(origin_id, armor(publishable(cert, raws)))

    def attest(
        self,
        tx: WriteTx,
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
        hashes: set[str] = set()
        done: set[Email] = set()
        for u in cert.user_ids:
            if u.email is not None and u.email.address in wanted and not u.revoked:
                hashes.add(uid_hash(u.raw))
                done.add(u.email)
        if done:
            tx.set_attested(
                [r.id for r in tx.user_id_rows(cert_id) if r.uid_hash in hashes], by, now
            )
            self.refresh(tx, cert_id, cert, now)
        return done

    def unpublish(
        self, tx: WriteTx, cert_id: int, cert: ParsedCert, email: Email, now: datetime
    ) -> bool:
        """Take the address off the certificate; False when it was not published."""
        ids = [
            r.id
            for r in tx.user_id_rows(cert_id)
            if r.email == email.address and r.attested_at is not None
        ]
        if ids:
            tx.set_attested(ids, None, None)
            self.refresh(tx, cert_id, cert, now)
        return bool(ids)

    def publish(
        self,
        tx: WriteTx,
        cert_id: int,
        cert: ParsedCert,
        emails: Collection[Email],
        by: AttestedBy,
        actor: str,
        now: datetime,
    ) -> set[Email]:
        """``attest`` with the conflict rule, audited: the address moves to this key, and a
        key that had it is told by mail that it was replaced."""
        for email in emails:
            tx.lock_address(email)
            if self.multiple_keys_per_address:
                continue
            for other_id, other_fpr in tx.attested_certs(email):
                if other_id == cert_id:
                    continue
                self.unpublish(tx, other_id, self.load(tx, other_id), email, now)
                self.mails.queue(
                    tx,
                    "replaced",
                    email,
                    {
                        "address": email,
                        "old_fingerprint": other_fpr.hex,
                        "new_fingerprint": cert.fingerprint.hex,
                        "link": self.mails.link("/manage"),
                    },
                    now,
                )
                tx.audit(
                    now, actor, "replaced", other_fpr, email, f"replaced by {cert.fingerprint}"
                )
        done = self.attest(tx, cert_id, cert, emails, by, now)
        for email in done:
            tx.audit(now, actor, "attest", cert.fingerprint, email, by.value)
        return done


def _cleared(r: UserIDRow) -> UserIDRow:
    return UserIDRow(r.id, r.uid_hash, r.raw, r.email, r.revoked, None, None)


def _attested_as(r: UserIDRow, a: UserIDRow) -> UserIDRow:
    return UserIDRow(r.id, r.uid_hash, r.raw, r.email, r.revoked, a.attested_by, a.attested_at)
