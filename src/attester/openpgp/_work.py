"""How much work Sequoia would do to canonicalise a certificate, bounded before it starts.

Canonicalisation verifies each signature against the component it follows. A signature
that fails there is not dropped at once: Sequoia looks for the component it belongs to, and
tries it against **every** component of the certificate, hashing that component each time:

- a signature naming the primary key as an issuer is a self-signature to Sequoia; it is
  verified cryptographically, so a junk one (its hash prefix forged to fit) fails on its
  own component and is then tried against all the others;
- any other signature (a third-party certification) is checked only by its two-octet hash
  prefix, and one whose prefix does not fit the component it follows is likewise tried
  against all the others.

So the work is about (such candidates) x (bytes of all components), quadratic in the
input, and Sequoia does it holding the GIL: 12,000 junk signatures on a 940 KB key took
seconds of CPU (issue 10 item 7). The per-component limits of ``certificates`` did not
see it. ``check_work`` counts, for one certificate, before any cryptography runs:

- every signature (``max_signatures``),
- the signatures naming the primary key as issuer (``max_self_signatures``),
- the other signatures whose hash prefix does not fit the component they follow, computed
  here the way RFC 9580 5.2.4 hashes them (``max_misplaced_signatures``),
- the bytes of each key, user ID or user attribute packet (``max_component_bytes``).

Hashing each component once per hash algorithm and copying the state per signature keeps
this check linear in the input.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

from attester.openpgp._keys import fingerprint_of
from attester.openpgp._packets import (
    PUBLIC_KEY,
    PUBLIC_SUBKEY,
    SIGNATURE,
    USER_ATTRIBUTE,
    USER_ID,
    RawPacket,
)
from attester.openpgp._signature import (
    CERTIFICATION_REVOCATION,
    DIRECT_KEY,
    KEY_REVOCATION,
    SUBKEY_BINDING,
    SUBKEY_REVOCATION,
    USER_ID_CERTIFICATIONS,
    parse_signature,
    signature_fields,
)
from attester.openpgp.errors import LimitExceeded
from attester.openpgp.model import Limits

_HASHES: dict[int, Callable[[], hashlib._Hash]] = {
    1: hashlib.md5,
    2: hashlib.sha1,
    8: hashlib.sha256,
    9: hashlib.sha384,
    10: hashlib.sha512,
    11: hashlib.sha224,
    12: hashlib.sha3_256,
    14: hashlib.sha3_512,
}

# Which signature types belong on which kind of component.
_FITS: dict[int, frozenset[int]] = {
    PUBLIC_KEY: frozenset({DIRECT_KEY, KEY_REVOCATION}),
    USER_ID: USER_ID_CERTIFICATIONS | {CERTIFICATION_REVOCATION},
    USER_ATTRIBUTE: USER_ID_CERTIFICATIONS | {CERTIFICATION_REVOCATION},
    PUBLIC_SUBKEY: frozenset({SUBKEY_BINDING, SUBKEY_REVOCATION}),
}
_NAMES = {
    PUBLIC_KEY: "the primary key",
    USER_ID: "a user ID",
    USER_ATTRIBUTE: "a user attribute",
    PUBLIC_SUBKEY: "a subkey",
}


def _key_material(body: bytes) -> bytes:
    if body[:1] == b"\x06":
        return b"\x9b" + len(body).to_bytes(4, "big") + body
    return b"\x99" + len(body).to_bytes(2, "big") + body


def _material(primary: bytes, component: RawPacket) -> bytes:
    """What a signature on ``component`` hashes before its own fields (RFC 9580 5.2.4)."""
    head = _key_material(primary)
    if component.tag == PUBLIC_KEY:
        return head
    if component.tag == PUBLIC_SUBKEY:
        return head + _key_material(component.body)
    lead = b"\xb4" if component.tag == USER_ID else b"\xd1"
    return head + lead + len(component.body).to_bytes(4, "big") + component.body


class _Component:
    """One component and its material, hashed at most once per hash algorithm."""

    def __init__(self, primary: bytes, packet: RawPacket) -> None:
        self.packet = packet
        self.material = _material(primary, packet)
        self._states: dict[int, hashlib._Hash] = {}

    def fits(self, sig: bytes) -> bool:
        """Whether ``sig``'s type belongs on this component and its hash prefix fits it."""
        if len(sig) < 4:
            return False
        version = sig[0]
        if version == 3:
            if len(sig) < 19 or sig[1] != 5:
                return False
            sig_type, algorithm, trailer, prefix = sig[2], sig[16], sig[2:7], sig[17:19]
        elif version in (4, 6):
            fields = signature_fields(sig)
            if fields is None:
                return False
            sig_type, algorithm = sig[1], sig[3]
            hashed = sig[: fields.hashed_end]
            trailer = hashed + bytes((version, 0xFF)) + len(hashed).to_bytes(4, "big")
            prefix = sig[fields.prefix_at : fields.prefix_at + 2]
        else:
            return False
        if sig_type not in _FITS[self.packet.tag] or algorithm not in _HASHES:
            return False
        if version == 6:
            # The salt is hashed first, so nothing can be shared between signatures.
            fields = signature_fields(sig)
            assert fields is not None
            at = fields.prefix_at + 2
            if at >= len(sig) or at + 1 + sig[at] > len(sig):
                return False
            h = _HASHES[algorithm]()
            h.update(sig[at + 1 : at + 1 + sig[at]])
            h.update(self.material)
        else:
            state = self._states.get(algorithm)
            if state is None:
                state = self._states[algorithm] = _HASHES[algorithm]()
                state.update(self.material)
            h = state.copy()
        h.update(trailer)
        return h.digest()[:2] == prefix


