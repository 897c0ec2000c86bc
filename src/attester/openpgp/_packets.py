"""Raw OpenPGP packet framing (RFC 9580 section 4) and ASCII armor decoding.

We walk the framing ourselves instead of asking pysequoia because we must see every packet
as it is on the wire: secret keys (to refuse the whole input), private and unknown tags
(which pysequoia's ``Packet.tag`` cannot even name), and sizes (to enforce limits before any
cryptography runs). Nothing here interprets packet bodies.
"""

from __future__ import annotations

import binascii
import re
from collections.abc import Iterator
from typing import BinaryIO, NamedTuple

from attester.openpgp.errors import Unparsable

# Tags (RFC 9580 5): the only ones a transferable public key is made of.
SIGNATURE = 2
SECRET_KEY = 5
PUBLIC_KEY = 6
SECRET_SUBKEY = 7
USER_ID = 13
PUBLIC_SUBKEY = 14
USER_ATTRIBUTE = 17

CERT_TAGS = frozenset({SIGNATURE, PUBLIC_KEY, USER_ID, PUBLIC_SUBKEY, USER_ATTRIBUTE})
SECRET_TAGS = frozenset({SECRET_KEY, SECRET_SUBKEY})


class RawPacket(NamedTuple):
    """One packet: its tag and its body, the header already stripped. A NamedTuple because a
    keyring holds hundreds of thousands of them and they are compared and sorted as tuples."""

    tag: int
    body: bytes

    def serialize(self) -> bytes:
        return encode_packet(self.tag, self.body)


def encode_packet(tag: int, body: bytes) -> bytes:
    """The packet in the OpenPGP (new) format with a definite length: the format RFC 9580
    asks generators to use, whatever format the packet arrived in."""
    n = len(body)
    if n < 192:
        header = bytes((0xC0 | tag, n))
    elif n < 8384:
        n -= 192
        header = bytes((0xC0 | tag, (n >> 8) + 192, n & 0xFF))
    else:
        header = bytes((0xC0 | tag, 0xFF)) + n.to_bytes(4, "big")
    return header + body


def encode_packets(packets: list[RawPacket]) -> bytes:
    return b"".join(encode_packet(t, b) for t, b in packets)


def _truncated(offset: int) -> Unparsable:
    return Unparsable(
        f"the OpenPGP data is truncated (a packet starting at byte {offset} ends early)"
    )


def _length_octets(first: int) -> int:
    """How many octets a new-format length takes, given its first octet (RFC 9580 4.2.1)."""
    return 1 if first < 192 or 224 <= first < 255 else 2 if first < 224 else 5


def _new_length(octets: bytes | memoryview, i: int) -> tuple[int, bool]:
    """The new-format length at ``octets[i]`` (all its octets present): the length and
    whether it is a partial body chunk (more chunks follow)."""
    first = octets[i]
    if first < 192:
        return first, False
    if first < 224:
        return ((first - 192) << 8) + octets[i + 1] + 192, False
    if first == 255:
        return int.from_bytes(octets[i + 1 : i + 5], "big"), False
    return 1 << (first & 0x1F), True


def _not_openpgp(offset: int) -> Unparsable:
    return Unparsable(
        f"byte {offset} is not the start of an OpenPGP packet; this is not OpenPGP data"
    )


def split_packets(data: bytes) -> list[RawPacket]:
    """Every top-level packet of ``data``, in order. Raises ``Unparsable`` on broken framing.

    Handles both header formats and partial body lengths; packets keep their tag whatever it
    is, so callers decide what to do with private (60-63) and unknown tags. ``read_packets``
    frames a stream the same way, with the same length decoding.
    """
    out: list[RawPacket] = []
    append = out.append
    i = 0
    n = len(data)
    while i < n:
        start = i
        ctb = data[i]
        if not ctb & 0x80:
            raise _not_openpgp(i)
        i += 1
        if ctb & 0x40:
            # OpenPGP (new) format: 6-bit tag, then lengths until one is not partial.
            tag = ctb & 0x3F
            chunks: list[bytes] = []
            while True:
                if i >= n or i + _length_octets(data[i]) > n:
                    raise _truncated(start)
                width = _length_octets(data[i])
                length, partial = _new_length(data, i)
                i += width
                if i + length > n:
                    raise _truncated(start)
                chunks.append(data[i : i + length])
                i += length
                if not partial:
                    break
            body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        else:
            # Legacy format: 4-bit tag, length type in the low two bits.
            tag = (ctb >> 2) & 0x0F
            ltype = ctb & 0x03
            if ltype == 3:
                # Indeterminate length: the packet runs to the end of the data.
                length = n - i
            else:
                width = 1 << ltype  # 1, 2 or 4 bytes
                if i + width > n:
                    raise _truncated(start)
                length = int.from_bytes(data[i : i + width], "big")
                i += width
            if i + length > n:
                raise _truncated(start)
            body = data[i : i + length]
            i += length
        append(RawPacket(tag, body))
    return out


