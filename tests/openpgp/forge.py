"""Building certificates packet by packet, with keys whose secrets the test holds.

pysequoia only makes well-formed certificates. The adversarial tests need signatures that
no honest implementation makes — a valid signature without issuer subpackets, a binding
with a forged hash prefix, a signature whose issuers disagree — so this module signs
arbitrary v4 signatures itself (Ed25519 and RSA through ``cryptography``). It shares no
code with ``attester.openpgp`` on purpose: the tests must not inherit its mistakes.
"""

from __future__ import annotations

import hashlib
import struct
import time
from dataclasses import dataclass, field

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa, utils, x25519
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

ED25519_OID = bytes.fromhex("2b06010401da470f01")
CV25519_OID = bytes.fromhex("2b060104019755010501")
NOW = int(time.time()) - 3600  # signatures: an hour ago, so nothing is "in the future"
KEY_CREATED = NOW - 30 * 86400  # keys: older than any signature made on them

# Subpacket types.
CREATED = 2
SIG_EXPIRES = 3
KEY_EXPIRES = 9
ISSUER = 16
PRIMARY_UID = 25
KEY_FLAGS = 27
REASON = 29
EMBEDDED = 32
ISSUER_FPR = 33


def packet(tag: int, body: bytes, *, legacy: bool = False) -> bytes:
    """A packet with a definite length; ``legacy`` uses the old header format (tags < 16)."""
    if legacy:
        if len(body) < 256:
            return bytes((0x80 | tag << 2, len(body))) + body
        if len(body) < 65536:
            return bytes((0x80 | tag << 2 | 1,)) + struct.pack(">H", len(body)) + body
        return bytes((0x80 | tag << 2 | 2,)) + struct.pack(">I", len(body)) + body
    if len(body) < 192:
        return bytes((0xC0 | tag, len(body))) + body
    if len(body) < 8384:
        n = len(body) - 192
        return bytes((0xC0 | tag, (n >> 8) + 192, n & 0xFF)) + body
    return bytes((0xC0 | tag, 0xFF)) + struct.pack(">I", len(body)) + body


