"""Which user IDs and subkeys count as validly bound. The adversarial shapes come from
docs/specs openpgp-notes.md: none of them may ever be reported valid or served."""

from __future__ import annotations

import struct
from datetime import UTC, datetime

import pytest
from pysequoia import Cert, CipherSuite, Profile, Tsk

from attester.openpgp import (
    Email,
    ParsedCert,
    Rejected,
    SecretKeyMaterial,
    parse_certificate,
    parse_certificates,
    parse_keyring,
    publishable,
)
from attester.openpgp._packets import split_packets
from tests.openpgp import forge as f
from tests.openpgp.conftest import generate, public

CAROL = b"Carol <carol@example.org>"
CAROL2 = b"Carol Two <carol2@example.org>"
MALLORY = b"Mallory <mallory@example.org>"


def parse(packets: list[tuple[int, bytes]]) -> ParsedCert:
    return parse_certificate(f.join(packets))


def uids(cert: ParsedCert) -> set[bytes]:
    return {u.raw for u in cert.user_ids}


def served(
    cert: ParsedCert, attested: tuple[bytes, ...] = (CAROL, CAROL2, MALLORY)
) -> list[tuple[int, bytes]]:
    return [(p.tag, p.body) for p in split_packets(publishable(cert, attested))]


def served_uids(cert: ParsedCert) -> set[bytes]:
    return {b for t, b in served(cert) if t == 13}


def subkey_fprs(cert: ParsedCert) -> set[str]:
    return {k.fingerprint.hex for k in cert.subkeys}


def splice_after_first_uid(
    packets: list[tuple[int, bytes]], *extra: tuple[int, bytes]
) -> list[tuple[int, bytes]]:
    """``extra`` right after Carol's user ID and its binding: where an attacker puts it."""
    return [*packets[:3], *extra, *packets[3:]]


def assert_not_bound(cert: ParsedCert, uid: bytes = MALLORY) -> None:
    assert uid not in uids(cert)
    assert uid not in served_uids(cert)
    assert CAROL in uids(cert) and CAROL in served_uids(cert)


# --- user IDs ----------------------------------------------------------------------------


@pytest.mark.parametrize("subkeys", [True, False])
def test_a_well_formed_certificate_is_fully_valid(subkeys: bool) -> None:
    carol, packets = f.simple_cert(CAROL, CAROL2, subkeys=subkeys)
    cert = parse(packets)
    assert cert.fingerprint.hex == carol.fpr_hex
    assert uids(cert) == {CAROL, CAROL2}
    assert len(cert.subkeys) == (2 if subkeys else 0)
    assert cert.ignored == ()
    primary = next(u for u in cert.user_ids if u.raw == CAROL)
    assert primary.primary and primary.email == Email.parse("carol@example.org")
    assert not primary.revoked and primary.expires is None


@pytest.mark.parametrize("subkeys", [True, False])
@pytest.mark.parametrize("forge_prefix", [False, True])
def test_user_id_carrying_another_keys_self_signature(subkeys: bool, forge_prefix: bool) -> None:
    carol, packets = f.simple_cert(CAROL, subkeys=subkeys)
    mallory = f.Key("ed25519")
    # Mallory's genuine self-signature over "Mallory" on Mallory's own key...
    sig = f.certify(mallory, mallory, MALLORY)
    if forge_prefix:
        # ...with its hash prefix adjusted so Sequoia's third-party heuristic keeps it.
        sig = f.with_prefix_for(sig, f.key_material(carol.body) + f.uid_material(MALLORY))
    assert_not_bound(parse(splice_after_first_uid(packets, (13, MALLORY), (2, sig))))


@pytest.mark.parametrize("subkeys", [True, False])
def test_user_id_with_a_genuine_third_party_certification(subkeys: bool) -> None:
    carol, packets = f.simple_cert(CAROL, subkeys=subkeys)
    mallory = f.Key("ed25519")
    # A valid signature by Mallory over Carol's key and the "Mallory" user ID.
    sig = f.certify(mallory, carol, MALLORY, sig_type=0x10)
    cert = parse(splice_after_first_uid(packets, (13, MALLORY), (2, sig)))
    assert_not_bound(cert)
    assert f.packet(2, sig) in cert.data  # stored (nothing is lost) but never served


