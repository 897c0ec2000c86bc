"""The SKS ``/pks/hashquery`` wire format, as a client writes and reads it (hkp.md)."""

from __future__ import annotations

import struct


def request(digests: list[str]) -> bytes:
    """count, then count times (len = 16, MD5), integers 4-byte big-endian."""
    out = [struct.pack(">I", len(digests))]
    for d in digests:
        raw = bytes.fromhex(d)
        out += [struct.pack(">I", len(raw)), raw]
    return b"".join(out)


def response_keys(body: bytes) -> list[bytes]:
    """count, then count times (len, key bytes), then CRLF: the framing SKS writes."""
    (count,) = struct.unpack_from(">I", body)
    pos, keys = 4, []
    for _ in range(count):
        (n,) = struct.unpack_from(">I", body, pos)
        keys.append(body[pos + 4 : pos + 4 + n])
        pos += 4 + n
    assert body[pos:] == b"\r\n", body[pos : pos + 16]
    return keys
