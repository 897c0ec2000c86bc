"""Verifying the self-signatures that involve RSA keys larger than 4096 bits, which the
crypto backend of the pysequoia wheel cannot verify.

¡CAREFUL! This is the one place where Attester checks OpenPGP signatures itself. It exists
because pysequoia is built on RustCrypto's ``rsa`` crate, which refuses moduli above 4096
bits: every self-signature of such a key lands among Sequoia's bad signatures, and the
certificate would look unbound (9 of the 905 keys in Debian's keyring are RSA 5120-10240).
The scope is kept as narrow as possible:

- only certificates whose primary key is RSA with a modulus over 4096 bits, and, under
  other primary keys, only the bindings of such RSA signing subkeys (whose back-signature
  the subkey makes);
- only signatures Sequoia already put among the bad ones, issued by the primary key;
- only v4 signatures, with SHA-1 or SHA-2 (PKCS #1 v1.5 via ``cryptography``/OpenSSL);
- a signature is attached to the one component it verifies for, computed exactly as
  RFC 9580 5.2.4 hashes it; a subkey binding that makes the subkey signing-capable also
  needs its embedded primary key binding ("back-signature") to verify, as Sequoia requires.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import NamedTuple

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from attester.openpgp._packets import RawPacket
from attester.openpgp._signature import (
    CERTIFICATION_REVOCATION,
    DIRECT_KEY,
    KEY_REVOCATION,
    SUBKEY_BINDING,
    SUBKEY_REVOCATION,
    USER_ID_CERTIFICATIONS,
    SigInfo,
    embedded_signatures,
    signature_fields,
)

# The largest RSA modulus pysequoia's backend verifies.
SEQUOIA_MAX_RSA_BITS = 4096

_PRIMARY_KEY_BINDING = 0x19
_FLAG_SIGN = 0x02

_HASHES: dict[int, tuple[str, type[hashes.HashAlgorithm]]] = {
    2: ("sha1", hashes.SHA1),
    8: ("sha256", hashes.SHA256),
    9: ("sha384", hashes.SHA384),
    10: ("sha512", hashes.SHA512),
    11: ("sha224", hashes.SHA224),
}

_CURVES: dict[bytes, ec.EllipticCurve] = {
    bytes.fromhex("2a8648ce3d030107"): ec.SECP256R1(),
    bytes.fromhex("2b81040022"): ec.SECP384R1(),
    bytes.fromhex("2b81040023"): ec.SECP521R1(),
}
_ED25519_LEGACY = bytes.fromhex("2b06010401da470f01")


def applies(algorithm: int, bits: int) -> bool:
    return algorithm in (1, 3) and bits > SEQUOIA_MAX_RSA_BITS


def _mpis(data: bytes, offset: int, count: int) -> list[int] | None:
    out = []
    for _ in range(count):
        if offset + 2 > len(data):
            return None
        size = (int.from_bytes(data[offset : offset + 2], "big") + 7) // 8
        offset += 2
        if offset + size > len(data):
            return None
        out.append(int.from_bytes(data[offset : offset + size], "big"))
        offset += size
    return out


def key_material(body: bytes) -> bytes:
    """How a v4 key packet enters a signature hash (RFC 9580 5.2.4)."""
    return b"\x99" + len(body).to_bytes(2, "big") + body


def user_id_material(body: bytes, tag: int) -> bytes:
    return (b"\xb4" if tag == 13 else b"\xd1") + len(body).to_bytes(4, "big") + body


def _digest(sig: bytes, hash_algorithm: int, material: bytes) -> bytes | None:
    """The hash a v4 signature signs: the material, then the signature's hashed part and
    its trailer."""
    fields = signature_fields(sig)
    if fields is None or hash_algorithm not in _HASHES:
        return None
    hashed_part = sig[: fields.hashed_end]
    h = hashlib.new(_HASHES[hash_algorithm][0])
    h.update(material)
    h.update(hashed_part)
    h.update(b"\x04\xff" + len(hashed_part).to_bytes(4, "big"))
    digest = h.digest()
    # The two-octet prefix is a quick check, and saves an RSA operation on garbage.
    return digest if digest[:2] == sig[fields.prefix_at : fields.prefix_at + 2] else None


def _verify(key_body: bytes, sig: bytes, info: SigInfo, material: bytes) -> bool:
    """Whether ``sig`` (a v4 signature body) is valid over ``material`` under the v4 key
    ``key_body``. RSA, ECDSA and legacy Ed25519 keys; anything else is "not verified"."""
    if info.version != 4 or len(key_body) < 6 or key_body[0] != 4:
        return False
    # As Sequoia: a key cannot have made a signature before it existed.
    if info.created is None or info.created < int.from_bytes(key_body[1:5], "big"):
        return False
    digest = _digest(sig, info.hash_algorithm, material)
    fields = signature_fields(sig)
    if digest is None or fields is None:
        return False
    algorithm = key_body[5]
    prehashed = utils.Prehashed(_HASHES[info.hash_algorithm][1]())
    try:
        if algorithm in (1, 3) and info.pk_algorithm in (1, 3):
            key = _mpis(key_body, 6, 2)
            value = _mpis(sig, fields.prefix_at + 2, 1)
            if key is None or value is None:
                return False
            n, e = key
            size = (n.bit_length() + 7) // 8
            rsa.RSAPublicNumbers(e, n).public_key().verify(
                value[0].to_bytes(size, "big"), digest, padding.PKCS1v15(), prehashed
            )
            return True
        if algorithm in (19, 22) and info.pk_algorithm == algorithm:
            oid = key_body[7 : 7 + key_body[6]]
            point = _mpis(key_body, 7 + key_body[6], 1)
            rs = _mpis(sig, fields.prefix_at + 2, 2)
            if point is None or rs is None:
                return False
            raw_point = point[0].to_bytes((point[0].bit_length() + 7) // 8, "big")
            if algorithm == 22 and oid == _ED25519_LEGACY and raw_point[:1] == b"\x40":
                Ed25519PublicKey.from_public_bytes(raw_point[1:]).verify(
                    rs[0].to_bytes(32, "big") + rs[1].to_bytes(32, "big"), digest
                )
                return True
            if algorithm == 19 and oid in _CURVES:
                public = ec.EllipticCurvePublicKey.from_encoded_point(_CURVES[oid], raw_point)
                der = utils.encode_dss_signature(rs[0], rs[1])
                public.verify(der, digest, ec.ECDSA(prehashed))
                return True
    except (InvalidSignature, ValueError, OverflowError):
        return False
    return False


def _backsig_ok(primary: bytes, subkey: bytes, binding: bytes, info: SigInfo) -> bool:
    """A binding that lets a subkey sign must embed a primary key binding signature made by
    the subkey (RFC 9580 5.2.1, 0x19), so nobody can claim somebody else's signing key."""
    if info.key_flags is None or not info.key_flags & _FLAG_SIGN:
        return True
    material = key_material(primary) + key_material(subkey)
    for body, embedded in embedded_signatures(binding):
        if embedded.sig_type == _PRIMARY_KEY_BINDING and _verify(subkey, body, embedded, material):
            return True
    return False


