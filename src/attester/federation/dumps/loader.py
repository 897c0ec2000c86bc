"""Loading dumps into the store (``attester import``), in batches:

1. Read the next batch of certificates (``DumpReader``).
2. Skip those whose SKS digest is already stored, or is what the same peer sent last
   time (a rerun after an interruption skips everything it had finished, without
   parsing it).
3. Parse each remaining certificate on its own bytes and merge the batch in one
   transaction through the one ingest path: plain (source ``import``), or as a mirror of
   a named peer (``Ingest.from_peer``: the peer's user IDs recorded as vouched for, never
   attested). ``attest_emails`` is the operator's directory import and goes through
   ``Imports`` (its conflict rule applies).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import IO

from attester.federation.dumps.reader import DumpCert, DumpReader
from attester.federation.errors import DumpUnreadable
from attester.openpgp import CertificateError, ParsedCert, Rejected, parse_keyring
from attester.service.core import Core
from attester.service.errors import ServiceError
from attester.service.imports import Imports, ImportSummary
from attester.service.ingest import vouched_user_ids
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
        batch_size: int = 500,
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
        batch: list[DumpCert] = []
        items = iter(reader)
        while True:
            try:
                item = next(items, None)
            except DumpUnreadable:
                self._batch(batch, summary)  # what came before the damage is good
                raise
            if item is not None and item.rejected is not None:
                summary.reject(item.rejected)
            elif item is not None:
                batch.append(item)
            if batch and (item is None or len(batch) >= self.batch_size):
                self._batch(batch, summary)
                if progress:
                    progress(len(batch), reader.position)
                batch = []
            if item is None:
                return summary

    def _batch(self, batch: list[DumpCert], summary: DumpSummary) -> None:
        if not batch:
            return
        if self.attest_emails:
            self._attest(batch, summary)
            return
        known = self.core.origins.known_digests([c.digest for c in batch])
        todo = [c for c in batch if c.digest not in known]
        summary.skipped += len(batch) - len(todo)
        summary.unchanged += len(batch) - len(todo)
        parsed: list[tuple[ParsedCert, str]] = []
        for c in todo:
            try:
                items = parse_keyring(c.data, self.limits)
            except CertificateError as e:
                summary.reject(str(e))
                continue
            for item in items:
                if isinstance(item, Rejected):
                    summary.reject(item.reason)
                else:
                    parsed.append((item, c.digest))
        if not parsed:
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

    def _attest(self, batch: list[DumpCert], summary: DumpSummary) -> None:
        """The directory import: ``Imports`` merges and attests (its conflict rule
        applies), in chunks it accepts as one keyring."""
        chunk: list[bytes] = []
        size = 0
        for c in [*batch, None]:
            if chunk and (c is None or size + len(c.data) > self.limits.max_input_bytes):
                try:
                    self.imports.keyring(
                        b"".join(chunk),
                        source="import",
                        attest_emails=True,
                        domains=self.domains,
                        summary=summary,
                        batch_size=len(chunk),
                    )
                except ServiceError as e:
                    summary.reject(e.message, len(chunk))
                chunk, size = [], 0
            if c is not None:
                chunk.append(c.data)
                size += len(c.data)
