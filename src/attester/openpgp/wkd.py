"""Web Key Directory hashing (draft-koch-openpgp-webkey-service §3.1): pure functions."""

from __future__ import annotations

import hashlib

_ZBASE32 = "ybndrfg8ejkmcpqxot1uwisza345h769"


def zbase32(data: bytes) -> str:
    """z-base-32 (RFC 6189 §5.1.6), MSB first, without padding."""
    n = len(data) * 8
    pad = -n % 5  # zero bits appended so the last group is whole
    bits = int.from_bytes(data, "big") << pad
    return "".join(_ZBASE32[(bits >> s) & 31] for s in range(n + pad - 5, -1, -5))


def wkd_hash(local_part: str) -> str:
    """The 32-character hash of an address's local part: ASCII letters lowercased (other
    characters untouched, as GnuPG does), SHA-1, z-base-32."""
    lowered = "".join(c.lower() if "A" <= c <= "Z" else c for c in local_part)
    return zbase32(hashlib.sha1(lowered.encode("utf-8")).digest())
