"""Every limit refuses with a sentence that names it; whole-input problems raise, problems
of one certificate of a keyring become a ``Rejected`` with its fingerprint."""

from __future__ import annotations

import pytest

from attester.openpgp import (
    InputTooLarge,
    LimitExceeded,
    Limits,
    MultipleCertificates,
    NoCertificate,
    NoUsableComponent,
    ParsedCert,
    Rejected,
    Unparsable,
    parse_certificate,
    parse_certificates,
    parse_keyring,
)
from tests.openpgp import forge as f

ALICE = b"Alice <alice@example.org>"


def _with_uids(n: int) -> tuple[f.Key, list[tuple[int, bytes]]]:
    return f.simple_cert(
        *(f"User {i} <u{i}@example.org>".encode() for i in range(n)), subkeys=False
    )


def _with_subkeys(n: int) -> tuple[f.Key, list[tuple[int, bytes]]]:
    alice, packets = f.simple_cert(ALICE, subkeys=False)
    for _ in range(n):
        sub = f.Key("cv25519")
        packets += [(14, sub.body), (2, f.bind(alice, sub))]
    return alice, packets


def _flooded(n: int) -> tuple[f.Key, list[tuple[int, bytes]]]:
    alice, packets = f.simple_cert(ALICE, subkeys=False)
    witness = f.Key("ed25519")
    flood = [
        (2, f.certify(witness, alice, ALICE, sig_type=0x10, flags=None, created=f.NOW - i))
        for i in range(n)
    ]
    return alice, [*packets, *flood]


def _check(packets: list[tuple[int, bytes]], key: f.Key, limits: Limits, message: str) -> None:
    """``packets`` is refused under ``limits`` (alone, and next to a good certificate in a
    keyring), and accepted under the defaults."""
    data = f.join(packets)
    with pytest.raises(LimitExceeded, match=message):
        parse_certificate(data, limits)
    with pytest.raises(LimitExceeded, match=message):
        parse_certificates(data, limits)
    _, other = f.simple_cert(b"Bob <bob@example.org>", subkeys=False)
    good, bad = parse_keyring(f.join(other) + data, limits)
    assert isinstance(good, ParsedCert)
    assert isinstance(bad, Rejected)
    assert bad.fingerprint is not None and bad.fingerprint.hex == key.fpr_hex
    assert message in bad.reason
    assert isinstance(parse_certificate(data), ParsedCert)


def test_too_many_user_ids() -> None:
    key, packets = _with_uids(4)
    _check(packets, key, Limits(max_user_ids=3), "the certificate has more than 3 user IDs")
    assert len(parse_certificate(f.join(packets), Limits(max_user_ids=4)).user_ids) == 4


def test_too_many_subkeys() -> None:
    key, packets = _with_subkeys(3)
    _check(packets, key, Limits(max_subkeys=2), "the certificate has more than 2 subkeys")


def test_too_many_signatures_on_one_component() -> None:
    key, packets = _flooded(21)
    _check(
        packets,
        key,
        Limits(max_signatures_per_component=20),
        "a user ID carries more than 20 signatures",
    )


def test_a_flood_over_the_default_limit_is_refused() -> None:
    """Thousands of certifications on one user ID (CVE-2019-13050's shape)."""
    default = Limits().max_signatures_per_component
    key, packets = _flooded(default)  # plus Alice's own binding: one over the limit
    (rejected,) = parse_keyring(f.join(packets), Limits(max_input_bytes=10 * 1024 * 1024))
    assert isinstance(rejected, Rejected)
    assert f"a user ID carries more than {default} signatures" in rejected.reason
    assert "certificate flooding" in rejected.reason
    assert rejected.fingerprint is not None and rejected.fingerprint.hex == key.fpr_hex


def test_packet_too_large() -> None:
    key, packets = f.simple_cert(ALICE, subkeys=False)
    big_uid = b"Big " + b"x" * 600 + b" <big@example.org>"
    packets += [(13, big_uid), (2, f.certify(key, key, big_uid))]
    _check(packets, key, Limits(max_packet_bytes=512), "exceeds the limit of 512 bytes per packet")


