"""What the component walk assumes about Sequoia, pinned. If one of these fails after a
pysequoia upgrade, ``attester.openpgp._sequoia`` / ``_walk`` must be revisited before
anything else: the walk may then bind components that are not bound.
"""

from __future__ import annotations

import pytest
from pysequoia import Cert

from attester.openpgp import parse_certificate
from attester.openpgp._packets import RawPacket, encode_packets, split_packets
from attester.openpgp._sequoia import DELIMITER, canonicalise
from attester.openpgp._signature import parse_signature
from tests.openpgp import forge as f

MALLORY = b"Mallory <mallory@example.org>"


def _raw(packets: list[tuple[int, bytes]]) -> list[RawPacket]:
    return [RawPacket(t, b) for t, b in packets]


@pytest.mark.parametrize("subkeys", [True, False])
def test_bad_signatures_come_after_the_delimiter(subkeys: bool) -> None:
    carol, packets = f.simple_cert(b"Carol <carol@example.org>", subkeys=subkeys)
    # A real binding by Carol, but for a user ID that is not in the certificate: it verifies
    # for no component, so Sequoia files it as bad.
    bad = f.certify(carol, carol, b"Carol Two <carol2@example.org>")
    spliced = [*packets[:3], (13, MALLORY), (2, bad), *packets[3:]]

    out = split_packets(
        bytes(Cert.from_bytes(encode_packets(_raw(spliced)) + DELIMITER.serialize()))
    )
    cut = out.index(DELIMITER)
    # Sequoia writes the components first (Mallory unbound, right before the delimiter when
    # there are no subkeys), then the unknown delimiter, then every bad signature.
    assert out[cut + 1 :] == [RawPacket(2, bad)]
    assert RawPacket(13, MALLORY) in out[:cut]
    assert RawPacket(2, bad) not in out[:cut]
    assert out[cut - 1].tag == 2 if subkeys else out[cut - 1] == RawPacket(13, MALLORY)


def test_canonicalise_reports_good_and_bad_apart() -> None:
    carol, packets = f.simple_cert(b"Carol <carol@example.org>")
    bad = f.certify(carol, carol, b"Carol Two <carol2@example.org>")
    result = canonicalise(_raw([*packets, (2, bad)]))
    assert result.bad == [RawPacket(2, bad)]
    assert result.fingerprint == carol.fpr_hex
    # Sequoia may reorder components and unhashed subpackets, but keeps every packet.
    assert sorted(p.tag for p in result.good) == sorted(t for t, _ in packets)


def _garbage_on_mallory(carol: f.Key, hashed: list[bytes], unhashed: list[bytes]) -> bytes:
    """An invalid signature whose hash prefix matches ``MALLORY`` on Carol's key, so the
    only thing that can reject it is real verification."""
    someone = f.Key("ed25519")
    sig = someone.sign(0x13, b"unrelated", hashed=hashed, unhashed=unhashed, issuer=False)
    return f.with_prefix_for(sig, f.key_material(carol.body) + f.uid_material(MALLORY))


def test_sequoia_verifies_any_signature_that_names_the_primary() -> None:
    """Our self-signature rule ("some issuer is the primary, no hashed issuer is another key")
    is only safe because Sequoia verifies every signature with the primary key as soon as
    *any* issuer names it, wherever the issuer subpacket sits."""
    carol, packets = f.simple_cert(b"Carol <carol@example.org>")
    other = f.Key("ed25519")
    shapes = [
        ([], [f.subpacket(f.ISSUER, carol.key_id)]),
        (
            [f.subpacket(f.ISSUER_FPR, b"\x04" + other.fingerprint)],
            [f.subpacket(f.ISSUER, carol.key_id)],
        ),
        ([], [f.subpacket(f.ISSUER, other.key_id), f.subpacket(f.ISSUER, carol.key_id)]),
        (
            [f.subpacket(f.ISSUER, other.key_id)],
            [f.subpacket(f.ISSUER_FPR, b"\x04" + carol.fingerprint)],
        ),
    ]
    for hashed, unhashed in shapes:
        forged = _garbage_on_mallory(carol, hashed, unhashed)
        result = canonicalise(_raw([*packets[:3], (13, MALLORY), (2, forged), *packets[3:]]))
        assert RawPacket(2, forged) in result.bad, (hashed, unhashed)


