"""Signature packet bodies (RFC 9580 5.2): the fields the component walk decides with.

Sequoia has already verified every self-signature by the time we read one; what we need is
its metadata, and *all* of its issuer subpackets (pysequoia only exposes the first), so we
read the subpacket areas ourselves. Values that carry meaning (times, flags, the primary
flag, revocation reasons) come only from the hashed area: the unhashed area is not covered
by the signature, so anyone can add to it.
"""

from __future__ import annotations

from typing import NamedTuple

# Signature types (RFC 9580 5.2.1).
USER_ID_CERTIFICATIONS = frozenset({0x10, 0x11, 0x12, 0x13})
SUBKEY_BINDING = 0x18
DIRECT_KEY = 0x1F
KEY_REVOCATION = 0x20
SUBKEY_REVOCATION = 0x28
CERTIFICATION_REVOCATION = 0x30

# Subpacket types (RFC 9580 5.2.3.7).
CREATION_TIME = 2
_SIG_EXPIRATION = 3
_KEY_EXPIRATION = 9
ISSUER_KEY_ID = 16
_PRIMARY_USER_ID = 25
_KEY_FLAGS = 27
_REVOCATION_REASON = 29
EMBEDDED_SIGNATURE = 32
ISSUER_FINGERPRINT = 33

# Hash algorithm ids (RFC 9580 9.5).
MD5 = 1


class SigFields(NamedTuple):
    """Where the parts of a v4 or v6 signature body are."""

    hashed_start: int
    hashed_end: int  # the hashed part of the signature is body[:hashed_end]
    unhashed_start: int
    unhashed_end: int
    prefix_at: int  # the two-octet hash prefix; the signature values follow (v4)


def signature_fields(body: bytes) -> SigFields | None:
    """The layout of a v4 or v6 signature body, or None when it is neither or truncated."""
    if not body or body[0] not in (4, 6):
        return None
    width = 2 if body[0] == 4 else 4
    i = 4
    if len(body) < i + width:
        return None
    hashed_len = int.from_bytes(body[i : i + width], "big")
    hashed_start = i + width
    hashed_end = hashed_start + hashed_len
    if len(body) < hashed_end + width:
        return None
    unhashed_len = int.from_bytes(body[hashed_end : hashed_end + width], "big")
    unhashed_start = hashed_end + width
    unhashed_end = unhashed_start + unhashed_len
    if len(body) < unhashed_end + 2:
        return None
    return SigFields(hashed_start, hashed_end, unhashed_start, unhashed_end, unhashed_end)


class SigInfo(NamedTuple):
    version: int
    sig_type: int
    pk_algorithm: int
    hash_algorithm: int
    created: int | None  # seconds since the epoch
    # Every issuer the signature names, from both areas: 8-byte key ids, and issuer
    # fingerprint subpacket bodies (one version octet, then the fingerprint). The hashed_
    # ones are the claims the signer made; the others may have been added by anybody.
    issuer_key_ids: tuple[bytes, ...]
    issuer_fingerprints: tuple[bytes, ...]
    hashed_issuer_key_ids: tuple[bytes, ...]
    hashed_issuer_fingerprints: tuple[bytes, ...]
    key_expiry: int | None  # seconds after the key's creation; None: no expiry
    sig_expiry: int | None  # seconds after the signature's creation; None: no expiry
    key_flags: int | None  # first octet of the key flags subpacket
    primary_user_id: bool
    revocation_reason: int | None


def read_subpackets(area: bytes) -> list[tuple[int, bytes]]:
    out: list[tuple[int, bytes]] = []
    i = 0
    n = len(area)
    while i < n:
        first = area[i]
        if first < 192:
            length = first
            i += 1
        elif first < 255:
            if i + 1 >= n:
                raise ValueError("truncated subpacket length")
            length = ((first - 192) << 8) + area[i + 1] + 192
            i += 2
        else:
            if i + 4 >= n:
                raise ValueError("truncated subpacket length")
            length = int.from_bytes(area[i + 1 : i + 5], "big")
            i += 5
        if length == 0 or i + length > n:
            raise ValueError("bad subpacket length")
        # The top bit is the "critical" flag, not part of the type.
        out.append((area[i] & 0x7F, area[i + 1 : i + length]))
        i += length
    return out


