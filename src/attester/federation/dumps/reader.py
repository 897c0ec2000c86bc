"""Reading keyserver dumps as a stream: binary (SKS ``keydump-*.pgp``, Hockeypuck's
``hkp-dump-*.pgp``, ``gpg --export``), possibly gzip- or bzip2-compressed, or armored
keyrings one armor block at a time. Memory stays flat whatever the dump's size: one
certificate is held at a time, and a certificate over the upload limits is skipped while it
is read, never buffered."""

from __future__ import annotations

import bz2
import gzip
import io
from collections.abc import Iterable, Iterator
from typing import IO, BinaryIO, NamedTuple, cast

from attester.federation.errors import DumpUnreadable
from attester.openpgp import CertificateError, Limits
from attester.openpgp._packets import (
    PUBLIC_KEY,
    SECRET_KEY,
    Oversized,
    RawPacket,
    decode,
    encode_packets,
    read_packets,
    split_packets,
)
from attester.openpgp.digest import sks_digest
from attester.openpgp.errors import Unparsable

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
            packets: Iterable[RawPacket | Oversized] = self._binary_packets()
        else:
            packets = self._armored_packets()
        yield from self._certificates(packets)

    # ---- certificates from packets
    def _certificates(self, packets: Iterable[RawPacket | Oversized]) -> Iterator[DumpCert]:
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
            if isinstance(p, Oversized):
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

    # ---- binary framing: ``openpgp._packets`` frames the stream (one packet splitter)
    def _binary_packets(self) -> Iterator[RawPacket | Oversized]:
        try:
            yield from read_packets(cast(BinaryIO, self._stream), self.limits.max_packet_bytes)
        except Unparsable as e:
            raise DumpUnreadable(f"the dump is unreadable: {e}") from e

    # ---- armored keyrings, one block at a time
    def _armored_packets(self) -> Iterator[RawPacket | Oversized]:
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
                        yield Oversized(p.tag, len(p.body))
                    else:
                        yield p
        if block is not None:
            raise DumpUnreadable("an ASCII-armored block has no END line")
        if not seen:
            raise DumpUnreadable("the input is neither binary OpenPGP nor an ASCII-armored block")
