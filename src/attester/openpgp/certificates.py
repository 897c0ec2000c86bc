"""Reading uploaded certificates, merging them into stored ones, and what lookups serve.

Every entry point works the same way:

1. Refuse the whole input if it is too large, not OpenPGP, holds no certificate, or holds
   any secret key (nothing of it is stored then).
2. Split it into certificates at each primary key; drop packets that are no part of a
   transferable public key (trust, marker, padding, private and unknown tags), so the only
   unknown packet Sequoia ever sees is our delimiter (see ``_sequoia``).
3. Check each certificate against ``Limits`` before any cryptography runs, including the
   work canonicalising it would take (``_work``).
4. Canonicalise with Sequoia and walk the components (``_walk``).
"""

from __future__ import annotations

import base64
from collections.abc import Collection, Iterable, Iterator

from attester.openpgp._keys import fingerprint_of
from attester.openpgp._packets import (
    CERT_TAGS,
    PUBLIC_KEY,
    PUBLIC_SUBKEY,
    SECRET_TAGS,
    SIGNATURE,
    USER_ATTRIBUTE,
    USER_ID,
    RawPacket,
    dearmor,
    decode,
    encode_packets,
    split_packets,
)
from attester.openpgp._sequoia import armor as _armor
from attester.openpgp._served import served_form
from attester.openpgp._validity import evaluate
from attester.openpgp._walk import walk
from attester.openpgp._work import check_work
from attester.openpgp.digest import _digest_packets
from attester.openpgp.errors import (
    CertificateError,
    FingerprintMismatch,
    InputTooLarge,
    LimitExceeded,
    MultipleCertificates,
    NoCertificate,
    NoUsableComponent,
    SecretKeyMaterial,
)
from attester.openpgp.model import Limits, ParsedCert, Rejected
from attester.openpgp.types import Fingerprint


class _Input:
    """One upload after step 1 and 2: the packets of each certificate, by primary key."""

    def __init__(self, data: bytes, limits: Limits) -> None:
        if len(data) > limits.max_input_bytes:
            raise InputTooLarge(
                f"the upload is {len(data)} bytes; at most {limits.max_input_bytes} bytes "
                "are accepted"
            )
        packets = split_packets(decode(data))
        if any(p.tag in SECRET_TAGS for p in packets):
            raise SecretKeyMaterial(
                "the upload contains secret key material; secret keys are never accepted, "
                "and nothing of this upload was stored. Export the public key only "
                "(gpg --export, not --export-secret-keys)"
            )
        # Several copies of one certificate in one upload are merged into one (keyed by the
        # primary key packet's body, which is what makes a certificate that certificate).
        self.certs: dict[bytes, list[list[RawPacket]]] = {}
        # Per certificate, how many packets that are no part of a public key were dropped.
        self.foreign: dict[bytes, int] = {}
        current: list[RawPacket] | None = None
        for p in packets:
            if p.tag == PUBLIC_KEY:
                current = [p]
                self.certs.setdefault(p.body, []).append(current)
            elif current is None:
                pass  # signatures, user IDs or anything else before a primary key: nobody's
            elif p.tag in CERT_TAGS:
                current.append(p)
            else:
                self.foreign[current[0].body] = self.foreign.get(current[0].body, 0) + 1
        if not self.certs:
            raise NoCertificate("the upload holds OpenPGP data but no public key certificate")

    def items(self) -> list[tuple[list[RawPacket], int]]:
        """Each certificate's packets (copies combined) and its count of foreign packets."""
        return [(_combine(copies), self.foreign.get(key, 0)) for key, copies in self.certs.items()]


def _combine(copies: list[list[RawPacket]]) -> list[RawPacket]:
    """One packet sequence from several copies of a certificate (each starting with the same
    primary key packet): the primary key, every copy's direct signatures, then every copy's
    components. Sequoia merges the duplicates when it canonicalises."""
    if len(copies) == 1:
        return copies[0]
    out = [copies[0][0]]
    rest: list[RawPacket] = []
    for packets in copies:
        i = 1
        while i < len(packets) and packets[i].tag == SIGNATURE:
            i += 1
        out.extend(packets[1:i])
        rest.extend(packets[i:])
    return out + rest


def _name(packets: list[RawPacket]) -> Fingerprint | None:
    try:
        return fingerprint_of(packets[0].body)
    except ValueError:
        return None