@pytest.mark.parametrize("subkeys", [True, False])
def test_user_id_with_the_right_issuer_but_a_signature_over_other_data(subkeys: bool) -> None:
    carol, packets = f.simple_cert(CAROL, subkeys=subkeys)
    # Carol's real binding of "Carol Two", moved onto "Mallory": right issuer, wrong data.
    other_data = f.certify(carol, carol, CAROL2)
    cert = parse(splice_after_first_uid(packets, (13, MALLORY), (2, other_data)))
    assert_not_bound(cert)
    assert "1 signature(s) that did not verify were dropped" in cert.ignored
    assert f.packet(2, other_data) not in cert.data


@pytest.mark.parametrize("subkeys", [True, False])
def test_user_id_with_a_corrupted_self_signature(subkeys: bool) -> None:
    carol, packets = f.simple_cert(CAROL, subkeys=subkeys)
    sig = bytearray(f.certify(carol, carol, MALLORY))
    sig[-3] ^= 0x55  # inside the signature value; the hash prefix still matches
    assert_not_bound(parse(splice_after_first_uid(packets, (13, MALLORY), (2, bytes(sig)))))


@pytest.mark.parametrize("subkeys", [True, False])
def test_user_id_without_any_signature(subkeys: bool) -> None:
    _carol, packets = f.simple_cert(CAROL, subkeys=subkeys)
    for where in (splice_after_first_uid(packets, (13, MALLORY)), [*packets, (13, MALLORY)]):
        cert = parse(where)
        assert_not_bound(cert)
        assert f"user ID {MALLORY.decode()!r} has no valid self-signature" in cert.ignored


@pytest.mark.parametrize("subkeys", [True, False])
def test_a_valid_signature_without_issuer_never_binds(subkeys: bool) -> None:
    carol, packets = f.simple_cert(CAROL, subkeys=subkeys)
    # Cryptographically valid, made by Carol's primary key, but naming no issuer.
    sig = f.certify(carol, carol, MALLORY, issuer=False)
    assert_not_bound(parse(splice_after_first_uid(packets, (13, MALLORY), (2, sig))))


def test_a_hashed_issuer_naming_another_key_disqualifies_a_self_signature() -> None:
    carol, packets = f.simple_cert(CAROL)
    other = f.Key("ed25519")
    sig = f.certify(carol, carol, MALLORY, hashed=[f.subpacket(f.ISSUER, other.key_id)])
    assert_not_bound(parse(splice_after_first_uid(packets, (13, MALLORY), (2, sig))))


def test_an_unhashed_foreign_issuer_does_not_unbind() -> None:
    """Anybody can add unhashed subpackets; that must not take a user ID away (nor can the
    merged copy, in which Sequoia folds both unhashed areas together)."""
    carol, packets = f.simple_cert(CAROL)
    foreign = f.subpacket(f.ISSUER, f.Key("ed25519").key_id)
    binding = f.certify(carol, carol, CAROL2, unhashed=[foreign])
    cert = parse([*packets, (13, CAROL2), (2, binding)])
    assert uids(cert) == {CAROL, CAROL2}
    assert served_uids(cert) == {CAROL, CAROL2}


def test_sha1_self_signatures_count() -> None:
    """Like GnuPG, and unlike Sequoia's standard policy (under which ``Cert.user_ids`` raises
    for 93 of the 905 Debian keys, whose bindings are all SHA-1): a keyserver is not where
    established keys get cut off, and a SHA-1 self-signature needs a collision the key
    owner signed."""
    carol, packets = f.simple_cert(subkeys=False)
    data = f.join([*packets, (13, CAROL), (2, f.certify(carol, carol, CAROL, hash_algo=2))])
    with pytest.raises(Exception, match="No binding signature"):
        Cert.from_bytes(data).user_ids  # noqa: B018 - the property is what raises
    assert uids(parse_certificate(data)) == {CAROL}


