"""Keyserver dumps: read them as a stream, load them in batches, write them.

A dump is certificates concatenated in binary (SKS ``keydump-*.pgp``, Hockeypuck's
``hkp-dump-*.pgp``, ``gpg --export``), possibly gzip- or bzip2-compressed; armored
keyrings are read too, one armor block at a time. Memory stays flat whatever the dump's
size: only one certificate (and one batch of them) is held at a time, and a certificate
over the upload limits is skipped while it is read, never buffered.

Loading (``DumpImporter``):

1. Read the next batch of certificates; each is its packets from one primary key packet
   to the next, framed again canonically (``encode_packets``).
2. Skip those whose SKS digest is already stored, or is what the same peer sent last
   time (a rerun after an interruption skips everything it had finished, without
   parsing it).
3. Parse each remaining certificate on its own bytes, merge the batch in one
   transaction, and for a mirror record which user IDs the mirror published. Mirrored
   certificates are never attested; ``attest_emails`` is the operator's directory import
   and goes through the attestation service.
"""

from __future__ import annotations

import bz2
import gzip
import io
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, NamedTuple

from attester.federation.errors import DumpUnreadable
from attester.federation.upstream import vouched_user_ids
from attester.openpgp import CertificateError, Limits, ParsedCert, Rejected, parse_keyring
from attester.openpgp._packets import (
    PUBLIC_KEY,
    SECRET_KEY,
    RawPacket,
    decode,
    encode_packets,
    split_packets,
)
from attester.openpgp.digest import sks_digest
from attester.service.attestation import Attestation
from attester.service.core import Core, ImportSummary
from attester.service.errors import ServiceError
from attester.store.keys import Origin, OriginKind
from attester.store.origins import ExportSelection, OriginStore, OriginTx

_GZIP = b"\x1f\x8b"
_BZIP2 = b"BZh"
_CHUNK = 1 << 16


class DumpCert(NamedTuple):
    """One certificate as read from a dump: its bytes and SKS digest, or why it was
    refused while reading (then ``data`` is empty)."""

    data: bytes
    digest: str
    rejected: str | None = None


class _Counting(io.RawIOBase):
    """Counts the bytes read from the underlying (compressed) file, for progress."""

    def __init__(self, f: IO[bytes]) -> None:
        self.f = f
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, b: memoryview) -> int:  # type: ignore[override]
        data = self.f.read(len(b))
        n = len(data)
        b[:n] = data
        self.count += n
        return n


