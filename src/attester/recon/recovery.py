"""Fetching the keys we lack from a peer: ``POST /pks/hashquery`` (hkp.md) with at most
100 digests, the answer read with a size limit, and only keys whose digest was asked
for kept (a peer cannot slip in others)."""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass, field

import httpx

from attester.openpgp import CertificateError, sks_digest
from attester.recon.errors import LimitExceeded, PeerTimeout, PeerUnreachable, ProtocolError

BUNDLE = 100  # digests per request (SKS http_fetch_size)


@dataclass
class Fetched:
    keys: list[tuple[str, bytes]] = field(default_factory=list)  # (digest, key) asked for
    unrequested: int = 0  # keys in the answer whose digest was not asked for
    garbage: int = 0  # entries that are no OpenPGP packets at all


def request_body(digests: Sequence[str]) -> bytes:
    parts = [struct.pack(">I", len(digests))]
    for d in digests:
        parts += [struct.pack(">I", 16), bytes.fromhex(d)]
    return b"".join(parts)


def parse_answer(body: bytes, asked: set[str]) -> Fetched:
    """``count``, then ``count`` times (``len``, key); bytes after that are ignored."""
    out = Fetched()
    if len(body) < 4:
        raise ProtocolError("the hashquery answer has no count")
    (count,) = struct.unpack_from(">I", body)
    pos = 4
    for _ in range(count):
        if pos + 4 > len(body):
            raise ProtocolError("the hashquery answer ends before its declared keys")
        (n,) = struct.unpack_from(">I", body, pos)
        data = body[pos + 4 : pos + 4 + n]
        if len(data) != n:
            raise ProtocolError("the hashquery answer ends inside a key")
        pos += 4 + n
        try:
            digest = sks_digest(data)
        except CertificateError:
            out.garbage += 1
            continue
        if digest in asked:
            out.keys.append((digest, data))
        else:
            out.unrequested += 1
    return out


async def hashquery(
    http: httpx.AsyncClient,
    base_url: str,
    digests: Sequence[str],
    *,
    timeout: float,
    max_bytes: int,
) -> Fetched:
    """Ask ``base_url`` for the keys with these digests (at most ``BUNDLE``)."""
    assert len(digests) <= BUNDLE
    try:
        async with http.stream(
            "POST",
            base_url + "/pks/hashquery",
            content=request_body(digests),
            timeout=timeout,
            headers={"Content-Type": "application/octet-stream"},
        ) as r:
            if r.status_code != 200:
                raise PeerUnreachable(f"/pks/hashquery answered HTTP {r.status_code}")
            chunks: list[bytes] = []
            size = 0
            async for chunk in r.aiter_bytes():
                size += len(chunk)
                if size > max_bytes:
                    raise LimitExceeded(
                        "hashquery_bytes", f"the hashquery answer exceeds {max_bytes} bytes"
                    )
                chunks.append(chunk)
    except httpx.TimeoutException as e:
        raise PeerTimeout(f"/pks/hashquery sent nothing for {timeout:g} s") from e
    except httpx.HTTPError as e:
        raise PeerUnreachable(f"/pks/hashquery failed ({type(e).__name__}: {e})") from e
    return parse_answer(b"".join(chunks), set(digests))