def test_sequoia_keeps_third_party_signatures_on_a_hash_prefix_alone() -> None:
    """A signature that names only another key is a third-party certification for Sequoia:
    kept on its component after a two-octet hash prefix check anybody can pass. This is why
    such a signature never makes anything valid."""
    carol, packets = f.simple_cert(b"Carol <carol@example.org>")
    unhashed = [f.subpacket(f.ISSUER, f.Key("ed25519").key_id)]
    forged = _garbage_on_mallory(carol, [], unhashed)
    spliced = _raw([*packets[:3], (13, MALLORY), (2, forged), *packets[3:]])
    result = canonicalise(spliced)
    at = result.good.index(RawPacket(13, MALLORY))
    assert result.good[at + 1] == RawPacket(2, forged)
    # ...and the walk does not count it.
    cert = parse_certificate(encode_packets(spliced))
    assert [u.raw for u in cert.user_ids] == [b"Carol <carol@example.org>"]


def test_sequoia_verifies_signatures_without_issuer_and_keeps_valid_ones() -> None:
    """Sequoia 2 verifies a signature without issuer subpackets as if it were a
    self-signature (older Sequoia filed it as a certification). Either way it stays on the
    component when valid, so the walk itself must refuse to count it."""
    carol, packets = f.simple_cert(b"Carol <carol@example.org>")
    garbage = _garbage_on_mallory(carol, [], [])
    valid = f.certify(carol, carol, MALLORY, issuer=False)
    result = canonicalise(
        _raw([*packets[:3], (13, MALLORY), (2, garbage), (2, valid), *packets[3:]])
    )
    assert RawPacket(2, garbage) in result.bad
    assert RawPacket(2, valid) in result.good


def test_sequoia_merges_unhashed_areas_of_duplicate_signatures() -> None:
    """Why the rule is not "every issuer is the primary": Sequoia folds the unhashed area of a
    duplicate signature into the stored one, so anybody could add a foreign issuer to a
    victim's binding by uploading a doctored copy."""
    _carol, packets = f.simple_cert(b"Carol <carol@example.org>")
    binding = packets[2][1]
    doctored = _add_unhashed(binding, f.subpacket(f.ISSUER, f.Key("ed25519").key_id))
    copy = [packets[0], packets[1], (2, doctored)]
    merged = canonicalise(_raw([*packets, *copy[1:]]))
    (kept,) = [parse_signature(p.body) for p in merged.good[:3] if p.tag == 2]
    assert set(kept.issuer_key_ids) == set(parse_signature(doctored).issuer_key_ids)
    assert len(kept.issuer_key_ids) == 2


def _add_unhashed(sig: bytes, sub: bytes) -> bytes:
    hashed_len = int.from_bytes(sig[4:6], "big")
    at = 6 + hashed_len
    unhashed_len = int.from_bytes(sig[at : at + 2], "big")
    unhashed = sig[at + 2 : at + 2 + unhashed_len] + sub
    return sig[:at] + len(unhashed).to_bytes(2, "big") + unhashed + sig[at + 2 + unhashed_len :]


def test_sequoia_drops_packets_it_cannot_parse() -> None:
    """A signature whose MPI is not minimally encoded (GnuPG accepts it) is dropped by
    Sequoia's parser altogether; the walk never sees it, so it cannot bind anything."""
    _carol, packets = f.simple_cert(b"Carol <carol@example.org>", subkeys=False)
    sig = packets[2][1]
    # Re-encode the first signature MPI with one more (zero) leading octet.
    hashed_len = int.from_bytes(sig[4:6], "big")
    at = 6 + hashed_len
    at += 2 + int.from_bytes(sig[at : at + 2], "big") + 2
    bits = int.from_bytes(sig[at : at + 2], "big")
    value = sig[at + 2 : at + 2 + (bits + 7) // 8]
    padded = sig[:at] + ((bits + 7) // 8 * 8 + 8).to_bytes(2, "big") + b"\x00" + value
    padded += sig[at + 2 + len(value) :]
    result = canonicalise(_raw([*packets[:2], (2, padded)]))
    assert RawPacket(2, padded) not in result.good + result.bad


def test_sequoia_cannot_verify_rsa_over_4096_bits() -> None:
    """Why ``_large_rsa`` exists. When this fails, pysequoia's backend verifies large RSA keys
    and the fallback can be removed."""
    _big, packets = f.simple_cert(b"Big <big@example.org>", primary=f.Key("rsa", bits=4104))
    result = canonicalise(_raw(packets))
    assert len(result.bad) == 3  # the user ID binding and both subkey bindings