class DumpReader:
    """The certificates of one dump, in order. ``position`` is how many bytes of the file
    (compressed, if it is) have been read so far."""

    def __init__(self, f: IO[bytes], limits: Limits) -> None:
        self.limits = limits
        self._counter = _Counting(f)
        raw = io.BufferedReader(self._counter, _CHUNK)
        head = raw.peek(4)[:4]
        self._stream: io.BufferedReader[_Counting] | gzip.GzipFile | bz2.BZ2File = raw
        if head.startswith(_GZIP):
            self._stream = gzip.GzipFile(fileobj=raw, mode="rb")
        elif head.startswith(_BZIP2):
            self._stream = bz2.BZ2File(raw, mode="rb")
        self.dropped = 0  # packets that belong to no certificate (before the first key)

    @property
    def position(self) -> int:
        return self._counter.count

    def __iter__(self) -> Iterator[DumpCert]:
        first = self._stream.peek(1)[:1]
        if not first:
            return
        if first[0] & 0x80:
            packets: Iterable[RawPacket | _Oversized] = self._binary_packets()
        else:
            packets = self._armored_packets()
        yield from self._certificates(packets)

    # ---- certificates from packets
    def _certificates(self, packets: Iterable[RawPacket | _Oversized]) -> Iterator[DumpCert]:
        current: list[RawPacket] | None = None
        size = 0
        problem: str | None = None
        for p in packets:
            if p.tag in (PUBLIC_KEY, SECRET_KEY):
                if current is not None:
                    yield self._finish(current, problem)
                current, size, problem = [], 0, None
            elif current is None:
                self.dropped += 1
                continue
            assert current is not None
            if problem is not None:
                continue
            if isinstance(p, _Oversized):
                problem = (
                    f"a packet of {p.length} bytes exceeds the limit of "
                    f"{self.limits.max_packet_bytes} bytes per packet"
                )
                current.clear()
                continue
            size += len(p.body) + 6
            if size > self.limits.max_input_bytes:
                problem = (
                    f"the certificate is more than {self.limits.max_input_bytes} bytes; "
                    "larger ones are not accepted"
                )
                current.clear()
                continue
            current.append(p)
        if current is not None:
            yield self._finish(current, problem)

    @staticmethod
    def _finish(packets: list[RawPacket], problem: str | None) -> DumpCert:
        if problem is not None:
            return DumpCert(b"", "", problem)
        if packets[0].tag == SECRET_KEY:
            return DumpCert(b"", "", "a secret key; secret keys are never accepted")
        data = encode_packets(packets)
        return DumpCert(data, sks_digest(data))

    # ---- binary framing, read from the stream (RFC 9580 4.2)
    def _exact(self, n: int) -> bytes:
        data = self._stream.read(n)
        if len(data) != n:
            raise DumpUnreadable("the dump is truncated (its last packet ends early)")
        return data

    def _skip(self, n: int) -> None:
        while n > 0:
            n -= len(self._exact(min(n, _CHUNK)))

    def _binary_packets(self) -> Iterator[RawPacket | _Oversized]:
        """The streaming twin of ``_packets.split_packets``: packets one at a time, each
        body over ``max_packet_bytes`` skipped as it is read, never held."""
        limit = self.limits.max_packet_bytes
        while True:
            b = self._stream.read(1)
            if not b:
                return
            ctb = b[0]
            if not ctb & 0x80:
                raise DumpUnreadable(
                    f"byte {self.position} of the dump is not the start of an OpenPGP packet"
                )
            if ctb & 0x40:
                tag = ctb & 0x3F
                chunks: list[bytes] = []
                total = 0
                while True:
                    first = self._exact(1)[0]
                    partial = False
                    if first < 192:
                        n = first
                    elif first < 224:
                        n = ((first - 192) << 8) + self._exact(1)[0] + 192
                    elif first == 255:
                        n = int.from_bytes(self._exact(4), "big")
                    else:
                        n, partial = 1 << (first & 0x1F), True
                    total += n
                    if total > limit:
                        self._skip(n)
                        chunks = []
                    else:
                        chunks.append(self._exact(n))
                    if not partial:
                        break
                yield _Oversized(tag, total) if total > limit else RawPacket(tag, b"".join(chunks))
            else:
                tag = (ctb >> 2) & 0x0F
                ltype = ctb & 0x03
                if ltype == 3:
                    raise DumpUnreadable(
                        "the dump holds a packet of indeterminate length, which no "
                        "certificate packet may have"
                    )
                n = int.from_bytes(self._exact(1 << ltype), "big")
                if n > limit:
                    self._skip(n)
                    yield _Oversized(tag, n)
                else:
                    yield RawPacket(tag, self._exact(n))

    # ---- armored keyrings, one block at a time
    def _armored_packets(self) -> Iterator[RawPacket | _Oversized]:
        block: list[bytes] | None = None
        seen = False
        for line in self._stream:
            stripped = line.strip()
            if block is None:
                if stripped.startswith(b"-----BEGIN PGP "):
                    block = [line]
                continue
            block.append(line)
            if stripped.startswith(b"-----END PGP "):
                try:
                    packets = split_packets(decode(b"".join(block)))
                except CertificateError as e:
                    raise DumpUnreadable(str(e)) from e
                block, seen = None, True
                for p in packets:
                    if len(p.body) > self.limits.max_packet_bytes:
                        yield _Oversized(p.tag, len(p.body))
                    else:
                        yield p
        if block is not None:
            raise DumpUnreadable("an ASCII-armored block has no END line")
        if not seen:
            raise DumpUnreadable("the input is neither binary OpenPGP nor an ASCII-armored block")


class _Oversized(NamedTuple):
    tag: int
    length: int


