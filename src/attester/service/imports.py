"""The operator's keyring import (``attester import``; dumps with ``--attest-emails``):
every certificate merged through ``Ingest``, and with ``attest_emails`` the operator
vouching for its addresses (the enterprise directory path), under the operator's policy
(an address whose domain allows no operator attestation, or that is removed from
distribution, is counted as refused) and the conflict rule."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from attester.openpgp import CertificateError, ParsedCert, Rejected, parse_keyring
from attester.openpgp.types import Email
from attester.service.core import Core
from attester.service.errors import input_error
from attester.service.ingest import ImportResult
from attester.service.policy import Method
from attester.store.audit import Actor, ActorKind
from attester.store.views import AttestedBy

OPERATOR = Actor(ActorKind.IMPORT, "operator")


@dataclass
class ImportSummary:
    new: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0
    attested: int = 0  # addresses newly attested by the operator
    refused: int = 0  # addresses the policy or a removal kept from being attested
    reasons: Counter[str] = field(default_factory=Counter)

    @property
    def total(self) -> int:
        return self.new + self.updated + self.unchanged + self.rejected

    def count(self, result: ImportResult) -> None:
        setattr(self, result.value, getattr(self, result.value) + 1)

    def reject(self, reason: str, n: int = 1) -> None:
        self.rejected += n
        self.reasons[reason] += n


class Imports:
    def __init__(self, core: Core) -> None:
        self.core = core

    def keyring(
        self,
        data: bytes,
        *,
        source: str = "import",
        attest_emails: bool = False,
        domains: Iterable[str] | None = None,
        summary: ImportSummary | None = None,
        progress: Callable[[int, int], None] | None = None,
        batch_size: int = 200,
        actor: Actor = OPERATOR,
    ) -> ImportSummary:
        """Merge every certificate of a keyring into the store, ``batch_size`` per
        transaction. With ``attest_emails`` the operator vouches for the addresses (the
        enterprise directory path), optionally only those in ``domains``."""
        summary = summary or ImportSummary()
        try:
            items = self.core.parsing.call(parse_keyring, data, self.core.settings.limits)
        except CertificateError as e:
            raise input_error(e) from e
        for start in range(0, len(items), batch_size):
            batch = items[start : start + batch_size]
            for item in batch:
                if isinstance(item, Rejected):
                    summary.reject(item.reason)
            self.store(
                [c for c in batch if not isinstance(c, Rejected)],
                summary,
                source=source,
                attest_emails=attest_emails,
                domains=domains,
                actor=actor,
            )
            if progress:
                progress(len(batch), len(items))
        return summary

    def store(
        self,
        certs: list[ParsedCert],
        summary: ImportSummary,
        *,
        source: str = "import",
        attest_emails: bool = False,
        domains: Iterable[str] | None = None,
        actor: Actor = OPERATOR,
    ) -> None:
        """Merge parsed certificates in one transaction (and attest, as ``keyring``)."""
        if not certs:
            return
        allowed = {d.lower().strip() for d in domains} if domains else None
        now = self.core.clock()
        publication = self.core.publication
        with self.core.store.write() as tx:
            for merged in self.core.ingest.merge_many(tx, certs, source, now):
                if isinstance(merged, CertificateError):
                    summary.reject(str(merged))
                    continue
                summary.count(merged.result)
                if not attest_emails:
                    continue
                wanted = _emails_in(merged.cert, allowed)
                allowed_here = [
                    e
                    for e in wanted
                    if publication.refusal(tx, merged.cert.fingerprint, e, Method.OPERATOR) is None
                ]
                summary.refused += len(wanted) - len(allowed_here)
                done = publication.publish(
                    tx, merged.cert_id, merged.cert, allowed_here, AttestedBy.OPERATOR, actor, now
                )
                summary.attested += len(done)


def _emails_in(cert: ParsedCert, domains: set[str] | None) -> list[Email]:
    return [e for e in cert.emails if domains is None or e.domain in domains]
