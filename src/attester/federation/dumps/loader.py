"""Loading dumps into the store (``attester import``), in batches:

1. Read the next batch of certificates (``DumpReader``).
2. Skip those whose SKS digest is already stored, or is what the same peer sent last
   time (a rerun after an interruption skips everything it had finished, without
   parsing it); not with ``attest_emails``, where a stored key may still have
   addresses to attest.
3. Parse each remaining certificate on its own bytes, in the core's parsing pool (a
   few batches ahead, on every core: ``Parser.map_batches``), and merge the batch in one
   transaction through the one ingest path: plain (source ``import``), or as a mirror of
   a named peer (``Ingest.from_peer``: the peer's user IDs recorded as vouched for, never
   attested). ``attest_emails`` is the operator's directory import and is stored by
   ``Imports.store`` (its policy and conflict rule apply).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO

from attester.federation.dumps.reader import DumpCert, DumpReader
from attester.federation.errors import DumpUnreadable
from attester.openpgp import CertificateError, Limits, ParsedCert, Rejected
from attester.service.core import Core
from attester.service.imports import OPERATOR, Imports, ImportSummary
from attester.service.ingest import vouched_user_ids
from attester.service.parsing import parse_each
from attester.store.audit import Actor
from attester.store.views import Origin, OriginKind


@dataclass
class DumpSummary(ImportSummary):
    skipped: int = 0  # already stored exactly so: not even parsed (counted in unchanged too)
    rejected_fingerprints: list[str] = field(default_factory=list)


ProgressFn = Callable[[int, int], None]  # (certificates done in this batch, file position)


class DumpImporter:
    """Load dumps into the store: plain (source ``import``), as a mirror of a named peer
    (source ``mirror:<name>``, the peer's user IDs recorded as vouched for), or with the
    operator attesting the addresses (``attest_emails``)."""

    def __init__(
        self,
        core: Core,
        *,
        mirror: str | None = None,
        attest_emails: bool = False,
        domains: Iterable[str] | None = None,
        batch_size: int = 100,
        actor: Actor = OPERATOR,
    ) -> None:
        if mirror and attest_emails:
            raise ValueError("mirrored keys are never attested")
        self.core = core
        self.imports = Imports(core)
        self.limits = core.settings.limits
        self.origin = Origin(OriginKind.MIRROR, mirror) if mirror else None
        self.attest_emails = attest_emails
        self.domains = list(domains) if domains else None
        self.batch_size = batch_size
        self.actor = actor

    def load(
        self,
        f: IO[bytes],
        summary: DumpSummary | None = None,
        progress: ProgressFn | None = None,
    ) -> DumpSummary:
        """Load one dump. A dump that turns out broken (truncated, not OpenPGP) raises
        ``DumpUnreadable`` after every certificate before the damage is stored."""
        summary = summary or DumpSummary()
        reader = DumpReader(f, self.limits)
        damage: list[DumpUnreadable] = []
        # Batches are parsed in the worker processes a few ahead of the one being
        # written here; memory holds only those few.
        work = self._to_parse(self._batches(reader, summary, damage), summary)
        for (batch, todo), parsed in self.core.parsing.map_batches(_parse_batch, work):
            self._store(todo, parsed, summary)
            if progress:
                progress(len(batch), reader.position)
        if damage:
            raise damage[0]  # after everything before the damage was stored
        return summary

    def _batches(
        self, reader: DumpReader, summary: DumpSummary, damage: list[DumpUnreadable]
    ) -> Iterator[list[DumpCert]]:
        batch: list[DumpCert] = []
        items = iter(reader)
        while True:
            try:
                item = next(items, None)
            except DumpUnreadable as e:
                damage.append(e)
                item = None  # what came before the damage is good
            if item is not None and item.rejected is not None:
                summary.reject(item.rejected)
            elif item is not None:
                batch.append(item)
            if batch and (item is None or len(batch) >= self.batch_size):
                yield batch
                batch = []
            if item is None:
                return

    def _to_parse(
        self, batches: Iterator[list[DumpCert]], summary: DumpSummary
    ) -> Iterator[tuple[tuple[list[DumpCert], list[DumpCert]], tuple[list[bytes], Limits]]]:
        """Each batch and those of its certificates not stored exactly so already, with
        what the workers parse of it."""
        for batch in batches:
            todo = batch
            if not self.attest_emails:
                # (A key stored exactly so may still have addresses to attest.)
                known = self.core.origins.known_digests([c.digest for c in batch])
                todo = [c for c in batch if c.digest not in known]
            summary.skipped += len(batch) - len(todo)
            summary.unchanged += len(batch) - len(todo)
            yield (batch, todo), ([c.data for c in todo], self.limits)

    def _store(
        self,
        todo: list[DumpCert],
        results_of_parse: list[list[ParsedCert | Rejected] | CertificateError],
        summary: DumpSummary,
    ) -> None:
        parsed: list[tuple[ParsedCert, str]] = []
        for c, items in zip(todo, results_of_parse, strict=True):
            if isinstance(items, CertificateError):
                summary.reject(str(items))
                continue
            for item in items:
                if isinstance(item, Rejected):
                    summary.reject(item.reason)
                else:
                    parsed.append((item, c.digest))
        if not parsed:
            return
        if self.attest_emails:
            self.imports.store(
                [c for c, _ in parsed],
                summary,
                attest_emails=True,
                domains=self.domains,
                actor=self.actor,
            )
            return
        now = self.core.clock()
        with self.core.store.write() as tx:
            if self.origin is None:
                results = self.core.ingest.merge_many(tx, [c for c, _ in parsed], "import", now)
            else:
                results = self.core.ingest.from_peer_many(
                    tx, [(c, vouched_user_ids(c), d) for c, d in parsed], self.origin, now
                )
        for merged in results:
            if isinstance(merged, CertificateError):
                # The merged certificate would exceed a limit; the stored one stays.
                summary.reject(str(merged))
            else:
                summary.count(merged.result)


def _parse_batch(
    work: tuple[list[bytes], Limits],
) -> list[list[ParsedCert | Rejected] | CertificateError]:
    return parse_each(*work)
