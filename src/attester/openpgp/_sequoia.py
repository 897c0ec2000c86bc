"""The one place that calls pysequoia. Its exceptions become ``attester.openpgp`` errors here
and nowhere else (the httpx ``map_httpcore_exceptions`` pattern).

What we use Sequoia for is canonicalisation: parsing a certificate verifies every
self-signature cryptographically, moves a valid one that sits on the wrong component to the
component it verifies for, merges duplicates, and keeps a self-signature that verifies for
nothing as a *bad signature*. ``bytes(cert)`` then writes the components with their good
signatures and, **after everything else, all bad signatures** — with nothing to tell where
the good ones end. A naive packet walk would hand those bad signatures to whatever component
came last (a forged binding after ``Mallory``, the last user ID, would "bind" it).

So we append a delimiter of our own: a private-tag packet (tag 61) with a fixed body. Sequoia
keeps unknown packets as "unknown components" and writes them after the subkeys and *before*
the bad signatures. Everything after our delimiter is therefore bad, and everything before it
sits on the component it was verified for. ``tests/openpgp/test_sequoia_assumptions.py`` pins
this ordering and fails the day Sequoia changes it.
"""

from __future__ import annotations

from typing import NamedTuple

from pysequoia import ArmorKind, Cert
from pysequoia import armor as _sq_armor
from pysequoia.packet import PacketPile

from attester.openpgp._packets import (
    PUBLIC_KEY,
    PUBLIC_SUBKEY,
    SIGNATURE,
    USER_ID,
    RawPacket,
    encode_packets,
    split_packets,
)
from attester.openpgp._signature import signature_fields
from attester.openpgp.errors import Unparsable

DELIMITER = RawPacket(61, b"attester: every packet after this one is a bad signature")


class Canonical(NamedTuple):
    """Sequoia's canonical form of one certificate, split at our delimiter."""

    fingerprint: str  # Sequoia's fingerprint of the primary key, uppercase hex
    good: list[RawPacket]  # components, each followed by the signatures that belong to it
    bad: list[RawPacket]  # signatures that verified for no component
    unparsed: int  # trailing packets Sequoia could not parse (dropped)
    # Signatures of ``good`` that Sequoia re-serialised differently from the input, mapped
    # to the input packets they stand for (see ``_originals``).
    originals: dict[RawPacket, tuple[RawPacket, ...]]


def _first_line(e: BaseException) -> str:
    # pysequoia appends a Rust backtrace to its messages; users get the sentence only.
    return str(e).split("\n", 1)[0].strip() or type(e).__name__


def _is_rust_panic(e: BaseException) -> bool:
    # pyo3 turns a Rust panic into ``pyo3_runtime.PanicException``, a BaseException subclass
    # that cannot be imported by name; a panic on hostile input must not escape as a crash.
    return type(e).__name__ == "PanicException"


def canonicalise(packets: list[RawPacket]) -> Canonical:
    """Sequoia's canonical form of one certificate (``packets`` starts with its primary key and
    holds no secret or unknown packets). Raises ``Unparsable`` when Sequoia refuses it."""
    data = encode_packets(packets) + DELIMITER.serialize()
    try:
        cert = Cert.from_bytes(data)
        fingerprint = cert.fingerprint.upper()
        out = bytes(cert)
    except Exception as e:
        raise Unparsable(f"the certificate could not be read: {_first_line(e)}") from e
    except BaseException as e:
        if not _is_rust_panic(e):
            raise
        raise Unparsable(f"the certificate could not be read: {_first_line(e)}") from e

    frames = split_packets(out)
    try:
        cut = frames.index(DELIMITER)
    except ValueError:
        # Not a user error: the assumption this module is built on no longer holds.
        raise RuntimeError(
            "Sequoia no longer writes our delimiter packet; bad signatures cannot be told "
            "apart from good ones (see attester.openpgp._sequoia)"
        ) from None
    good = frames[:cut]
    bad = frames[cut + 1 :]

    # Belt and braces: a packet Sequoia could not parse would be kept as an "unknown
    # component" (written after the subkeys, before our delimiter) with its original tag, and
    # would look like one more signature of the last subkey. Ask Sequoia's packet parser which
    # packets it understood and cut at the first one it did not.
    unparsed = 0
    try:
        pile = list(PacketPile.from_bytes(encode_packets(good)))
    except Exception as e:
        raise Unparsable(f"the certificate could not be read: {_first_line(e)}") from e
    if len(pile) != len(good):
        raise RuntimeError("Sequoia's packet parser and ours disagree on the packet framing")
    for i, (raw, parsed) in enumerate(zip(good, pile, strict=True)):
        if raw.tag == SIGNATURE:
            understood = parsed.signature_version is not None
        elif raw.tag in (PUBLIC_KEY, PUBLIC_SUBKEY):
            understood = parsed.fingerprint is not None
        elif raw.tag == USER_ID:
            understood = parsed.user_id is not None
        else:
            understood = True
        if not understood:
            unparsed = len(good) - i
            good = good[:i]
            break
    return Canonical(fingerprint, good, bad, unparsed, _originals(packets, good))


def _originals(
    given: list[RawPacket], good: list[RawPacket]
) -> dict[RawPacket, tuple[RawPacket, ...]]:
    """The input signatures behind each signature Sequoia wrote with different bytes.

    Sequoia normalises the unhashed subpacket area (it reorders it, and folds the unhashed
    areas of duplicates into one signature). Nothing signed changes, but the bytes do, and
    SKS and Hockeypuck name a key by the MD5 of its packets as uploaded: storing Sequoia's
    bytes would give 181 of the 905 Debian keys another digest than every SKS peer computes,
    and reconciliation would trade them back and forth forever. So what we store is the
    uploaded packets that Sequoia kept; the walk still reads Sequoia's.
    """
    known = set(given)
    changed = [p for p in good if p.tag == SIGNATURE and p not in known]
    if not changed:
        return {}  # the common case: Sequoia wrote every packet as it came
    by_core: dict[bytes, list[RawPacket]] = {}
    for p in given:
        core = _signed_core(p)
        if core is not None and p not in by_core.get(core, ()):
            by_core.setdefault(core, []).append(p)
    out: dict[RawPacket, tuple[RawPacket, ...]] = {}
    for p in changed:
        core = _signed_core(p)
        if core is not None and core in by_core:
            out[p] = tuple(by_core[core])
    return out


def _signed_core(p: RawPacket) -> bytes | None:
    """A signature without its unhashed area: what makes it that signature."""
    if p.tag != SIGNATURE:
        return None
    fields = signature_fields(p.body)
    if fields is None:
        return None
    return p.body[: fields.hashed_end] + p.body[fields.unhashed_end :]


def armor(data: bytes) -> str:
    """ASCII armor for a public key block."""
    text = _sq_armor(data, ArmorKind.PublicKey)
    return text if text.endswith("\n") else text + "\n"