def encode_subpacket(typ: int, value: bytes) -> bytes:
    n = len(value) + 1
    if n < 192:
        head = bytes((n,))
    elif n < 16320:
        n -= 192
        head = bytes(((n >> 8) + 192, n & 0xFF))
    else:
        head = b"\xff" + n.to_bytes(4, "big")
    return head + bytes((typ,)) + value


def parse_signature(body: bytes) -> SigInfo:
    """The metadata of a v3, v4 or v6 signature. Raises ``ValueError`` when malformed or of
    another version (LibrePGP v5 signatures are not supported, as by Sequoia)."""
    if not body:
        raise ValueError("empty signature packet")
    version = body[0]
    if version == 3:
        if len(body) < 19 or body[1] != 5:
            raise ValueError("malformed v3 signature")
        return SigInfo(
            version=3,
            sig_type=body[2],
            pk_algorithm=body[15],
            hash_algorithm=body[16],
            created=int.from_bytes(body[3:7], "big"),
            # The v3 key id field is outside the hashed material, like an unhashed subpacket.
            issuer_key_ids=(body[7:15],),
            issuer_fingerprints=(),
            hashed_issuer_key_ids=(),
            hashed_issuer_fingerprints=(),
            key_expiry=None,
            sig_expiry=None,
            key_flags=None,
            primary_user_id=False,
            revocation_reason=None,
        )
    fields = signature_fields(body)
    if fields is None:
        raise ValueError(f"malformed or unsupported version {version} signature")
    sig_type, pk_algorithm, hash_algorithm = body[1], body[2], body[3]
    hashed = body[fields.hashed_start : fields.hashed_end]
    unhashed = body[fields.unhashed_start : fields.unhashed_end]

    created = key_expiry = sig_expiry = key_flags = reason = None
    primary = False
    key_ids: list[bytes] = []
    fingerprints: list[bytes] = []
    for typ, value in read_subpackets(hashed):
        if typ == CREATION_TIME and len(value) == 4:
            created = int.from_bytes(value, "big")
        elif typ == _KEY_EXPIRATION and len(value) == 4:
            key_expiry = int.from_bytes(value, "big") or None  # 0 means "never"
        elif typ == _SIG_EXPIRATION and len(value) == 4:
            sig_expiry = int.from_bytes(value, "big") or None
        elif typ == _KEY_FLAGS and value:
            key_flags = value[0]
        elif typ == _PRIMARY_USER_ID and len(value) == 1:
            primary = value[0] != 0
        elif typ == _REVOCATION_REASON and value:
            reason = value[0]
        elif typ == ISSUER_KEY_ID:
            key_ids.append(value)
        elif typ == ISSUER_FINGERPRINT:
            fingerprints.append(value)
    hashed_key_ids = tuple(key_ids)
    hashed_fingerprints = tuple(fingerprints)
    for typ, value in read_subpackets(unhashed):
        if typ == ISSUER_KEY_ID:
            key_ids.append(value)
        elif typ == ISSUER_FINGERPRINT:
            fingerprints.append(value)
    return SigInfo(
        version=version,
        sig_type=sig_type,
        pk_algorithm=pk_algorithm,
        hash_algorithm=hash_algorithm,
        created=created,
        issuer_key_ids=tuple(key_ids),
        issuer_fingerprints=tuple(fingerprints),
        hashed_issuer_key_ids=hashed_key_ids,
        hashed_issuer_fingerprints=hashed_fingerprints,
        key_expiry=key_expiry,
        sig_expiry=sig_expiry,
        key_flags=key_flags,
        primary_user_id=primary,
        revocation_reason=reason,
    )


def embedded_signatures(body: bytes) -> list[tuple[bytes, SigInfo]]:
    """The signatures embedded in ``body`` (subpacket 32, either area) that can be read; in
    practice the primary key binding ("back-signature") of a signing subkey's binding."""
    fields = signature_fields(body)
    if fields is None:
        return []
    out: list[tuple[bytes, SigInfo]] = []
    for start, end in (
        (fields.hashed_start, fields.hashed_end),
        (fields.unhashed_start, fields.unhashed_end),
    ):
        try:
            subpackets = read_subpackets(body[start:end])
        except ValueError:
            continue
        for typ, value in subpackets:
            if typ == EMBEDDED_SIGNATURE:
                try:
                    out.append((value, parse_signature(value)))
                except ValueError:
                    continue
    return out
