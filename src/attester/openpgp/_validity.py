"""Validity: what the walked components say, as the model reports it (``evaluate``):
which user IDs and subkeys are validly bound, expiry, key flags and revocations, each read
from the latest self-signature that counts (``_walk.counts``)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import NamedTuple

from attester.openpgp._keys import ENCRYPTION_ALGORITHMS, SIGNING_ALGORITHMS, KeyPacket, parse_key
from attester.openpgp._signature import (
    CERTIFICATION_REVOCATION,
    DIRECT_KEY,
    KEY_REVOCATION,
    SUBKEY_BINDING,
    SUBKEY_REVOCATION,
    USER_ID_CERTIFICATIONS,
    SigInfo,
)
from attester.openpgp._walk import Walk
from attester.openpgp.model import KeyInfo, UserIDInfo
from attester.openpgp.types import email_from_user_id

# Key flags (RFC 9580 5.2.3.29), first octet.
_FLAG_SIGN = 0x02
_FLAG_ENCRYPT = 0x04 | 0x08  # communications | storage


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
        # NUL cannot be stored in a PostgreSQL text column; the raw bytes keep it.
        text = c.packet.body.decode("utf-8", errors="replace").replace("\x00", "\ufffd")
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