def test_md5_self_signatures_do_not_count() -> None:
    carol, packets = f.simple_cert(CAROL)
    sig = f.certify(carol, carol, MALLORY, hash_algo=1)
    assert_not_bound(parse(splice_after_first_uid(packets, (13, MALLORY), (2, sig))))


def test_user_attributes_are_never_user_ids_nor_served() -> None:
    carol, packets = f.simple_cert(CAROL)
    photo = b"\x10\x00\x01\x01" + bytes(12) + b"\xff\xd8\xff\xe0not really a jpeg"
    attr = bytes((len(photo) + 1, 1)) + photo
    material = f.key_material(carol.body) + b"\xd1" + struct.pack(">I", len(attr)) + attr
    sig = carol.sign(0x13, material)
    cert = parse(splice_after_first_uid(packets, (17, attr), (2, sig)))
    assert uids(cert) == {CAROL}
    assert f.packet(17, attr) in cert.data
    assert all(t != 17 for t, _ in served(cert))


# --- subkeys ----------------------------------------------------------------------------


def test_an_unbound_subkey_alone() -> None:
    _carol, packets = f.simple_cert(CAROL)
    stray = f.Key("cv25519")
    cert = parse([*packets, (14, stray.body)])
    assert stray.fpr_hex not in subkey_fprs(cert)
    assert len(cert.subkeys) == 2
    assert f"subkey {stray.fpr_hex} has no valid binding signature" in cert.ignored
    assert (14, stray.body) not in served(cert)


@pytest.mark.parametrize("other_present", [True, False])
def test_an_unbound_subkey_followed_by_a_binding_for_another_subkey(other_present: bool) -> None:
    carol, packets = f.simple_cert(CAROL, subkeys=False)
    real = f.Key("cv25519")
    binding = f.bind(carol, real)
    stray = f.Key("cv25519")
    spliced = [*packets, (14, stray.body), (2, binding)]
    if other_present:
        spliced = [*packets, (14, real.body), (2, binding), (14, stray.body), (2, binding)]
    cert = parse(spliced)
    assert stray.fpr_hex not in subkey_fprs(cert)
    assert (14, stray.body) not in served(cert)
    assert subkey_fprs(cert) == ({real.fpr_hex} if other_present else set())


def test_a_subkey_bound_by_another_key_is_not_bound() -> None:
    carol, packets = f.simple_cert(CAROL, subkeys=False)
    mallory = f.Key("ed25519")
    stray = f.Key("cv25519")
    # Mallory's valid binding of the subkey to *Mallory's* key, prefix adjusted to Carol's.
    sig = f.with_prefix_for(
        f.bind(mallory, stray), f.key_material(carol.body) + f.key_material(stray.body)
    )
    cert = parse([*packets, (14, stray.body), (2, sig)])
    assert cert.subkeys == ()


def test_a_subkey_binding_without_issuer_does_not_bind() -> None:
    carol, packets = f.simple_cert(CAROL, subkeys=False)
    sub = f.Key("cv25519")
    cert = parse([*packets, (14, sub.body), (2, f.bind(carol, sub, issuer=False))])
    assert cert.subkeys == ()


def test_a_signing_subkey_needs_its_back_signature() -> None:
    """As Sequoia requires (GnuPG lists such a subkey but refuses its signatures)."""
    carol, packets = f.simple_cert(CAROL, subkeys=False)
    sub = f.Key("ed25519")
    cert = parse([*packets, (14, sub.body), (2, f.bind(carol, sub, flags=0x02, backsig=False))])
    assert cert.subkeys == ()
    cert = parse([*packets, (14, sub.body), (2, f.bind(carol, sub, flags=0x02))])
    assert subkey_fprs(cert) == {sub.fpr_hex}
    assert cert.subkeys[0].can_sign and not cert.subkeys[0].can_encrypt