def _names_primary(sig: bytes, key_id: bytes, fpr: bytes) -> bool:
    try:
        info = parse_signature(sig)
    except ValueError:
        return False
    return key_id in info.issuer_key_ids or fpr in info.issuer_fingerprints


def check_work(packets: list[RawPacket], limits: Limits) -> None:
    """Raise ``LimitExceeded`` when canonicalising ``packets`` (one certificate, primary key
    first, packets as uploaded) could take more work than ``limits`` allow."""
    primary = packets[0]
    try:
        fingerprint = fingerprint_of(primary.body)
    except ValueError:
        return  # Sequoia refuses a primary key it cannot read before verifying anything
    key_id = bytes.fromhex(fingerprint.key_id.hex)
    fpr = bytes((fingerprint.version,)) + bytes.fromhex(fingerprint.hex)
    total = own = misplaced = 0
    component: _Component | None = None
    for p in packets:
        if p.tag != SIGNATURE:
            if len(p.body) > limits.max_component_bytes:
                raise LimitExceeded(
                    f"{_NAMES.get(p.tag, 'a component')} of {len(p.body)} bytes exceeds the "
                    f"limit of {limits.max_component_bytes} bytes per key, user ID or user "
                    "attribute"
                )
            component = _Component(primary.body, p)
            continue
        total += 1
        if total > limits.max_signatures:
            raise LimitExceeded(
                f"the certificate carries more than {limits.max_signatures} signatures "
                "(the limit bounds the work of verifying them)"
            )
        if _names_primary(p.body, key_id, fpr):
            own += 1
            if own > limits.max_self_signatures:
                raise LimitExceeded(
                    f"the certificate carries more than {limits.max_self_signatures} "
                    "signatures naming its primary key as issuer (each one that does not "
                    "verify is tried against every component)"
                )
        elif component is None or not component.fits(p.body):
            misplaced += 1
            if misplaced > limits.max_misplaced_signatures:
                raise LimitExceeded(
                    f"the certificate carries more than {limits.max_misplaced_signatures} "
                    "third-party signatures that do not fit the component they follow "
                    "(each one is tried against every component)"
                )
