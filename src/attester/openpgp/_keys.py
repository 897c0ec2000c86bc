"""Public key packet bodies (RFC 9580 5.5.2): version, creation time, algorithm, size and
fingerprint.

pysequoia does not expose key sizes or curves, and we need the fingerprint of a primary key
even when Sequoia refuses the certificate (so a rejection can name it), so we read the few
fields we need ourselves. Only the layout is read; no key material is validated here.
"""

from __future__ import annotations

import hashlib
from typing import NamedTuple

from attester.openpgp.types import Fingerprint

# RFC 9580 9.1, plus the composite post-quantum algorithms of draft-ietf-openpgp-pqc that
# Sequoia already speaks. Sizes of those are not one number, so they report 0 bits.
_ALGORITHM_NAMES: dict[int, str] = {
    1: "rsa",
    2: "rsa",
    3: "rsa",
    16: "elgamal",
    17: "dsa",
    18: "ecdh",
    19: "ecdsa",
    20: "elgamal",
    22: "eddsa",
    25: "x25519",
    26: "x448",
    27: "ed25519",
    28: "ed448",
    30: "mldsa65-ed25519",
    31: "mldsa87-ed448",
    32: "slhdsa-shake128s",
    33: "slhdsa-shake128f",
    34: "slhdsa-shake256s",
    35: "mlkem768-x25519",
    36: "mlkem1024-x448",
}

# What an algorithm can do at all; used when a binding carries no key flags subpacket
# (common before 2005), the way GnuPG falls back to the algorithm's usage.
SIGNING_ALGORITHMS = frozenset({1, 3, 17, 19, 22, 27, 28, 30, 31, 32, 33, 34})
ENCRYPTION_ALGORITHMS = frozenset({1, 2, 16, 18, 20, 25, 26, 35, 36})

_FIXED_BITS = {25: 255, 26: 448, 27: 255, 28: 448}

# Curve OIDs (RFC 9580 9.2 and the legacy Ed25519/Curve25519 OIDs GnuPG still writes) and the
# size GnuPG reports for them.
_CURVE_BITS: dict[bytes, int] = {
    bytes.fromhex("2a8648ce3d030107"): 256,  # NIST P-256
    bytes.fromhex("2b81040022"): 384,  # NIST P-384
    bytes.fromhex("2b81040023"): 521,  # NIST P-521
    bytes.fromhex("2b8104000a"): 256,  # secp256k1
    bytes.fromhex("2b2403030208010107"): 256,  # brainpoolP256r1
    bytes.fromhex("2b240303020801010b"): 384,  # brainpoolP384r1
    bytes.fromhex("2b240303020801010d"): 512,  # brainpoolP512r1
    bytes.fromhex("2b06010401da470f01"): 255,  # Ed25519 (legacy EdDSA)
    bytes.fromhex("2b060104019755010501"): 255,  # Curve25519 (legacy ECDH)
    bytes.fromhex("2b656e"): 255,  # X25519
    bytes.fromhex("2b656f"): 448,  # X448
    bytes.fromhex("2b6570"): 255,  # Ed25519
    bytes.fromhex("2b6571"): 448,  # Ed448
}


class KeyPacket(NamedTuple):
    version: int
    created: int  # seconds since the epoch
    algorithm: int
    algorithm_name: str
    bits: int
    fingerprint: Fingerprint


def algorithm_name(algorithm: int) -> str:
    return _ALGORITHM_NAMES.get(algorithm, f"unknown-{algorithm}")


def _mpi_bits(data: bytes, offset: int) -> int:
    """Bit length of the MPI at ``offset``, counted from its value: the header's own count
    can lie, and GnuPG reports the real size."""
    if offset + 2 > len(data):
        raise ValueError("truncated MPI")
    declared = int.from_bytes(data[offset : offset + 2], "big")
    end = offset + 2 + (declared + 7) // 8
    if end > len(data):
        raise ValueError("truncated MPI")
    return int.from_bytes(data[offset + 2 : end], "big").bit_length()


def fingerprint_of(body: bytes) -> Fingerprint:
    """RFC 9580 5.5.4: SHA-1 over ``0x99 ‖ len16 ‖ body`` (v4), SHA-256 over ``0x9B ‖ len32 ‖
    body`` (v6; LibrePGP's v5 uses 0x9A). Raises ``ValueError`` for versions that have no
    fingerprint we can store (v2/v3 keys are MD5-based and long obsolete)."""
    if not body:
        raise ValueError("empty key packet")
    version = body[0]
    if version == 4:
        digest = hashlib.sha1(b"\x99" + len(body).to_bytes(2, "big") + body).hexdigest()
    elif version in (5, 6):
        prefix = b"\x9a" if version == 5 else b"\x9b"
        digest = hashlib.sha256(prefix + len(body).to_bytes(4, "big") + body).hexdigest()
    else:
        raise ValueError(f"version {version} keys are not supported")
    return Fingerprint(digest.upper())


def parse_key(body: bytes) -> KeyPacket:
    """The fields of a public key or subkey packet body. Raises ``ValueError`` when malformed."""
    fingerprint = fingerprint_of(body)
    if len(body) < 6:
        raise ValueError("truncated key packet")
    version = body[0]
    created = int.from_bytes(body[1:5], "big")
    algorithm = body[5]
    # v5 and v6 put a four-octet length of the key material before it.
    material = 6 if version == 4 else 10
    if algorithm in (1, 2, 3, 16, 17, 20):
        # RSA: n first; DSA and ElGamal: p first. Either way the first MPI is the size.
        bits = _mpi_bits(body, material)
    elif algorithm in (18, 19, 22):
        if material >= len(body):
            raise ValueError("truncated key packet")
        oid_len = body[material]
        oid = body[material + 1 : material + 1 + oid_len]
        bits = _CURVE_BITS.get(oid, 0)
    else:
        bits = _FIXED_BITS.get(algorithm, 0)
    return KeyPacket(version, created, algorithm, algorithm_name(algorithm), bits, fingerprint)