# --- revocations ----------------------------------------------------------------------------


def _revoke_uid(carol: f.Key, uid: bytes, created: int, signer: f.Key | None = None) -> bytes:
    return (signer or carol).sign(
        0x30,
        f.key_material(carol.body) + f.uid_material(uid),
        hashed=[f.subpacket(f.REASON, b"\x20gone")],
        created=created,
    )


def test_user_id_revocation_newer_than_the_binding_revokes() -> None:
    carol, packets = f.simple_cert(CAROL, subkeys=False)
    binding = f.certify(carol, carol, CAROL2, created=f.NOW - 100)
    for revoked_at, revoked in ((f.NOW - 50, True), (f.NOW - 100, True), (f.NOW - 150, False)):
        rev = _revoke_uid(carol, CAROL2, revoked_at)
        cert = parse([*packets, (13, CAROL2), (2, binding), (2, rev)])
        u = next(u for u in cert.user_ids if u.raw == CAROL2)
        assert u.revoked is revoked, revoked_at
        # A revoked user ID that is attested is served with its revocation, so clients see it.
        assert (2, rev) in served(cert)


def test_revocations_by_other_keys_are_ignored() -> None:
    carol, packets = f.simple_cert(CAROL)
    mallory = f.Key("ed25519")
    rev = _revoke_uid(carol, CAROL, f.NOW, signer=mallory)
    key_rev = mallory.sign(0x20, f.key_material(carol.body))
    cert = parse([packets[0], (2, key_rev), *packets[1:3], (2, rev), *packets[3:]])
    assert not cert.revoked
    assert not next(u for u in cert.user_ids if u.raw == CAROL).revoked
    assert (2, rev) not in served(cert) and (2, key_rev) not in served(cert)


def test_key_and_subkey_self_revocations() -> None:
    carol, packets = f.simple_cert(CAROL)
    key_rev = carol.sign(0x20, f.key_material(carol.body), hashed=[f.subpacket(f.REASON, b"\x02")])
    sub_body = packets[3][1]
    # "Retired" (soft) and older than a later re-binding: still revoked, as in GnuPG.
    sub_rev = carol.sign(
        0x28,
        f.key_material(carol.body) + f.key_material(sub_body),
        hashed=[f.subpacket(f.REASON, b"\x03")],
        created=f.NOW - 10,
    )
    cert = parse([packets[0], (2, key_rev), *packets, (2, sub_rev)])
    assert cert.revoked
    assert cert.can_encrypt(datetime.now(UTC)) is False
    revoked = {k.fingerprint.hex: k.revoked for k in cert.subkeys}
    assert sorted(revoked.values()) == [False, True]
    assert (2, key_rev) in served(cert) and (2, sub_rev) in served(cert)


def test_pysequoia_revocations() -> None:
    tsk = generate("Alice <alice@example.org>", "Alice Old <old@example.org>")
    alice = public(tsk)
    uid = next(u for u in alice.user_ids if str(u) == "Alice Old <old@example.org>")
    data = bytes(alice) + bytes(alice.revoke_user_id(uid, tsk.certifier()))
    cert = parse_certificate(data)
    assert {u.text: u.revoked for u in cert.user_ids} == {
        "Alice <alice@example.org>": False,
        "Alice Old <old@example.org>": True,
    }
    assert not cert.revoked
    assert parse_certificate(data + bytes(alice.revoke(tsk.certifier()))).revoked


# --- secret keys ----------------------------------------------------------------------------


@pytest.mark.parametrize("armored", [False, True])
def test_secret_keys_are_refused_whole(armored: bool) -> None:
    tsk = Tsk.generate(user_ids=["Sam <sam@example.org>"])
    secret = str(tsk).encode() if armored else bytes(tsk)
    pat = bytes(public(generate("Pat <pat@example.org>")))
    for data in (secret, pat + bytes(tsk)):
        for parse_fn in (parse_keyring, parse_certificates, parse_certificate):
            with pytest.raises(SecretKeyMaterial, match="secret keys are never accepted") as e:
                parse_fn(data)
            assert "nothing of this upload was stored" in str(e.value)


