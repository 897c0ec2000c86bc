"""One path for every key that comes from outside: uploads, operator imports, upstream
answers, pull mirrors, dumps (and reconciliation peers). Whatever the source, a
certificate is merged the same way and the publication rules run on the result, so a
revocation or a new subkey learnt anywhere reaches every form that is served.

``merge`` (local sources) steps:

1. lock the stored certificate with this fingerprint, or store it when there is none (a
   writer that loses the race to store it merges into the winner's row instead); a new
   certificate publishes nothing, so it is stored with its identity-free form and done;
2. merge in memory (``openpgp.merge``: nothing valid is lost, revocations stay);
3. store the result, its key ids and user IDs, unless nothing changed;
4. apply the publication rules (``Publication.refresh``).

``merge_many`` does this for a batch (imports, dumps, peers), storing the new
certificates of the batch together.

``from_peer`` is ``merge`` plus what a peer says: which user IDs it published, kept
beside the certificate and never as an attestation here (``store.origins``).
"""

from __future__ import annotations

import enum
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime

from attester.openpgp import CertificateError, Limits, ParsedCert, merge, parse_certificate
from attester.openpgp.types import Fingerprint
from attester.service.parsing import InProcess, Parser
from attester.service.publication import Publication
from attester.store.views import Origin, OriginKind
from attester.store.writes import LockedCert, WriteTx


class ImportResult(enum.Enum):
    NEW = "new"
    UPDATED = "updated"
    UNCHANGED = "unchanged"


@dataclass(frozen=True)
class Merged:
    result: ImportResult
    cert_id: int
    cert: ParsedCert  # the certificate as stored now


def vouched_user_ids(cert: ParsedCert) -> list[bytes]:
    """The user IDs a peer published with a certificate: every valid, unrevoked one it
    sent (a VKS server sends only those it verified)."""
    return [u.raw for u in cert.user_ids if not u.revoked]


class Ingest:
    def __init__(self, publication: Publication, limits: Limits) -> None:
        self.publication = publication
        self.limits = limits
        # Where merges are canonicalised: the app's worker processes (``Core.use_parser``).
        self.parsing: Parser = InProcess()

    def merge(self, tx: WriteTx, incoming: ParsedCert, source: str, now: datetime) -> Merged:
        """Merge ``incoming`` into the stored certificate with its fingerprint, or store
        it; ``source`` is recorded for a new certificate (``upload``, ``import``,
        ``upstream:<name>``...). Raises ``CertificateError`` when the merged certificate
        would exceed a limit (the stored one then stays as it is)."""
        [merged] = self.merge_many(tx, [incoming], source, now, raise_errors=True)
        assert isinstance(merged, Merged)
        return merged

    def merge_many(
        self,
        tx: WriteTx,
        incoming: Sequence[ParsedCert],
        source: str,
        now: datetime,
        *,
        raise_errors: bool = False,
    ) -> list[Merged | CertificateError]:
        """``merge`` for a batch, with one result per certificate in order: what was
        merged, or the ``CertificateError`` that kept it out (raised instead with
        ``raise_errors``). Certificates not stored yet are written together, a few
        statements for the whole batch (step 3 without step 2; nothing about a new
        certificate is published, so its only form is the identity-free one, unless a
        removal names it)."""
        locked = tx.lock_many([c.fingerprint for c in incoming])
        fresh: dict[str, ParsedCert] = {}
        for c in incoming:
            if c.fingerprint.hex not in locked:
                fresh.setdefault(c.fingerprint.hex, c)
        created = tx.insert_certs(
            [(c, self.publication.identity_free(c)) for c in fresh.values()], source, now
        )
        if created and tx.removals.exist():
            # A removal may name a new key or its addresses: the rules decide its flags.
            for fpr, cert_id in created.items():
                self.publication.refresh(tx, cert_id, fresh[fpr], now)
        out: list[Merged | CertificateError] = []
        for c in incoming:
            fpr = c.fingerprint.hex
            if fpr in created and fresh[fpr] is c:
                out.append(Merged(ImportResult.NEW, created[fpr], c))
                continue
            # Stored before, stored by a racing writer, or a second copy in this batch.
            row = locked.get(fpr) or tx.lock(c.fingerprint)
            assert row is not None
            try:
                out.append(self._merge_into(tx, row, c, now))
            except CertificateError as e:
                if raise_errors:
                    raise
                out.append(e)
        return out

    def _merge_into(
        self, tx: WriteTx, row: LockedCert, incoming: ParsedCert, now: datetime
    ) -> Merged:
        merged = self.parsing.call(merge, row.data, incoming.data, self.limits)
        if merged.data == row.data:
            return Merged(ImportResult.UNCHANGED, row.id, merged)
        tx.update_cert(row, merged, now)
        self.publication.refresh(tx, row.id, merged, now)
        return Merged(ImportResult.UPDATED, row.id, merged)

    def from_peer(
        self,
        tx: WriteTx,
        cert: ParsedCert,
        origin: Origin,
        vouched: Collection[bytes],
        now: datetime,
        *,
        digest: str | None = None,
    ) -> Merged:
        """A certificate a peer supplied: merged as any other, then what the peer vouches
        for (``vouched``: raw user IDs it published) replaces what it said before.
        ``digest`` is the SKS digest of what the peer sent, when it differs from the
        cleaned certificate's (a dump reread after an interruption skips it)."""
        assert origin.kind is not OriginKind.LOCAL
        merged = self.merge(tx, cert, origin.label, now)
        tx.origins.record(merged.cert_id, merged.cert, origin, vouched, digest or cert.digest, now)
        self.publication.refresh_peer_forms(tx, merged.cert_id, merged.cert)
        return merged

    def from_peer_many(
        self,
        tx: WriteTx,
        items: Sequence[tuple[ParsedCert, Collection[bytes], str]],
        origin: Origin,
        now: datetime,
    ) -> list[Merged | CertificateError]:
        """``from_peer`` for a batch of (certificate, vouched user IDs, digest the peer
        sent), one result per item in order, as ``merge_many``."""
        assert origin.kind is not OriginKind.LOCAL
        results = self.merge_many(tx, [c for c, _, _ in items], origin.label, now)
        done = [
            (merged, vouched, digest)
            for (_, vouched, digest), merged in zip(items, results, strict=True)
            if isinstance(merged, Merged)
        ]
        tx.origins.record_many(
            [(m.cert_id, m.cert, vouched, digest) for m, vouched, digest in done], origin, now
        )
        for merged, _, _ in done:
            self.publication.refresh_peer_forms(tx, merged.cert_id, merged.cert)
        return results

    def withdraw(self, tx: WriteTx, fpr: Fingerprint, peer: str, now: datetime) -> bool:
        """The peer no longer serves this certificate, so it vouches for none of its
        addresses any more (the certificate stays, served identity-free)."""
        cert_id = tx.cert_id(fpr)
        if cert_id is None or not tx.origins.withdraw(cert_id, peer, now):
            return False
        self.publication.refresh_peer_forms(tx, cert_id, self.publication.load(tx, cert_id))
        return True

    def lock(self, tx: WriteTx, fpr: Fingerprint) -> tuple[int, ParsedCert] | None:
        """The stored certificate with this fingerprint, locked and parsed."""
        row = tx.lock(fpr)
        if row is None:
            return None
        return row.id, parse_certificate(row.data, self.limits)