# ---- loading


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
        attestation: Attestation,
        *,
        mirror: str | None = None,
        attest_emails: bool = False,
        domains: Iterable[str] | None = None,
        batch_size: int = 500,
    ) -> None:
        if mirror and attest_emails:
            raise ValueError("mirrored keys are never attested")
        self.attestation = attestation
        self.core: Core = attestation.core
        self.limits = self.core.settings.limits
        self.origins = OriginStore(self.core.db)
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
                summary.rejected += 1
                summary.reasons[item.rejected] += 1
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
        known = self.origins.known_digests([c.digest for c in batch])
        todo = [c for c in batch if c.digest not in known]
        summary.skipped += len(batch) - len(todo)
        summary.unchanged += len(batch) - len(todo)
        parsed: list[tuple[ParsedCert, str]] = []
        for c in todo:
            try:
                items = parse_keyring(c.data, self.limits)
            except CertificateError as e:
                summary.rejected += 1
                summary.reasons[str(e)] += 1
                continue
            for item in items:
                if isinstance(item, Rejected):
                    summary.rejected += 1
                    summary.reasons[item.reason] += 1
                else:
                    parsed.append((item, c.digest))
        if not parsed:
            return
        now = self.core.clock()
        source = self.origin.label if self.origin else "import"
        with self.core.store.write() as tx:
            origins = OriginTx(tx)
            for cert, digest in parsed:
                try:
                    outcome = tx.merge_cert(cert, source, now)
                except CertificateError as e:
                    # The merged certificate would exceed a limit; the stored one stays.
                    summary.rejected += 1
                    summary.reasons[str(e)] += 1
                    continue
                summary.count(outcome.result)
                if self.origin is not None:
                    origins.record(
                        outcome.cert_id,
                        outcome.cert,
                        self.origin,
                        vouched_user_ids(cert),
                        digest,
                        now,
                    )

    def _attest(self, batch: list[DumpCert], summary: DumpSummary) -> None:
        """The directory import: the attestation service merges and attests (its conflict
        rule applies), in chunks it accepts as one keyring."""
        chunk: list[bytes] = []
        size = 0
        for c in [*batch, None]:
            if chunk and (c is None or size + len(c.data) > self.limits.max_input_bytes):
                try:
                    self.attestation.import_keyring(
                        b"".join(chunk),
                        source="import",
                        attest_emails=True,
                        domains=self.domains,
                        summary=summary,
                        batch_size=len(chunk),
                    )
                except ServiceError as e:
                    summary.rejected += len(chunk)
                    summary.reasons[e.message] += len(chunk)
                chunk, size = [], 0
            if c is not None:
                chunk.append(c.data)
                size += len(c.data)


# ---- writing


@dataclass
class ExportSummary:
    files: list[Path] = field(default_factory=list)
    keys: int = 0


class _Shards:
    """Shard files written under a temporary name and renamed once complete, so an
    interrupted export never leaves a truncated file that looks finished."""

    def __init__(self, directory: Path, prefix: str, compress: bool) -> None:
        self.directory = directory
        self.prefix = prefix
        self.compress = compress
        self.files: list[Path] = []
        self._out: gzip.GzipFile | io.BufferedWriter | None = None
        self._raw: io.BufferedWriter | None = None
        self._tmp: Path | None = None
        self.count = 0  # keys in the open shard

    def write(self, data: bytes) -> None:
        if self._out is None:
            name = f"{self.prefix}{len(self.files):04d}.pgp" + (".gz" if self.compress else "")
            self._tmp = self.directory / (name + ".part")
            self._raw = self._tmp.open("wb")
            self._out = self._raw
            if self.compress:
                self._out = gzip.GzipFile(fileobj=self._raw, mode="wb", compresslevel=6)
            self.count = 0
        self._out.write(data)
        self.count += 1

    def finish(self) -> None:
        if self._out is None or self._tmp is None:
            return
        self._close()
        final = self._tmp.with_name(self._tmp.name.removesuffix(".part"))
        os.replace(self._tmp, final)
        self.files.append(final)
        self._out = self._tmp = None

    def _close(self) -> None:
        assert self._out is not None and self._raw is not None
        self._out.close()
        self._raw.close()  # GzipFile does not close a file object it was given

    def abandon(self) -> None:
        if self._out is not None and self._tmp is not None:
            self._close()
            self._tmp.unlink(missing_ok=True)
        self._out = self._tmp = None


def export_dump(
    origins: OriginStore,
    directory: Path,
    *,
    selection: ExportSelection = ExportSelection.ALL,
    published_only: bool = False,
    shard_size: int = 15000,
    prefix: str = "keydump-",
    compress: bool = False,
    progress: Callable[[int], None] | None = None,
) -> ExportSummary:
    """Write the selected certificates as binary dumps of ``shard_size`` keys each
    (``{prefix}0000.pgp``, ...), the format ``attester import`` and ``sks build`` read.

    By default each certificate is written whole, as stored (every user ID and
    third-party signature), so its SKS digest is the one this server reports. With
    ``published_only`` it is written as lookups serve it: only the user IDs attested here
    (identity-free when none is).
    """
    directory.mkdir(parents=True, exist_ok=True)
    shards = _Shards(directory, prefix, compress)
    keys = 0
    try:
        for cert in origins.export(selection):
            if published_only:
                armored = cert.armored_published or cert.armored_identity_free
                shards.write(decode(armored.encode()))
            else:
                shards.write(cert.data)
            keys += 1
            if progress:
                progress(1)
            if shards.count >= shard_size:
                shards.finish()
        shards.finish()
    finally:
        shards.abandon()
    return ExportSummary(shards.files, keys)
