"""RSA primary keys over 4096 bits, whose signatures pysequoia's backend cannot verify,
go through ``attester.openpgp._large_rsa``: real ones bind, forged ones still do not."""

from __future__ import annotations

import pytest

from attester.openpgp import ParsedCert, parse_certificate, publishable
from attester.openpgp._packets import split_packets
from tests.openpgp import forge as f

BIG = b"Big <big@example.org>"
MALLORY = b"Mallory <mallory@example.org>"


@pytest.fixture(scope="module")
def big() -> f.Key:
    return f.Key("rsa", bits=4104)


def _parse(packets: list[tuple[int, bytes]]) -> ParsedCert:
    return parse_certificate(f.join(packets))


def test_genuine_bindings_are_verified(big: f.Key) -> None:
    _, packets = f.simple_cert(BIG, b"Second <second@example.org>", primary=big)
    sha1 = f.certify(big, big, b"Old <old@example.org>", hash_algo=2)
    cert = _parse([*packets, (13, b"Old <old@example.org>"), (2, sha1)])
    assert cert.primary.bits == 4104
    assert {u.raw for u in cert.user_ids} == {
        BIG,
        b"Second <second@example.org>",
        b"Old <old@example.org>",
    }
    assert len(cert.subkeys) == 2 and cert.ignored == ()
    # Stored data keeps the verified signatures in place, so re-parsing agrees.
    assert parse_certificate(cert.data).user_ids == cert.user_ids
    assert [p.tag for p in split_packets(publishable(cert, [BIG]))] == [6, 13, 2, 14, 2, 14, 2]


def test_forged_signatures_are_not(big: f.Key) -> None:
    _, packets = f.simple_cert(BIG, primary=big)
    corrupt = bytearray(f.certify(big, big, MALLORY))
    corrupt[-5] ^= 1
    other_data = f.certify(big, big, b"Somebody else")
    no_issuer = f.certify(big, big, MALLORY, issuer=False)
    md5 = f.certify(big, big, MALLORY, hash_algo=1)
    for sig in (bytes(corrupt), other_data, no_issuer, md5):
        cert = _parse([*packets[:3], (13, MALLORY), (2, sig), *packets[3:]])
        assert {u.raw for u in cert.user_ids} == {BIG}


def test_a_misplaced_binding_lands_on_its_own_user_id(big: f.Key) -> None:
    _, packets = f.simple_cert(BIG, primary=big, subkeys=False)
    second = b"Second <second@example.org>"
    binding = f.certify(big, big, second)
    cert = _parse([*packets, (13, MALLORY), (2, binding), (13, second)])
    assert {u.raw for u in cert.user_ids} == {BIG, second}


def test_signing_subkeys_need_a_valid_back_signature(big: f.Key) -> None:
    _, packets = f.simple_cert(BIG, primary=big, subkeys=False)
    signer = f.Key("ed25519")
    missing = _parse(
        [*packets, (14, signer.body), (2, f.bind(big, signer, flags=0x02, backsig=False))]
    )
    assert missing.subkeys == ()
    present = _parse([*packets, (14, signer.body), (2, f.bind(big, signer, flags=0x02))])
    assert [k.fingerprint.hex for k in present.subkeys] == [signer.fpr_hex]
    rsa_signer = f.Key("rsa", bits=2048)
    rsa_present = _parse(
        [*packets, (14, rsa_signer.body), (2, f.bind(big, rsa_signer, flags=0x02))]
    )
    assert [k.fingerprint.hex for k in rsa_present.subkeys] == [rsa_signer.fpr_hex]


def test_revocations_are_verified(big: f.Key) -> None:
    _, packets = f.simple_cert(BIG, primary=big)
    rev = big.sign(0x20, f.key_material(big.body))
    assert _parse([*packets, (2, rev)]).revoked
    forged = bytearray(rev)
    forged[-5] ^= 1
    assert not _parse([*packets, (2, bytes(forged))]).revoked


def test_large_rsa_signing_subkeys_under_a_small_primary(big: f.Key) -> None:
    """The binding is the primary key's (Sequoia verifies it), the back-signature the large
    subkey's (Sequoia cannot): the fallback checks both."""
    small, packets = f.simple_cert(BIG, subkeys=False)
    assert (
        _parse([*packets, (14, big.body), (2, f.bind(small, big, flags=0x02))]).subkeys[0].bits
        == 4104
    )
    assert (
        _parse(
            [*packets, (14, big.body), (2, f.bind(small, big, flags=0x02, backsig=False))]
        ).subkeys
        == ()
    )
    forged = bytearray(f.bind(small, big, flags=0x02))
    forged[-5] ^= 1  # inside the primary key's signature value, not the back-signature
    assert _parse([*packets, (14, big.body), (2, bytes(forged))]).subkeys == ()
    # An encryption subkey needs no back-signature: Sequoia binds it alone.
    assert len(_parse([*packets, (14, big.body), (2, f.bind(small, big, flags=0x0C))]).subkeys) == 1


def test_signatures_older_than_the_key_do_not_count(big: f.Key) -> None:
    _, packets = f.simple_cert(BIG, primary=big, subkeys=False)
    early = f.certify(big, big, MALLORY, created=big.created - 60)
    assert {u.raw for u in _parse([*packets, (13, MALLORY), (2, early)]).user_ids} == {BIG}