class Rescued(NamedTuple):
    """A bad signature that verifies, and the component it verifies for (neither index set:
    the primary key)."""

    packet: RawPacket
    info: SigInfo
    user_id: int | None = None  # index into the user IDs (and attributes) given to ``rescue``
    subkey: int | None = None  # index into the subkeys given to ``rescue``


def rescue(
    primary: bytes,
    bad: Iterable[tuple[RawPacket, SigInfo]],
    user_ids: list[RawPacket],
    subkeys: list[RawPacket],
) -> list[Rescued]:
    """Which of Sequoia's bad signatures (already known to be issued by ``primary``) verify,
    and for which component."""
    out: list[Rescued] = []
    pk = key_material(primary)
    for sig, info in bad:
        t = info.sig_type
        if t in (DIRECT_KEY, KEY_REVOCATION):
            if _verify(primary, sig.body, info, pk):
                out.append(Rescued(sig, info))
        elif t in USER_ID_CERTIFICATIONS or t == CERTIFICATION_REVOCATION:
            for i, uid in enumerate(user_ids):
                if _verify(primary, sig.body, info, pk + user_id_material(uid.body, uid.tag)):
                    out.append(Rescued(sig, info, user_id=i))
                    break
        elif t in (SUBKEY_BINDING, SUBKEY_REVOCATION):
            for j, sub in enumerate(subkeys):
                if _verify(primary, sig.body, info, pk + key_material(sub.body)) and (
                    t == SUBKEY_REVOCATION or _backsig_ok(primary, sub.body, sig.body, info)
                ):
                    out.append(Rescued(sig, info, subkey=j))
                    break
    return out
