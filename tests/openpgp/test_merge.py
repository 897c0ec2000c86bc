"""Merging an upload into the stored certificate: nothing valid is lost, revocations win."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from attester.openpgp import (
    FingerprintMismatch,
    LimitExceeded,
    Limits,
    MultipleCertificates,
    SecretKeyMaterial,
    armor,
    merge,
    parse_certificate,
)
from tests.openpgp import forge as f
from tests.openpgp.conftest import generate, public

ALICE = "Alice <alice@example.org>"


def test_merge_adds_a_new_user_id() -> None:
    tsk = generate(ALICE)
    stored = parse_certificate(bytes(public(tsk)))
    newer = public(tsk).add_user_id("Alice (new) <new@example.org>", tsk.certifier())
    merged = merge(stored.data, bytes(newer))
    assert {u.text for u in merged.user_ids} == {ALICE, "Alice (new) <new@example.org>"}
    assert merged.digest != stored.digest


def test_merge_adds_a_new_subkey() -> None:
    alice, packets = f.simple_cert(ALICE.encode())
    stored = parse_certificate(f.join(packets))
    sub = f.Key("cv25519")
    incoming = f.join([packets[0], (14, sub.body), (2, f.bind(alice, sub))])
    merged = merge(stored.data, incoming)
    assert {k.fingerprint.hex for k in merged.subkeys} == {
        k.fingerprint.hex for k in stored.subkeys
    } | {sub.fpr_hex}


def test_merge_takes_a_later_expiry() -> None:
    tsk = generate(ALICE)
    soon = (datetime.now(UTC) + timedelta(days=10)).replace(microsecond=0)
    later = (datetime.now(UTC) + timedelta(days=400)).replace(microsecond=0)
    stored = parse_certificate(bytes(public(tsk).set_expiration(soon, tsk.certifier())))
    assert stored.expires == soon
    extended = public(tsk).set_expiration(later, tsk.certifier())
    assert merge(stored.data, bytes(extended)).expires == later


def test_a_revocation_always_wins() -> None:
    tsk = generate(ALICE)
    cert = public(tsk)
    revocation = bytes(cert.revoke(tsk.certifier()))
    revoked = parse_certificate(bytes(cert) + revocation)
    assert revoked.revoked
    # An older, unrevoked copy changes nothing.
    assert merge(revoked.data, bytes(cert)).revoked
    # A bare revocation (primary key + signature) revokes the stored certificate.
    stored = parse_certificate(bytes(cert))
    bare = f.join(f.split(bytes(cert))[:1]) + revocation
    merged = merge(stored.data, bare)
    assert merged.revoked
    assert {u.text for u in merged.user_ids} == {ALICE}


def test_a_user_id_revocation_wins_over_an_older_copy() -> None:
    tsk = generate(ALICE, "Old <old@example.org>")
    cert = public(tsk)
    uid = next(u for u in cert.user_ids if str(u) == "Old <old@example.org>")
    revoked = parse_certificate(bytes(cert) + bytes(cert.revoke_user_id(uid, tsk.certifier())))
    merged = merge(revoked.data, bytes(cert))
    assert {u.text: u.revoked for u in merged.user_ids} == {
        ALICE: False,
        "Old <old@example.org>": True,
    }


def test_nothing_valid_is_lost() -> None:
    """Merging a partial copy keeps everything stored: user IDs, subkeys, third-party
    certifications, user attributes."""
    alice, packets = f.simple_cert(ALICE.encode(), b"Second <second@example.org>")
    witness = f.Key("ed25519")
    certification = f.certify(witness, alice, ALICE.encode(), sig_type=0x10, flags=None)
    full = f.join([*packets[:3], (2, certification), *packets[3:]])
    stored = parse_certificate(full)
    partial = f.join(packets[:3])  # primary key and the first user ID only
    merged = merge(stored.data, partial)
    assert merged.data == stored.data
    assert merged.digest == stored.digest
    assert f.packet(2, certification) in merged.data
    # And the other way round: a full upload merged into a partial store.
    again = merge(parse_certificate(partial).data, armor(full).encode())
    assert {u.raw for u in again.user_ids} == {u.raw for u in stored.user_ids}
    assert again.subkeys == stored.subkeys


def test_merge_refuses_another_certificate() -> None:
    a = parse_certificate(bytes(public(generate(ALICE))))
    with pytest.raises(FingerprintMismatch, match=a.fingerprint.hex):
        merge(a.data, bytes(public(generate("Bob <bob@example.org>"))))


def test_merge_refuses_secret_keys_and_keyrings() -> None:
    tsk = generate(ALICE)
    stored = parse_certificate(bytes(public(tsk)))
    with pytest.raises(SecretKeyMaterial):
        merge(stored.data, bytes(tsk))
    with pytest.raises(MultipleCertificates):
        merge(stored.data, bytes(public(tsk)) + bytes(public(generate("Bob <bob@example.org>"))))


def test_merge_enforces_limits_on_the_result() -> None:
    alice, packets = f.simple_cert(ALICE.encode(), subkeys=False)
    stored = parse_certificate(f.join(packets))
    more = [packets[0]]
    for i in range(3):
        uid = f"Alias {i} <a{i}@example.org>".encode()
        more += [(13, uid), (2, f.certify(alice, alice, uid))]
    limits = Limits(max_user_ids=3)
    with pytest.raises(LimitExceeded, match="more than 3 user IDs"):
        merge(stored.data, f.join(more), limits)
    assert len(merge(stored.data, f.join(more[:5]), limits).user_ids) == 3


def _certifications(n: int, alice: f.Key, start: int) -> list[tuple[int, bytes]]:
    witness = f.Key("ed25519")
    return [
        (2, f.certify(witness, alice, ALICE.encode(), sig_type=0x10, flags=None, created=start - i))
        for i in range(n)
    ]


def test_a_flood_spread_over_uploads_cannot_lock_the_owner_out() -> None:
    """Each upload is within the limit, the merged result would not be: third-party
    certifications give way (oldest first), the owner's signatures never do."""
    alice, packets = f.simple_cert(ALICE.encode())
    limits = Limits(max_signatures_per_component=50)
    stored = parse_certificate(f.join(packets), limits)
    for batch in range(3):
        flood = _certifications(40, alice, f.NOW - 1000 * batch)
        stored = merge(stored.data, f.join([*packets[:2], *flood]), limits)
    on_uid = [p for p in f.split(stored.data) if p[0] == 2 and f.packet(*p) not in f.join(packets)]
    assert len(on_uid) == 49  # 50 signatures on the user ID: Alice's binding and 49 others
    assert any("third-party certification(s) dropped" in i for i in stored.ignored)

    rebinding = f.certify(alice, alice, ALICE.encode(), created=f.NOW + 60)
    updated = merge(stored.data, f.join([*packets[:2], (2, rebinding)]), limits)
    assert f.packet(2, rebinding) in updated.data
    assert [u.created.timestamp() for u in updated.user_ids] == [f.NOW + 60]


def test_certifications_give_way_to_the_size_limit() -> None:
    alice, packets = f.simple_cert(ALICE.encode())
    stored = parse_certificate(f.join(packets))
    flood = _certifications(40, alice, f.NOW)  # about 120 bytes each
    upload = f.join([*packets[:2], *flood])
    limits = Limits(max_input_bytes=len(upload) + 100)  # the upload fits, the sum does not
    merged = merge(stored.data, upload, limits)
    assert len(stored.data) < len(merged.data) <= limits.max_input_bytes
    # The newest certifications stayed.
    assert f.packet(*flood[0]) in merged.data and f.packet(*flood[-1]) not in merged.data
    # Self-signatures alone over the size limit refuse instead.
    small = f.join(packets[:3])
    with pytest.raises(LimitExceeded, match=f"at most {len(small)} bytes are stored"):
        merge(stored.data, small, Limits(max_input_bytes=len(small)))
