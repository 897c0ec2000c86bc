"""What lookups serve of a walked certificate (``served_form``): the owner's own
statements only, with unhashed areas reduced to what clients need."""

from __future__ import annotations

from collections.abc import Collection

from attester.openpgp import _large_rsa
from attester.openpgp._keys import parse_key
from attester.openpgp._packets import RawPacket, encode_packets
from attester.openpgp._sequoia import canonicalise
from attester.openpgp._signature import (
    EMBEDDED_SIGNATURE,
    ISSUER_FINGERPRINT,
    ISSUER_KEY_ID,
    SUBKEY_BINDING,
    USER_ID_CERTIFICATIONS,
    SigFields,
    encode_subpacket,
    parse_signature,
    read_subpackets,
    signature_fields,
)
from attester.openpgp._walk import PRIMARY_SIGS, SUBKEY_SIGS, USER_ID_SIGS, Component, Walk, counts
from attester.openpgp.errors import Unparsable
from attester.openpgp.model import ServedForm


def served_form(w: Walk) -> ServedForm:
    """The certificate as lookups serve it, in parts (``ServedForm``): the primary key with
    its direct-key self-signatures and self-revocations; each validly bound user ID with
    only its own self-signatures and self-revocations; every validly bound subkey with its
    bindings and revocations. No third-party certification (certificate flooding,
    CVE-2019-13050), no user attribute, no bad signature, no unknown packet, and no unhashed
    subpacket anybody but the key owner could have added (``_served``)."""
    key_id = bytes.fromhex(w.key.fingerprint.key_id.hex)
    fpr_value = bytes((w.key.version,)) + bytes.fromhex(w.key.fingerprint.hex)

    def sigs(c: Component, types: Collection[int]) -> list[RawPacket]:
        return [_served(s.packet, key_id, fpr_value) for s in c.sigs if counts(s, types)]

    head = encode_packets([w.primary.packet, *sigs(w.primary, PRIMARY_SIGS)])
    user_ids = tuple(
        (c.packet.body, encode_packets([c.packet, *sigs(c, USER_ID_SIGS)]))
        for c in w.user_ids
        if c.valid(USER_ID_CERTIFICATIONS)
    )
    tail: list[RawPacket] = []
    for c in w.subkeys:
        if c.valid((SUBKEY_BINDING,)):
            try:
                parse_key(c.packet.body)
            except ValueError:
                continue
            tail += [c.packet, *(_one_backsig(w, c, p) for p in sigs(c, SUBKEY_SIGS))]
    return ServedForm(head, user_ids, encode_packets(tail))


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