def _check_limits(packets: list[RawPacket], limits: Limits) -> None:
    """Raise ``LimitExceeded`` with a sentence naming the bound that ``packets`` (one
    certificate) exceeds."""
    user_ids = subkeys = signatures = 0
    component = "the primary key"
    for p in packets:
        if len(p.body) > limits.max_packet_bytes:
            raise LimitExceeded(
                f"a packet of {len(p.body)} bytes exceeds the limit of "
                f"{limits.max_packet_bytes} bytes per packet"
            )
        if p.tag == SIGNATURE:
            signatures += 1
            if signatures > limits.max_signatures_per_component:
                raise LimitExceeded(
                    f"{component} carries more than {limits.max_signatures_per_component} "
                    "signatures (the limit guards against certificate flooding)"
                )
            continue
        signatures = 0
        if p.tag in (USER_ID, USER_ATTRIBUTE):
            user_ids += 1
            component = "a user ID" if p.tag == USER_ID else "a user attribute"
            if user_ids > limits.max_user_ids:
                raise LimitExceeded(
                    f"the certificate has more than {limits.max_user_ids} user IDs and "
                    "user attributes"
                )
        elif p.tag == PUBLIC_SUBKEY:
            subkeys += 1
            component = "a subkey"
            if subkeys > limits.max_subkeys:
                raise LimitExceeded(f"the certificate has more than {limits.max_subkeys} subkeys")


def _parse_one(
    packets: list[RawPacket], limits: Limits, foreign: int = 0, *, checked: bool = False
) -> ParsedCert:
    """Steps 3 and 4 for one certificate. Raises a ``CertificateError``. ``checked``: the
    parts were checked against the limits already (a merge: stored + upload together
    would count every component twice)."""
    if not checked:
        _check_limits(packets, limits)
        check_work(packets, limits)
    w = walk(packets)
    stored, trimmed, unbound = w.stored_packets(
        limits.max_signatures_per_component, limits.max_input_bytes, limits.max_unbound_components
    )
    # Canonicalisation can move signatures between components, and what we store must be
    # readable again under the same limits: check the result too.
    _check_limits(stored, limits)
    data = encode_packets(stored)
    if len(data) > limits.max_input_bytes:
        raise LimitExceeded(
            f"the certificate would be {len(data)} bytes without third-party certifications; "
            f"at most {limits.max_input_bytes} bytes are stored"
        )
    ev = evaluate(w)
    if not ev.usable:
        raise NoUsableComponent(
            "the certificate has no user ID, subkey or direct-key signature with a valid "
            "self-signature, so there is nothing that could be published"
        )
    ignored = list(ev.ignored)
    if foreign:
        ignored.append(
            f"{foreign} packet(s) that are no part of a public key (trust, marker, padding, "
            "private or unknown) were dropped"
        )
    if trimmed:
        ignored.append(f"{trimmed} third-party certification(s) dropped to stay within the limits")
    if unbound:
        ignored.append(
            f"{unbound} user ID(s), attribute(s) or subkey(s) without a self-signature dropped "
            f"(at most {limits.max_unbound_components} are kept)"
        )
    return ParsedCert(
        primary=ev.primary,
        subkeys=ev.subkeys,
        user_ids=ev.user_ids,
        data=data,
        digest=_digest_packets(stored),
        served=served_form(w),
        ignored=tuple(ignored),
    )


def parse_keyring(data: bytes, limits: Limits = Limits()) -> list[ParsedCert | Rejected]:
    """Every certificate of an upload (armored — one or several blocks, with text around
    them — or binary), in the order they first appear.

    Problems with the whole upload raise (``InputTooLarge``, ``Unparsable``,
    ``NoCertificate``, ``SecretKeyMaterial``); a certificate that cannot be accepted is
    returned as a ``Rejected`` with the reason and, when it can be computed, its fingerprint.
    """
    out: list[ParsedCert | Rejected] = []
    for packets, foreign in _Input(data, limits).items():
        try:
            out.append(_parse_one(packets, limits, foreign))
        except CertificateError as e:
            out.append(Rejected(str(e), _name(packets)))
    return out


def parse_certificates(data: bytes, limits: Limits = Limits()) -> list[ParsedCert]:
    """Like ``parse_keyring``, but the first certificate that cannot be accepted raises its
    error (for uploads that must be accepted whole)."""
    return [
        _parse_one(packets, limits, foreign) for packets, foreign in _Input(data, limits).items()
    ]


def parse_certificate(data: bytes, limits: Limits = Limits()) -> ParsedCert:
    """Exactly one certificate; ``MultipleCertificates`` when the upload holds more."""
    packets, foreign = _single(_Input(data, limits), "the upload")
    return _parse_one(packets, limits, foreign)


def merge(stored: bytes, incoming: bytes, limits: Limits = Limits()) -> ParsedCert:
    """``incoming`` (an upload of the same certificate) merged into ``stored`` (its
    ``ParsedCert.data``).

    Nothing valid is lost: the result holds every component and signature of both that
    Sequoia verifies, and a revocation in either stays in the result, so a revoked
    certificate stays revoked when an older copy is uploaded. ``incoming`` may be partial
    (a bare revocation: primary key plus revocation signature). Raises
    ``FingerprintMismatch`` when the primary keys differ, and ``LimitExceeded`` when the
    merged certificate would exceed a limit (the stored version is then kept as it is).
    """
    new_packets, foreign = _single(_Input(incoming, limits), "the upload")
    old_packets, _ = _single(_unlimited(stored), "the stored data")
    if old_packets[0] != new_packets[0]:
        raise FingerprintMismatch(
            f"the upload is certificate {_name(new_packets)}, not {_name(old_packets)}"
        )
    # The upload on its own must respect the limits; the merged result is checked again
    # (after canonicalisation: stored + upload side by side count every component twice).
    # Only the upload's work is bounded: the stored part is canonical already (its
    # signatures sit where they verify), and counting it would let anybody who floods a
    # certificate with certifications up to a bound lock its owner out of updates.
    _check_limits(new_packets, limits)
    check_work(new_packets, limits)
    return _parse_one(_combine([old_packets, new_packets]), limits, foreign, checked=True)