# --- key properties ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "primary", "subkeys"),
    [
        ({}, (22, "eddsa", 255), {("eddsa", 255), ("ecdh", 255)}),
        ({"cipher_suite": CipherSuite.P256}, (19, "ecdsa", 256), {("ecdsa", 256), ("ecdh", 256)}),
        ({"cipher_suite": CipherSuite.P521}, (19, "ecdsa", 521), {("ecdsa", 521), ("ecdh", 521)}),
        ({"cipher_suite": CipherSuite.RSA2k}, (1, "rsa", 2048), {("rsa", 2048)}),
        ({"profile": Profile.RFC9580}, (27, "ed25519", 255), {("ed25519", 255), ("x25519", 255)}),
        (
            {"profile": Profile.RFC9580, "cipher_suite": CipherSuite.Cv448},
            (28, "ed448", 448),
            {("ed448", 448), ("x448", 448)},
        ),
    ],
)
def test_algorithms_and_sizes(
    kwargs: dict[str, object], primary: tuple[int, str, int], subkeys: set[tuple[str, int]]
) -> None:
    cert_ = Tsk.generate(user_ids=["K <k@example.org>"], **kwargs).extract_certificate()  # type: ignore[arg-type]
    cert = parse_certificate(bytes(cert_))
    p = cert.primary
    assert (p.algorithm, p.algorithm_name, p.bits) == primary
    assert {(k.algorithm_name, k.bits) for k in cert.subkeys} == subkeys
    assert p.fingerprint.hex == cert_.fingerprint.upper()
    if "profile" in kwargs:  # v6: 64 hex digits, key id from the high 64 bits
        assert len(p.fingerprint.hex) == 64 and p.key_id.hex == p.fingerprint.hex[:16]
    else:
        assert p.key_id.hex == p.fingerprint.hex[-16:]
    assert sorted((k.can_sign, k.can_encrypt) for k in cert.subkeys) == [
        (False, True),
        (True, False),
    ]
    # Sequoia makes certification-only primary keys.
    assert not p.can_sign and not p.can_encrypt
    assert cert.can_encrypt(datetime.now(UTC))


def test_a_keyring_keeps_good_certificates_next_to_rejected_ones() -> None:
    _, good = f.simple_cert(CAROL)
    bad_key, bad = f.simple_cert(MALLORY, subkeys=False)
    bad = [bad[0], (13, MALLORY)]  # stripped of its only binding: nothing is usable
    results = parse_keyring(f.join(good) + f.join(bad))
    assert isinstance(results[0], ParsedCert)
    assert isinstance(results[1], Rejected)
    assert results[1].fingerprint is not None and results[1].fingerprint.hex == bad_key.fpr_hex
    assert "nothing that could be published" in results[1].reason


def test_copies_of_one_certificate_in_one_upload_are_merged() -> None:
    carol, packets = f.simple_cert(CAROL)
    extra = [packets[0], (13, CAROL2), (2, f.certify(carol, carol, CAROL2))]
    (cert,) = parse_keyring(f.join(packets) + f.join(extra))
    assert isinstance(cert, ParsedCert)
    assert uids(cert) == {CAROL, CAROL2}


def test_packets_foreign_to_certificates_are_dropped() -> None:
    _carol, packets = f.simple_cert(CAROL)
    noise = [(12, b"\x05\x00"), (61, b"private"), (10, b"PGP"), (21, bytes(8))]
    data = f.join([(2, packets[2][1])]) + f.join(packets[:3]) + f.join(noise) + f.join(packets[3:])
    cert = parse_certificate(data)
    assert {t for t, _ in (tuple(p) for p in split_packets(cert.data))} == {2, 6, 13, 14}
    assert len(cert.subkeys) == 2