def mpi(value: int | bytes) -> bytes:
    if isinstance(value, bytes):
        value = int.from_bytes(value, "big")
    raw = value.to_bytes((value.bit_length() + 7) // 8, "big")
    return struct.pack(">H", value.bit_length()) + raw


def subpacket(typ: int, body: bytes) -> bytes:
    n = len(body) + 1
    if n < 192:
        return bytes((n, typ)) + body
    n -= 192
    return bytes(((n >> 8) + 192, n & 0xFF, typ)) + body


def split(data: bytes) -> list[tuple[int, bytes]]:
    """(tag, body) of each packet of well-formed, definite-length data."""
    out = []
    i = 0
    while i < len(data):
        ctb = data[i]
        if ctb & 0x40:
            tag = ctb & 0x3F
            first = data[i + 1]
            if first < 192:
                n, h = first, 2
            elif first < 224:
                n, h = ((first - 192) << 8) + data[i + 2] + 192, 3
            else:
                n, h = struct.unpack(">I", data[i + 2 : i + 6])[0], 6
        else:
            tag = (ctb >> 2) & 0xF
            width = 1 << (ctb & 3)
            n, h = int.from_bytes(data[i + 1 : i + 1 + width], "big"), 1 + width
        out.append((tag, data[i + h : i + h + n]))
        i += h + n
    return out


def join(packets: list[tuple[int, bytes]]) -> bytes:
    return b"".join(packet(t, b) for t, b in packets)


def key_material(body: bytes) -> bytes:
    return b"\x99" + struct.pack(">H", len(body)) + body


def uid_material(uid: bytes) -> bytes:
    return b"\xb4" + struct.pack(">I", len(uid)) + uid


@dataclass
class Key:
    """A v4 key (Ed25519, RSA, or Cv25519 for encryption) with its secret."""

    kind: str = "ed25519"
    bits: int = 2048
    created: int = KEY_CREATED
    _secret: object = field(init=False, repr=False)
    body: bytes = field(init=False)

    def __post_init__(self) -> None:
        head = b"\x04" + struct.pack(">I", self.created)
        if self.kind == "ed25519":
            ed = ed25519.Ed25519PrivateKey.generate()
            pub = ed.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
            self.body = head + bytes((22, len(ED25519_OID))) + ED25519_OID + mpi(b"\x40" + pub)
            self._secret = ed
        elif self.kind == "rsa":
            rs = rsa.generate_private_key(public_exponent=65537, key_size=self.bits)
            nums = rs.public_key().public_numbers()
            self.body = head + b"\x01" + mpi(nums.n) + mpi(nums.e)
            self._secret = rs
        elif self.kind == "cv25519":
            cv = x25519.X25519PrivateKey.generate()
            pub = cv.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
            kdf = bytes((3, 1, 8, 7))  # SHA-256, AES-128
            self.body = (
                head + bytes((18, len(CV25519_OID))) + CV25519_OID + mpi(b"\x40" + pub) + kdf
            )
            self._secret = cv
        else:
            raise ValueError(self.kind)

    @property
    def fingerprint(self) -> bytes:
        return hashlib.sha1(key_material(self.body)).digest()

    @property
    def fpr_hex(self) -> str:
        return self.fingerprint.hex().upper()

    @property
    def key_id(self) -> bytes:
        return self.fingerprint[-8:]

    @property
    def algorithm(self) -> int:
        return self.body[5]

    def issuer(self) -> tuple[list[bytes], list[bytes]]:
        """Hashed and unhashed issuer subpackets, the way GnuPG writes them."""
        return [subpacket(ISSUER_FPR, b"\x04" + self.fingerprint)], [subpacket(ISSUER, self.key_id)]

    def sign(
        self,
        sig_type: int,
        material: bytes,
        *,
        hashed: list[bytes] | None = None,
        unhashed: list[bytes] | None = None,
        issuer: bool = True,
        created: int | None = None,
        hash_algo: int = 10,
    ) -> bytes:
        """A v4 signature body over ``material``. ``hashed`` / ``unhashed`` are extra
        subpackets; a creation time is always included, issuers unless ``issuer=False``."""
        h_sub = [subpacket(CREATED, struct.pack(">I", created or NOW)), *(hashed or [])]
        u_sub = list(unhashed or [])
        if issuer:
            hi, ui = self.issuer()
            h_sub += hi
            u_sub += ui
        hashed_area = b"".join(h_sub)
        unhashed_area = b"".join(u_sub)
        head = bytes((4, sig_type, self.algorithm, hash_algo)) + struct.pack(">H", len(hashed_area))
        hashed_part = head + hashed_area
        name = {2: "sha1", 8: "sha256", 10: "sha512", 1: "md5"}[hash_algo]
        digest = hashlib.new(
            name, material + hashed_part + b"\x04\xff" + struct.pack(">I", len(hashed_part))
        ).digest()
        if self.kind == "ed25519":
            assert isinstance(self._secret, ed25519.Ed25519PrivateKey)
            raw = self._secret.sign(digest)
            values = mpi(raw[:32]) + mpi(raw[32:])
        elif self.kind == "rsa":
            assert isinstance(self._secret, rsa.RSAPrivateKey)
            algo = {2: hashes.SHA1(), 8: hashes.SHA256(), 10: hashes.SHA512(), 1: hashes.MD5()}[
                hash_algo
            ]
            values = mpi(self._secret.sign(digest, padding.PKCS1v15(), utils.Prehashed(algo)))
        else:
            raise ValueError("encryption keys do not sign")
        return (
            hashed_part
            + struct.pack(">H", len(unhashed_area))
            + unhashed_area
            + digest[:2]
            + values
        )


def certify(
    signer: Key,
    primary: Key,
    uid: bytes,
    sig_type: int = 0x13,
    *,
    flags: int | None = 0x03,
    hashed: list[bytes] | None = None,
    unhashed: list[bytes] | None = None,
    issuer: bool = True,
    created: int | None = None,
    hash_algo: int = 10,
) -> bytes:
    """A certification of ``uid`` on ``primary`` by ``signer`` (a self-signature when they
    are the same key), with key flags unless ``flags`` is None."""
    extra = list(hashed or [])
    if flags is not None:
        extra.append(subpacket(KEY_FLAGS, bytes((flags,))))
    return signer.sign(
        sig_type,
        key_material(primary.body) + uid_material(uid),
        hashed=extra,
        unhashed=unhashed,
        issuer=issuer,
        created=created,
        hash_algo=hash_algo,
    )


def bind(
    primary: Key,
    subkey: Key,
    *,
    flags: int = 0x0C,
    backsig: bool = True,
    issuer: bool = True,
    created: int | None = None,
) -> bytes:
    """A subkey binding; signing subkeys get the embedded back-signature RFC 9580 requires."""
    material = key_material(primary.body) + key_material(subkey.body)
    unhashed = []
    if flags & 0x02 and backsig:
        unhashed.append(subpacket(EMBEDDED, subkey.sign(0x19, material, created=created)))
    return primary.sign(
        0x18,
        material,
        hashed=[subpacket(KEY_FLAGS, bytes((flags,)))],
        unhashed=unhashed,
        issuer=issuer,
        created=created,
    )


def with_prefix_for(sig: bytes, material: bytes) -> bytes:
    """``sig`` with its two-octet hash prefix rewritten to match ``material``: the only
    check Sequoia applies to third-party certifications. The signature itself stays invalid."""
    hashed_len = struct.unpack(">H", sig[4:6])[0]
    hashed_part = sig[: 6 + hashed_len]
    unhashed_len = struct.unpack(">H", sig[6 + hashed_len : 8 + hashed_len])[0]
    at = 8 + hashed_len + unhashed_len
    name = {2: "sha1", 8: "sha256", 10: "sha512"}[sig[3]]
    digest = hashlib.new(
        name, material + hashed_part + b"\x04\xff" + struct.pack(">I", len(hashed_part))
    ).digest()
    return sig[:at] + digest[:2] + sig[at + 2 :]


def simple_cert(
    *uids: bytes, primary: Key | None = None, subkeys: bool = True
) -> tuple[Key, list[tuple[int, bytes]]]:
    """A well-formed certificate: Ed25519 primary, the user IDs, a Cv25519 encryption
    subkey and an Ed25519 signing subkey (``subkeys=False``: none)."""
    pk = primary or Key("ed25519")
    packets: list[tuple[int, bytes]] = [(6, pk.body)]
    for i, uid in enumerate(uids):
        extra = [subpacket(PRIMARY_UID, b"\x01")] if i == 0 else []
        packets += [(13, uid), (2, certify(pk, pk, uid, hashed=extra))]
    if subkeys:
        enc = Key("cv25519")
        sig = Key("ed25519")
        packets += [(14, enc.body), (2, bind(pk, enc, flags=0x0C))]
        packets += [(14, sig.body), (2, bind(pk, sig, flags=0x02))]
    return pk, packets


def junk_self_signature(primary: Key, n: int, sig_type: int = 0x13) -> bytes:
    """A small signature body that names ``primary`` as its issuer but verifies for nothing
    (its values are junk): the kind Sequoia tries against every component of a certificate
    before it gives up on it. ``n`` makes each one distinct (its creation time)."""
    hashed = subpacket(CREATED, struct.pack(">I", NOW - n))
    unhashed = subpacket(ISSUER, primary.key_id)
    return (
        bytes((4, sig_type, primary.algorithm, 8))
        + struct.pack(">H", len(hashed))
        + hashed
        + struct.pack(">H", len(unhashed))
        + unhashed
        + struct.pack(">H", n & 0xFFFF)
        + mpi(1)
        + mpi(1)
    )


def flooded_with_self_signatures(
    uids: int = 50, uid_bytes: int = 6 * 1024, junk: int = 12_000, primary: Key | None = None
) -> tuple[Key, list[tuple[int, bytes]]]:
    """The certificate of issue 10 item 7: ``uids`` user IDs of ``uid_bytes`` each, each
    validly bound, and ``junk`` junk signatures naming the primary key as issuer, spread
    over the user IDs."""
    pk = primary or Key("ed25519")
    packets: list[tuple[int, bytes]] = [(6, pk.body)]
    per_uid, extra = divmod(junk, uids)
    k = 0
    for i in range(uids):
        head = f"User {i} <u{i}@example.org> ".encode()
        uid = head + b"x" * (uid_bytes - len(head))
        packets += [(13, uid), (2, certify(pk, pk, uid))]
        for _ in range(per_uid + (1 if i < extra else 0)):
            packets.append((2, junk_self_signature(pk, k)))
            k += 1
    return pk, packets


def worst_accepted(uids: int = 44, uid_bytes: int = 16_000) -> tuple[Key, list[tuple[int, bytes]]]:
    """A valid certificate at the default work bounds (``openpgp/_work.py``): the largest
    user IDs, 250 signatures naming the primary key (all but one per user ID junk) and 100
    third-party certifications that fit no component, each of which Sequoia tries against
    every component. The defaults: 44 user IDs keep it under 1 MiB once armored."""
    pk, packets = flooded_with_self_signatures(uids, uid_bytes, 250 - uids)
    witness = Key("ed25519")
    packets += [(2, junk_self_signature(witness, 100_000 + i, 0x10)) for i in range(100)]
    return pk, packets