def publishable(cert: ParsedCert, attested: Collection[bytes]) -> bytes:
    """The binary certificate lookups serve: ``cert`` reduced to what its own key vouches
    for, with only the user IDs whose exact bytes are in ``attested``.

    ``publishable(cert, ())`` is the identity-free form (primary key, direct-key
    signatures, revocations and subkeys). The parts were computed by the walk that parsed
    ``cert``; parsing ``cert.data`` again gives the same parts (a test holds every Debian
    key to that), so the result depends on nothing but the stored bytes.
    """
    return cert.served.join(attested)


def without_user_ids(data: bytes, dropped: Collection[bytes]) -> bytes:
    """``data`` (one stored, canonical certificate) with the user IDs whose exact bytes are
    in ``dropped`` left out, each with every signature that follows it; everything else
    stays as it is, third-party certifications included (whole exports of a certificate an
    operator removed an address from)."""
    if not dropped:
        return data
    wanted = frozenset(dropped)
    out: list[RawPacket] = []
    skipping = False
    for p in split_packets(data):
        if p.tag == USER_ID:
            skipping = p.body in wanted
        elif p.tag != SIGNATURE:
            skipping = False
        if not skipping:
            out.append(p)
    return encode_packets(out)


def _unlimited(stored: bytes) -> _Input:
    # Stored data was checked against the limits when it was written.
    return _Input(stored, Limits(max_input_bytes=max(len(stored), 1)))


def _single(upload: _Input, what: str) -> tuple[list[RawPacket], int]:
    certs = upload.items()
    if len(certs) != 1:
        raise MultipleCertificates(
            f"{what} holds {len(certs)} certificates; exactly one is expected here"
        )
    return certs[0]


def armor(data: bytes) -> str:
    """``data`` as an ASCII-armored ``PGP PUBLIC KEY BLOCK``, ending in a newline."""
    return _armor(data)


def _crc24_table() -> tuple[int, ...]:
    table = []
    for i in range(256):
        crc = i << 16
        for _ in range(8):
            crc <<= 1
            if crc & 0x1000000:
                crc ^= 0x1864CFB
        table.append(crc & 0xFFFFFF)
    return tuple(table)


_CRC24 = _crc24_table()


def _crc24(data: bytes, crc: int) -> int:
    # RFC 9580's CRC-24, a byte at a time from a table (bit by bit it took several
    # milliseconds for one key).
    table = _CRC24
    for byte in data:
        crc = ((crc << 8) & 0xFFFFFF) ^ table[(crc >> 16) ^ byte]
    return crc


def armor_joined(blocks: Iterable[str]) -> Iterator[str]:
    """Several armored certificates as **one** ``PGP PUBLIC KEY BLOCK`` holding them all,
    produced piece by piece (an answer is streamed, never built whole).

    Clients built on OpenPGP.js (``readKeys``) read only the first armor block of an
    answer and drop the rest silently; a keyring in one block is what GnuPG, Sequoia,
    Hockeypuck and OpenPGP.js all read whole. Only base64 is undone here: no OpenPGP
    parsing on the request path."""
    yield "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\n"
    crc = 0xB704CE
    carry = b""
    for block in blocks:
        data = carry + dearmor(block.encode("ascii"))
        crc = _crc24(data[len(carry) :], crc)
        cut = len(data) - len(data) % 48  # 48 bytes: one line of 64 base64 characters
        carry = data[cut:]
        if cut:
            yield _lines(data[:cut])
    if carry:
        yield _lines(carry)
    checksum = base64.b64encode(crc.to_bytes(3, "big")).decode()
    yield f"={checksum}\n-----END PGP PUBLIC KEY BLOCK-----\n"


def armor_joined_size(blocks: Iterable[str]) -> int:
    """How many characters ``armor_joined(blocks)`` yields, for a ``Content-Length``:
    GnuPG's dirmngr reads no chunked transfer encoding."""
    n = sum(len(dearmor(b.encode("ascii"))) for b in blocks)
    full, rest = divmod(n, 48)
    body = full * 65 + ((4 * -(-rest // 3) + 1) if rest else 0)
    return (
        len("-----BEGIN PGP PUBLIC KEY BLOCK-----\n\n")
        + body
        + len("=XXXX\n-----END PGP PUBLIC KEY BLOCK-----\n")
    )


def _lines(data: bytes) -> str:
    return "".join(
        base64.b64encode(data[i : i + 48]).decode() + "\n" for i in range(0, len(data), 48)
    )
