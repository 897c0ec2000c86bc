"""The component walk: Sequoia's canonical form split into components, each with the
signatures that belong to it, and which of those signatures count as self-signatures.
``_validity`` reads what the components say; ``_served`` decides what lookups get.

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

from collections.abc import Collection
from dataclasses import dataclass, field
from typing import NamedTuple

from attester.openpgp import _large_rsa
from attester.openpgp._keys import (
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
    KEY_REVOCATION,
    MD5,
    SUBKEY_BINDING,
    SUBKEY_REVOCATION,
    USER_ID_CERTIFICATIONS,
    SigInfo,
    parse_signature,
)
from attester.openpgp.errors import Unparsable
from attester.openpgp.types import Fingerprint

USER_ID_SIGS = USER_ID_CERTIFICATIONS | {CERTIFICATION_REVOCATION}
PRIMARY_SIGS = frozenset({DIRECT_KEY, KEY_REVOCATION})
SUBKEY_SIGS = frozenset({SUBKEY_BINDING, SUBKEY_REVOCATION})


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
        return [s.info for s in self.sigs if s.info is not None and counts(s, types)]


def counts(sig: Sig, types: Collection[int]) -> bool:
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

    def stored_packets(
        self, max_signatures: int, max_bytes: int, max_unbound: int = 1 << 30
    ) -> tuple[list[RawPacket], int, int]:
        """What we store, how many third-party certifications did not fit, and how many
        components nobody validly bound were left out.

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

        User IDs, user attributes and subkeys that carry no self-signature of their kind
        (unbound: anybody can append them, with third-party certifications) are kept only
        up to ``max_unbound`` per certificate, so nobody can pad someone else's key until
        its owner hits a limit.
        """
        parts: list[tuple[RawPacket, bool]] = []  # (packet, a third-party certification)
        dropped = unbound = 0
        components = [
            *((c, USER_ID_SIGS) for c in (*self.user_ids, *self.user_attributes)),
            *((c, SUBKEY_SIGS) for c in self.subkeys),
        ]
        owned = [self.primary]
        for c, types in components:
            if c.valid(types):
                owned.append(c)
            elif unbound < max_unbound:
                unbound += 1
                owned.append(c)
        left_out = len(components) + 1 - len(owned)
        for c in owned:
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
        return [p for p, _ in parts], dropped, left_out


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
