"""The component walk: which user IDs and subkeys are validly bound, and what is served.

Validity here never asks Sequoia's policy layer: ``Cert.user_ids`` judges "now" under the
standard policy and raises when no binding passes it (SHA-1 bindings, for instance, and 102
of the 905 keys in Debian's keyring have only those), while a keyserver must also serve
expired and old keys and leave the judgement to clients. Instead:

1. ``_sequoia.canonicalise`` has Sequoia verify every self-signature and hands back only the
   signatures that verified *for the component they now follow* (bad ones are cut off at our
   delimiter).
2. We walk that canonical packet sequence: each signature belongs to the component before it.
3. A signature counts for validity only when it is a **self-signature** (see
   ``_issued_by_primary``), of the right type for its component, with a creation time, and
   not made with MD5. Third-party certifications are kept in the stored data but never make
   anything valid, and are never served.
4. From the latest binding of each component we read expiry, key flags and revocation.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import NamedTuple

from attester.openpgp import _large_rsa
from attester.openpgp._keys import (
    ENCRYPTION_ALGORITHMS,
    SIGNING_ALGORITHMS,
    KeyPacket,
    parse_key,
)
from attester.openpgp._packets import (
    PUBLIC_KEY,
    PUBLIC_SUBKEY,
    SIGNATURE,
    USER_ATTRIBUTE,
    USER_ID,
    RawPacket,
)
from attester.openpgp._sequoia import canonicalise
from attester.openpgp._signature import (
    CERTIFICATION_REVOCATION,
    DIRECT_KEY,
    EMBEDDED_SIGNATURE,
    ISSUER_FINGERPRINT,
    ISSUER_KEY_ID,
    KEY_REVOCATION,
    MD5,
    SUBKEY_BINDING,
    SUBKEY_REVOCATION,
    USER_ID_CERTIFICATIONS,
    SigFields,
    SigInfo,
    encode_subpacket,
    parse_signature,
    read_subpackets,
    signature_fields,
)
from attester.openpgp.errors import Unparsable
from attester.openpgp.model import KeyInfo, UserIDInfo
from attester.openpgp.types import Fingerprint, email_from_user_id

# Key flags (RFC 9580 5.2.3.29), first octet.
_FLAG_SIGN = 0x02
_FLAG_ENCRYPT = 0x04 | 0x08  # communications | storage

_USER_ID_SIGS = USER_ID_CERTIFICATIONS | {CERTIFICATION_REVOCATION}
_PRIMARY_SIGS = frozenset({DIRECT_KEY, KEY_REVOCATION})
_SUBKEY_SIGS = frozenset({SUBKEY_BINDING, SUBKEY_REVOCATION})


class Sig(NamedTuple):
    packet: RawPacket
    info: SigInfo | None  # None: a signature we cannot read (never counts)
    by_primary: bool  # a self-signature, by ``_issued_by_primary``


@dataclass(slots=True)
class Component:
    """A key, user ID or user attribute packet and the signatures that follow it."""

    packet: RawPacket
    sigs: list[Sig] = field(default_factory=list)

    def valid(self, types: Collection[int]) -> list[SigInfo]:
        """The self-signatures of one of ``types`` that count (see the module docstring)."""
        return [s.info for s in self.sigs if s.info is not None and _counts(s, types)]


def _counts(sig: Sig, types: Collection[int]) -> bool:
    info = sig.info
    return (
        sig.by_primary
        and info is not None
        and info.sig_type in types
        and info.created is not None
        # MD5 is broken for signatures; GnuPG and Sequoia's policy refuse it too.
        and info.hash_algorithm != MD5
    )


def _issued_by_primary(info: SigInfo | None, key_id: bytes, fpr_value: bytes) -> bool:
    """A self-signature: some issuer subpacket names the primary key, and no issuer in the
    hashed area names another key.

    Why this rule is safe: Sequoia treats a signature as a self-signature, and verifies it with
    the primary key, whenever *any* of its issuers is the primary (``split_sigs`` and
    ``canonicalize`` in sequoia-openpgp ``cert/parser``, ``cert.rs``); one that fails goes to
    the bad signatures. Anything else — no issuer at all, or only other issuers — Sequoia
    files as a third-party certification and checks only against a two-byte hash prefix that
    anybody can forge, so such a signature must never make anything valid.

    Why not "every issuer is the primary": the unhashed area is not signed, anybody can add
    an issuer subpacket to it, and Sequoia merges the unhashed areas of duplicate signatures
    when certificates are merged. Requiring *every* issuer to match would let anybody unbind
    a victim's user IDs by uploading a copy with one extra unhashed issuer. Hashed issuers
    are the signer's own claims, so they must all agree.
    """
    if info is None:
        return False
    if key_id not in info.issuer_key_ids and fpr_value not in info.issuer_fingerprints:
        return False
    return all(k == key_id for k in info.hashed_issuer_key_ids) and all(
        f == fpr_value for f in info.hashed_issuer_fingerprints
    )


@dataclass
class Walk:
    """A certificate after canonicalisation, split into components."""

    key: KeyPacket
    primary: Component
    user_ids: list[Component]
    user_attributes: list[Component]
    subkeys: list[Component]
    bad_signatures: int
    unparsed: int
    originals: dict[RawPacket, tuple[RawPacket, ...]]

    @property
    def fingerprint(self) -> Fingerprint:
        return self.key.fingerprint

    def stored_packets(self, max_signatures: int, max_bytes: int) -> tuple[list[RawPacket], int]:
        """What we store, and how many third-party certifications did not fit.

        The certificate without bad signatures and unreadable packets, each signature as it
        was uploaded (``_sequoia._originals``). Third-party certifications and user
        attributes stay, so merges lose nothing, but ``publishable`` never serves them.

        Third-party certifications are also the one thing anybody can add without limit
        over many uploads, so they give way when the certificate outgrows a limit: a
        component over ``max_signatures`` keeps its self-signatures and the newest
        certifications that fit, and a certificate over ``max_bytes`` loses its oldest
        certifications until it fits. Otherwise whoever floods a user ID up to a limit would
        lock its owner out of every later update (the limits themselves are then checked on
        the result, so self-signatures alone never get trimmed).
        """
        parts: list[tuple[RawPacket, bool]] = []  # (packet, a third-party certification)
        dropped = 0
        for c in (self.primary, *self.user_ids, *self.user_attributes, *self.subkeys):
            parts.append((c.packet, False))
            sigs = [(s, p) for s in c.sigs for p in self.originals.get(s.packet, (s.packet,))]
            if len(sigs) > max_signatures:
                own = sum(1 for s, _ in sigs if s.by_primary)
                others = sorted((p for s, p in sigs if not s.by_primary), key=_created)
                keep = set(others[len(others) - max(0, max_signatures - own) :])
                dropped += len(others) - len(keep)
                sigs = [(s, p) for s, p in sigs if s.by_primary or p in keep]
            parts.extend((p, not s.by_primary) for s, p in sigs)

        size = sum(_encoded_size(p) for p, _ in parts)
        if size > max_bytes:
            gone: set[RawPacket] = set()
            for p in sorted((p for p, third in parts if third), key=_created):
                if size <= max_bytes:
                    break
                gone.add(p)
                size -= _encoded_size(p)
            dropped += len(gone)
            parts = [(p, third) for p, third in parts if p not in gone]
        return [p for p, _ in parts], dropped


def _encoded_size(p: RawPacket) -> int:
    n = len(p.body)
    return n + (2 if n < 192 else 3 if n < 8384 else 6)


def _created(p: RawPacket) -> int:
    try:
        return parse_signature(p.body).created or 0
    except ValueError:
        return 0


def walk(packets: list[RawPacket]) -> Walk:
    """Canonicalise one certificate with Sequoia and split it into components.

    ``packets`` starts with the primary key packet and holds only certificate packets.
    Raises ``Unparsable`` when Sequoia refuses the certificate or its primary key.
    """
    canonical = canonicalise(packets)
    good = canonical.good
    if not good or good[0].tag != PUBLIC_KEY:
        raise Unparsable("the certificate does not start with a public key")
    try:
        key = parse_key(good[0].body)
    except ValueError as e:
        raise Unparsable(f"the primary key could not be read: {e}") from e
    if key.fingerprint.hex != canonical.fingerprint:
        raise Unparsable("the primary key's fingerprint could not be computed consistently")

    # The issuer forms of the primary key: its key id, and the body of an issuer
    # fingerprint subpacket naming it (version octet, then the fingerprint).
    key_id = bytes.fromhex(key.fingerprint.key_id.hex)
    fpr_value = bytes((key.version,)) + bytes.fromhex(key.fingerprint.hex)

    primary = Component(good[0])
    user_ids: list[Component] = []
    user_attributes: list[Component] = []
    subkeys: list[Component] = []
    current = primary
    for p in good[1:]:
        if p.tag == SIGNATURE:
            try:
                info: SigInfo | None = parse_signature(p.body)
            except ValueError:
                info = None
            current.sigs.append(Sig(p, info, _issued_by_primary(info, key_id, fpr_value)))
            continue
        current = Component(p)
        if p.tag == USER_ID:
            user_ids.append(current)
        elif p.tag == USER_ATTRIBUTE:
            user_attributes.append(current)
        elif p.tag == PUBLIC_SUBKEY:
            subkeys.append(current)
        else:  # pragma: no cover - canonicalise() only returns certificate packets
            raise Unparsable(f"unexpected packet with tag {p.tag} in a certificate")
    bad = len(canonical.bad) - _rescue_large_rsa(
        key, canonical.bad, primary, [*user_ids, *user_attributes], subkeys, key_id, fpr_value
    )
    return Walk(
        key,
        primary,
        user_ids,
        user_attributes,
        subkeys,
        bad,
        canonical.unparsed,
        canonical.originals,
    )


def _rescue_large_rsa(
    key: KeyPacket,
    bad: list[RawPacket],
    primary: Component,
    identities: list[Component],
    subkeys: list[Component],
    key_id: bytes,
    fpr_value: bytes,
) -> int:
    """Attach the bad signatures that only failed because Sequoia cannot verify RSA over
    4096 bits (see ``_large_rsa``); how many were attached.

    With such a primary key, every self-signature is in question. With a smaller primary
    key, only the bindings of such signing subkeys are: their back-signature is made by the
    subkey. Everything else Sequoia judged itself.
    """
    large_primary = _large_rsa.applies(key.algorithm, key.bits)
    large_subkeys = [c for c in subkeys if _is_large_rsa(c.packet)]
    if not large_primary and not large_subkeys:
        return 0
    mine = []
    for p in bad:
        try:
            info = parse_signature(p.body)
        except ValueError:
            continue
        if _issued_by_primary(info, key_id, fpr_value) and (
            large_primary or info.sig_type == SUBKEY_BINDING
        ):
            mine.append((p, info))
    if not large_primary:
        identities, subkeys = [], large_subkeys
    found = _large_rsa.rescue(
        primary.packet.body, mine, [c.packet for c in identities], [c.packet for c in subkeys]
    )
    for f in found:
        if f.user_id is not None:
            target = identities[f.user_id]
        elif f.subkey is not None:
            target = subkeys[f.subkey]
        else:
            target = primary
        target.sigs.append(Sig(f.packet, f.info, True))
    return len(found)


def _is_large_rsa(packet: RawPacket) -> bool:
    try:
        k = parse_key(packet.body)
    except ValueError:
        return False
    return _large_rsa.applies(k.algorithm, k.bits)


def _time(ts: int) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def _recency(s: SigInfo) -> tuple[int, bool, bool, int, bool, int]:
    """Order of self-signatures, newest last. Signatures made in the same second (a tool
    re-signing everything at once) are ordered by what they say, most lasting last, so the
    result never depends on the order Sequoia wrote them in."""
    return (
        s.created or 0,
        s.primary_user_id,
        s.key_expiry is None,
        s.key_expiry or 0,
        s.sig_expiry is None,
        s.sig_expiry or 0,
    )


def _latest(sigs: Iterable[SigInfo]) -> SigInfo | None:
    return max(sigs, key=_recency, default=None)


def _capabilities(binding: SigInfo | None, algorithm: int) -> tuple[bool, bool]:
    """(can_encrypt, can_sign) from the binding's key flags, or — when it has none, as
    signatures made before key flags existed — from what the algorithm can do."""
    if binding is not None and binding.key_flags is not None:
        return bool(binding.key_flags & _FLAG_ENCRYPT), bool(binding.key_flags & _FLAG_SIGN)
    return algorithm in ENCRYPTION_ALGORITHMS, algorithm in SIGNING_ALGORITHMS


def _key_expiry(key: KeyPacket, binding: SigInfo | None) -> datetime | None:
    if binding is None or binding.key_expiry is None:
        return None
    return _time(key.created + binding.key_expiry)


class Evaluation(NamedTuple):
    primary: KeyInfo
    subkeys: tuple[KeyInfo, ...]
    user_ids: tuple[UserIDInfo, ...]
    usable: bool  # at least one valid self-signature binds or revokes something
    ignored: tuple[str, ...]


def evaluate(w: Walk) -> Evaluation:
    """Validity of every component of ``w``, as the model reports it."""
    ignored: list[str] = []

    # User IDs. User attributes (photos) are never identities, so they are not evaluated.
    user_ids: list[UserIDInfo] = []
    uid_bindings: list[tuple[UserIDInfo, SigInfo]] = []
    for c in w.user_ids:
        text = c.packet.body.decode("utf-8", errors="replace")
        latest = _latest(c.valid(USER_ID_CERTIFICATIONS))
        if latest is None or latest.created is None:
            ignored.append(f"user ID {text[:100]!r} has no valid self-signature")
            continue
        created = latest.created
        revoked = any((r.created or 0) >= created for r in c.valid((CERTIFICATION_REVOCATION,)))
        info = UserIDInfo(
            raw=c.packet.body,
            text=text,
            email=email_from_user_id(text),
            created=_time(created),
            expires=_time(created + latest.sig_expiry) if latest.sig_expiry else None,
            revoked=revoked,
            primary=latest.primary_user_id,
        )
        user_ids.append(info)
        uid_bindings.append((info, latest))
    if w.user_attributes:
        ignored.append(
            f"{len(w.user_attributes)} user attribute(s) (photos) are stored, never served"
        )

    # The primary key. Its expiry and flags come from the owner's newest statement about it:
    # the newest of its direct-key signatures and of the latest bindings of its (unrevoked)
    # user IDs. RFC 9580 points at the primary user ID's binding, but owners who extend
    # their key often re-sign only some user IDs, and GnuPG, like us, takes the newest.
    direct = w.primary.valid((DIRECT_KEY,))
    key_revocations = w.primary.valid((KEY_REVOCATION,))
    live = [b for u, b in uid_bindings if not u.revoked] or [b for _, b in uid_bindings]
    key_binding = _latest([*direct, *live])
    can_encrypt, can_sign = _capabilities(key_binding, w.key.algorithm)
    primary = KeyInfo(
        fingerprint=w.key.fingerprint,
        key_id=w.key.fingerprint.key_id,
        algorithm=w.key.algorithm,
        algorithm_name=w.key.algorithm_name,
        bits=w.key.bits,
        created=_time(w.key.created),
        expires=_key_expiry(w.key, key_binding),
        # Any valid self-revocation revokes the certificate, whatever its reason: a revoked
        # certificate must look revoked everywhere, and a newer self-signature cannot undo it.
        revoked=bool(key_revocations),
        can_encrypt=can_encrypt,
        can_sign=can_sign,
    )

    subkeys: list[KeyInfo] = []
    for c in w.subkeys:
        try:
            key = parse_key(c.packet.body)
        except ValueError as e:
            ignored.append(f"a subkey could not be read: {e}")
            continue
        binding = _latest(c.valid((SUBKEY_BINDING,)))
        if binding is None or binding.created is None:
            ignored.append(f"subkey {key.fingerprint} has no valid binding signature")
            continue
        # As for the primary key, any valid self-revocation revokes the subkey, even one older
        # than the latest binding and with a "soft" reason: GnuPG agrees ("it is not possible
        # to un-revoke a subkey"), and a keyserver errs on the side of revoked.
        revoked = bool(c.valid((SUBKEY_REVOCATION,)))
        can_encrypt, can_sign = _capabilities(binding, key.algorithm)
        subkeys.append(
            KeyInfo(
                fingerprint=key.fingerprint,
                key_id=key.fingerprint.key_id,
                algorithm=key.algorithm,
                algorithm_name=key.algorithm_name,
                bits=key.bits,
                created=_time(key.created),
                expires=_key_expiry(key, binding),
                revoked=revoked,
                can_encrypt=can_encrypt,
                can_sign=can_sign,
            )
        )

    if w.bad_signatures:
        ignored.append(f"{w.bad_signatures} signature(s) that did not verify were dropped")
    if w.unparsed:
        ignored.append(f"{w.unparsed} packet(s) that could not be parsed were dropped")
    usable = bool(user_ids or subkeys or direct or key_revocations)
    return Evaluation(primary, tuple(subkeys), tuple(user_ids), usable, tuple(ignored))


def publishable_packets(w: Walk, attested: Collection[bytes]) -> list[RawPacket]:
    """The certificate as lookups serve it: the primary key with its direct-key
    self-signatures and self-revocations; the validly bound user IDs whose exact bytes are in
    ``attested``, each with only its own self-signatures and self-revocations; every validly
    bound subkey with its bindings and revocations. No third-party certification (certificate
    flooding, CVE-2019-13050), no user attribute, no bad signature, no unknown packet, and
    no unhashed subpacket anybody but the key owner could have added (``_served``)."""
    key_id = bytes.fromhex(w.key.fingerprint.key_id.hex)
    fpr_value = bytes((w.key.version,)) + bytes.fromhex(w.key.fingerprint.hex)

    def sigs(c: Component, types: Collection[int]) -> list[RawPacket]:
        return [_served(s.packet, key_id, fpr_value) for s in c.sigs if _counts(s, types)]

    out = [w.primary.packet, *sigs(w.primary, _PRIMARY_SIGS)]
    for c in w.user_ids:
        if c.packet.body in attested and c.valid(USER_ID_CERTIFICATIONS):
            out += [c.packet, *sigs(c, _USER_ID_SIGS)]
    for c in w.subkeys:
        if c.valid((SUBKEY_BINDING,)):
            try:
                parse_key(c.packet.body)
            except ValueError:
                continue
            out += [c.packet, *(_one_backsig(w, c, p) for p in sigs(c, _SUBKEY_SIGS))]
    return out


def _one_backsig(w: Walk, subkey: Component, p: RawPacket) -> RawPacket:
    """A served subkey binding with the one back-signature that verifies, when its unhashed
    area carries several.

    GnuPG checks only the first back-signature it finds. Anybody can add one to the unsigned
    area, and Sequoia merges unhashed areas, so a bogus one could come first and make GnuPG
    refuse every signature of the subkey. Each candidate is tried alone; the first that makes
    the binding verify is kept.
    """
    fields = signature_fields(p.body)
    if fields is None:
        return p
    unhashed = read_subpackets(p.body[fields.unhashed_start : fields.unhashed_end])
    embedded = [v for t, v in unhashed if t == EMBEDDED_SIGNATURE]
    if len(embedded) < 2:
        return p
    others = [(t, v) for t, v in unhashed if t != EMBEDDED_SIGNATURE]
    for candidate in embedded:
        trial = _with_unhashed(p, fields, [*others, (EMBEDDED_SIGNATURE, candidate)])
        if _binding_verifies(w, subkey.packet, trial):
            return trial
    return _with_unhashed(p, fields, others)


def _binding_verifies(w: Walk, subkey: RawPacket, binding: RawPacket) -> bool:
    if _large_rsa.applies(w.key.algorithm, w.key.bits):
        try:
            info = parse_signature(binding.body)
        except ValueError:
            return False
        found = _large_rsa.rescue(w.primary.packet.body, [(binding, info)], [], [subkey])
        return bool(found)
    try:
        return binding in canonicalise([w.primary.packet, subkey, binding]).good
    except Unparsable:
        return False


def _with_unhashed(
    p: RawPacket, fields: SigFields, subpackets: list[tuple[int, bytes]]
) -> RawPacket:
    area = b"".join(encode_subpacket(t, v) for t, v in subpackets)
    width = fields.unhashed_start - fields.hashed_end
    body = (
        p.body[: fields.hashed_end]
        + len(area).to_bytes(width, "big")
        + area
        + p.body[fields.unhashed_end :]
    )
    return RawPacket(p.tag, body)


def _served(p: RawPacket, key_id: bytes, fpr_value: bytes) -> RawPacket:
    """A self-signature with its unhashed area reduced to what clients need: the issuer
    naming the primary key and embedded back-signatures.

    The unhashed area is not signed, and Sequoia folds the unhashed areas of duplicate
    signatures together, so a stored binding may carry subpackets a third party added. An
    extra issuer there is harmless to us but not to every client: GnuPG takes the first
    issuer key id it finds, and would no longer see the binding as a self-signature.
    """
    fields = signature_fields(p.body)
    if fields is None:
        return p  # v3: nothing unhashed
    try:
        subpackets = read_subpackets(p.body[fields.unhashed_start : fields.unhashed_end])
    except ValueError:
        subpackets = []
    kept: list[tuple[int, bytes]] = []
    seen: set[int] = set()
    for typ, value in subpackets:
        mine = (typ == ISSUER_KEY_ID and value == key_id) or (
            typ == ISSUER_FINGERPRINT and value == fpr_value
        )
        if (mine and typ not in seen) or typ == EMBEDDED_SIGNATURE:
            kept.append((typ, value))
            seen.add(typ)
    return _with_unhashed(p, fields, kept)