class Oversized(NamedTuple):
    """A packet whose body was over the reader's limit: skipped while read, never held."""

    tag: int
    length: int


_CHUNK = 1 << 16


class _Stream:
    """Exact reads from a binary stream, counting the offset for error messages."""

    def __init__(self, stream: BinaryIO) -> None:
        self.read = stream.read
        self.offset = 0
        self.start = 0  # of the packet being read

    def take(self, n: int) -> bytes:
        data = self.read(n)
        if len(data) != n:
            raise _truncated(self.start)
        self.offset += n
        return data

    def skip(self, n: int) -> None:
        while n > 0:
            n -= len(self.take(min(n, _CHUNK)))


def read_packets(stream: BinaryIO, max_body: int) -> Iterator[RawPacket | Oversized]:
    """The packets of ``stream`` one at a time, framed as ``split_packets`` frames them; a
    body over ``max_body`` bytes is skipped while it is read and reported as ``Oversized``,
    so memory stays bounded however large a dump or a hostile packet is. Raises
    ``Unparsable`` on broken framing; an indeterminate-length packet, which no
    certificate packet may have, is broken framing here."""
    s = _Stream(stream)
    while True:
        head = s.read(1)
        if not head:
            return
        s.start = s.offset
        s.offset += 1
        ctb = head[0]
        if not ctb & 0x80:
            raise _not_openpgp(s.start)
        kept: list[bytes] = []
        total = 0
        if ctb & 0x40:
            tag = ctb & 0x3F
            while True:
                octets = s.take(1)
                octets += s.take(_length_octets(octets[0]) - 1)
                length, partial = _new_length(octets, 0)
                total += length
                if total > max_body:
                    s.skip(length)
                    kept = []
                else:
                    kept.append(s.take(length))
                if not partial:
                    break
        else:
            tag = (ctb >> 2) & 0x0F
            ltype = ctb & 0x03
            if ltype == 3:
                raise Unparsable(
                    f"the packet at byte {s.start} has an indeterminate length, which no "
                    "certificate packet may have"
                )
            total = int.from_bytes(s.take(1 << ltype), "big")
            if total > max_body:
                s.skip(total)
            else:
                kept.append(s.take(total))
        if total > max_body:
            yield Oversized(tag, total)
        else:
            yield RawPacket(tag, kept[0] if len(kept) == 1 else b"".join(kept))


_BEGIN = re.compile(rb"^-----BEGIN PGP ([A-Z0-9 ,/]+)-----$")
_HEADER_LINE = re.compile(rb"^[A-Za-z0-9-]+: ")
_CHECKSUM_LINE = re.compile(rb"^=[A-Za-z0-9+/]{4}$")
_BOM = b"\xef\xbb\xbf"


def is_binary(data: bytes) -> bool:
    """Binary OpenPGP starts with a packet header, whose top bit is always set; armored text
    never has that bit set in its first character, unless a UTF-8 byte order mark (which
    editors and web forms add) comes first."""
    return bool(data) and bool(data[0] & 0x80) and not data.startswith(_BOM)


def dearmor(data: bytes) -> bytes:
    """The binary content of every ``-----BEGIN PGP ...-----`` block in ``data``, concatenated.

    Text around and between the blocks is ignored (keys pasted from mails and web pages). The
    CRC-24 line is skipped unchecked: RFC 9580 6.1 deprecates it, and a corrupted body cannot
    carry a valid certificate anyway, since every component needs a verifying signature.
    """
    blocks: list[bytes] = []
    lines = data.split(b"\n")
    i = 0
    while i < len(lines):
        m = _BEGIN.match(lines[i].strip())
        i += 1
        if m is None:
            continue
        end_marker = b"-----END PGP " + m.group(1) + b"-----"
        # Armor headers run until the first blank line; be lenient about a missing blank line.
        while i < len(lines) and _HEADER_LINE.match(lines[i].strip()):
            i += 1
        body: list[bytes] = []
        closed = False
        while i < len(lines):
            line = lines[i].strip()
            i += 1
            if line.startswith(b"-----END PGP "):
                if line != end_marker:
                    raise Unparsable(
                        "an ASCII-armored block ends with a different END line than it began with"
                    )
                closed = True
                break
            if _CHECKSUM_LINE.match(line):
                continue
            body.append(line)
        if not closed:
            raise Unparsable("an ASCII-armored block has no END line")
        try:
            blocks.append(binascii.a2b_base64(b"".join(body), strict_mode=True))
        except binascii.Error as e:
            raise Unparsable("an ASCII-armored block does not hold valid base64") from e
    if not blocks:
        raise Unparsable("the input is neither binary OpenPGP nor an ASCII-armored block")
    return b"".join(blocks)


def decode(data: bytes) -> bytes:
    """Binary OpenPGP from binary or armored input."""
    if is_binary(data):
        return data
    return dearmor(data)