def test_input_too_large() -> None:
    _, packets = f.simple_cert(ALICE)
    data = f.join(packets)
    with pytest.raises(InputTooLarge, match=f"the upload is {len(data)} bytes; at most 100 bytes"):
        parse_keyring(data, Limits(max_input_bytes=100))


def test_no_usable_component() -> None:
    key, packets = f.simple_cert(subkeys=False)
    data = f.join([*packets, (13, ALICE)])  # a user ID nobody bound
    with pytest.raises(NoUsableComponent, match="nothing that could be published"):
        parse_certificate(data)
    (rejected,) = parse_keyring(data)
    assert isinstance(rejected, Rejected) and rejected.fingerprint is not None
    assert rejected.fingerprint.hex == key.fpr_hex


def test_whole_input_errors() -> None:
    with pytest.raises(Unparsable):
        parse_keyring(b"hello, this is not a key")
    with pytest.raises(Unparsable):
        parse_keyring(b"\xc6\x05abc")  # truncated
    with pytest.raises(NoCertificate, match="no public key certificate"):
        parse_keyring(f.packet(2, b"\x04\x00") + f.packet(13, b"x"))
    _, a = f.simple_cert(ALICE)
    _, b = f.simple_cert(b"Bob <bob@example.org>")
    with pytest.raises(MultipleCertificates, match="holds 2 certificates"):
        parse_certificate(f.join(a) + f.join(b))
    assert len(parse_certificates(f.join(a) + f.join(b))) == 2


def test_a_certificate_sequoia_refuses_is_rejected_alone() -> None:
    _, good = f.simple_cert(ALICE)
    v3 = f.packet(6, b"\x03" + bytes(20))  # a version 3 key: no fingerprint we can store
    results = parse_keyring(f.join(good) + v3)
    assert isinstance(results[0], ParsedCert)
    assert isinstance(results[1], Rejected) and results[1].fingerprint is None


def test_junk_self_signatures_bound_the_work_before_sequoia() -> None:
    """Issue 10 item 7: 50 user IDs of 6 KB and 12,000 junk signatures naming the primary
    key took seconds of CPU in Sequoia; now refused by count before any verification."""
    import time

    key, packets = f.flooded_with_self_signatures(50, 6 * 1024, 12_000)
    data = f.join(packets)
    start = time.process_time()
    with pytest.raises(LimitExceeded, match="more than 250 signatures naming its primary key"):
        parse_certificate(data)
    # Refused by counting, before canonicalisation (which took 2.7 s of CPU on this input).
    assert time.process_time() - start < 0.5
    (bad,) = parse_keyring(data)
    assert isinstance(bad, Rejected) and bad.fingerprint is not None
    assert bad.fingerprint.hex == key.fpr_hex


def test_self_signature_limit() -> None:
    key, packets = f.flooded_with_self_signatures(2, 100, 10)
    _check(packets, key, Limits(max_self_signatures=11), "more than 11 signatures naming")
    parsed = parse_certificate(f.join(packets), Limits(max_self_signatures=12))
    assert len(parsed.user_ids) == 2


def test_misplaced_third_party_signatures_limit() -> None:
    """Certifications whose hash prefix fits their user ID are counted only in the total;
    ones that fit nothing are tried against every component and have their own bound."""
    alice, packets = f.simple_cert(ALICE, subkeys=False)
    witness = f.Key("ed25519")
    material = f.key_material(alice.body) + f.uid_material(ALICE)
    fitting = [
        (2, f.with_prefix_for(f.junk_self_signature(witness, i, 0x10), material)) for i in range(20)
    ]
    misplaced = [(2, f.junk_self_signature(witness, 100 + i, 0x10)) for i in range(5)]
    assert isinstance(
        parse_certificate(f.join(packets + fitting), Limits(max_misplaced_signatures=0)),
        ParsedCert,
    )
    _check(
        packets + fitting + misplaced,
        alice,
        Limits(max_misplaced_signatures=4),
        "more than 4 third-party signatures that do not fit",
    )
    _check(packets + fitting, alice, Limits(max_signatures=20), "more than 20 signatures")


def test_component_bytes_limit() -> None:
    big = b"Alice <alice@example.org> " + b"x" * 3000
    key, packets = f.simple_cert(big, subkeys=False)
    _check(packets, key, Limits(max_component_bytes=3000), "a user ID of 3026 bytes exceeds")
