"""What lookups serve: only what the key itself vouches for, only attested identities."""

from __future__ import annotations

import struct

from pysequoia import Cert

from attester.openpgp import ParsedCert, merge, parse_certificate, publishable
from attester.openpgp._packets import RawPacket, split_packets
from tests.openpgp import forge as f
from tests.openpgp.conftest import GpgRun, colons_uids, generate, public

ALICE = b"Alice <alice@example.org>"
WORK = b"Alice (work) <alice@work.example>"


def _flooded(n: int) -> tuple[f.Key, list[tuple[int, bytes]], list[bytes]]:
    """Alice's certificate with ``n`` real third-party certifications on her user ID, by a
    handful of keys (each signature distinct, as a flood's are)."""
    alice, packets = f.simple_cert(ALICE, WORK)
    signers = [f.Key("ed25519") for _ in range(4)]
    flood = [
        f.certify(signers[i % 4], alice, ALICE, sig_type=0x10, flags=None, created=f.NOW - i)
        for i in range(n)
    ]
    return alice, [*packets[:3], *((2, s) for s in flood), *packets[3:]], flood


def _tags(data: bytes) -> list[int]:
    return [p.tag for p in split_packets(data)]


def test_publishable_serves_attested_user_ids_with_their_self_signatures_only() -> None:
    alice, packets, flood = _flooded(300)
    cert = parse_certificate(f.join(packets))
    # The stored certificate keeps every certification: nothing is lost.
    assert sum(1 for p in split_packets(cert.data) if p.body in flood) == 300

    served = split_packets(publishable(cert, [ALICE]))
    assert [p.tag for p in served] == [6, 13, 2, 14, 2, 14, 2]
    assert served[0] == RawPacket(6, alice.body)
    assert served[1] == RawPacket(13, ALICE)
    assert not any(p.body in flood for p in served)
    assert WORK not in [p.body for p in served]


def test_identity_free_form() -> None:
    _, packets, _ = _flooded(3)
    cert = parse_certificate(f.join(packets))
    assert _tags(publishable(cert, ())) == [6, 14, 2, 14, 2]


def test_attested_but_unbound_user_ids_are_not_served() -> None:
    _alice, packets = f.simple_cert(ALICE)
    mallory = b"Mallory <mallory@example.org>"
    cert = parse_certificate(f.join([*packets, (13, mallory)]))
    assert mallory not in [p.body for p in split_packets(publishable(cert, [ALICE, mallory]))]


def test_user_attributes_bad_signatures_and_unknown_packets_are_never_served() -> None:
    alice, packets = f.simple_cert(ALICE)
    attr = bytes((9, 1)) + b"\x10\x00\x01\x01" + b"jpeg"
    attr_sig = alice.sign(
        0x13, f.key_material(alice.body) + b"\xd1" + struct.pack(">I", len(attr)) + attr
    )
    bad = f.certify(alice, alice, b"Somebody else")
    data = f.join([*packets[:3], (17, attr), (2, attr_sig), (2, bad), (61, b"x"), *packets[3:]])
    cert = parse_certificate(data)
    served = publishable(cert, [ALICE])
    assert set(_tags(served)) == {2, 6, 13, 14}
    assert f.packet(2, bad) not in served and f.packet(2, bad) not in cert.data


def test_direct_key_signatures_and_revocations_are_served(gpg: GpgRun) -> None:
    tsk = generate("Rita <rita@example.org>")
    cert_ = public(tsk)
    revocation = bytes(cert_.revoke(tsk.certifier()))
    cert = parse_certificate(bytes(cert_) + revocation)
    served = publishable(cert, ())
    assert revocation[2:] in served  # the signature body, whatever its header
    # Sequoia's certificates carry a direct-key signature, so the identity-free form is a
    # certificate gpg imports as is (and sees revoked).
    shown = gpg("--with-colons", "--show-keys", data=served)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith(b"pub:r:")


def _served(cert: ParsedCert, attested: list[bytes]) -> bytes:
    data = publishable(cert, attested)
    Cert.from_bytes(data)  # Sequoia takes it back
    return data


def test_output_imports_into_gnupg(gpg: GpgRun) -> None:
    alice, packets, _ = _flooded(20)
    cert = parse_certificate(f.join(packets))

    full = gpg("--with-colons", "--show-keys", data=_served(cert, [ALICE, WORK]))
    assert full.returncode == 0, full.stderr
    assert sorted(colons_uids(full.stdout)) == sorted([ALICE, WORK])
    assert full.stdout.count(b"\nsub:") == 2

    one = gpg("--import", "--import-options", "import-minimal", data=_served(cert, [WORK]))
    assert one.returncode == 0, one.stderr
    listed = gpg("--with-colons", "--list-keys", alice.fpr_hex)
    assert colons_uids(listed.stdout) == [WORK]
    # No third-party signature made it: every signature gpg sees is Alice's own (one on the
    # user ID, one per subkey binding).
    sigs = gpg("--with-colons", "--list-sigs", alice.fpr_hex).stdout
    issuers = [line.split(b":")[4] for line in sigs.splitlines() if line.startswith(b"sig:")]
    assert issuers == [alice.key_id.hex().upper().encode()] * 3


def test_identity_free_output_and_gnupg(gpg: GpgRun) -> None:
    """gpg refuses a certificate without user IDs: that is expected for the identity-free
    form of a key without a direct-key signature, and the reason it is only served to
    clients that asked by fingerprint."""
    _, packets = f.simple_cert(ALICE)
    cert = parse_certificate(f.join(packets))
    result = gpg("--import", data=_served(cert, []))
    assert b"no user ID" in result.stderr


def test_served_signatures_carry_no_foreign_unhashed_subpackets(gpg: GpgRun) -> None:
    """Anybody may upload a copy of Alice's key whose binding has another issuer key id in
    the unsigned area. GnuPG takes the first issuer key id it finds and would then drop the
    user ID, so what is served keeps only the issuer naming Alice (and back-signatures)."""
    _, packets = f.simple_cert(ALICE)
    binding = packets[2][1]
    hashed_len = int.from_bytes(binding[4:6], "big")
    at = 6 + hashed_len
    unhashed_len = int.from_bytes(binding[at : at + 2], "big")
    foreign = f.subpacket(f.ISSUER, f.Key("ed25519").key_id)
    unhashed = foreign + binding[at + 2 : at + 2 + unhashed_len]
    doctored = binding[:at] + len(unhashed).to_bytes(2, "big") + unhashed
    doctored += binding[at + 2 + unhashed_len :]
    assert (
        colons_uids(
            gpg("--with-colons", "--show-keys", data=f.join([*packets[:2], (2, doctored)])).stdout
        )
        == []
    )

    stored = parse_certificate(f.join(packets))
    merged = merge(stored.data, f.join([*packets[:2], (2, doctored)]))
    assert [u.raw for u in merged.user_ids] == [ALICE]
    served = publishable(merged, [ALICE])
    assert foreign not in served
    shown = gpg("--with-colons", "--show-keys", data=served)
    assert colons_uids(shown.stdout) == [ALICE]
    assert shown.stdout.count(b"\nsub:") == 2  # the signing subkey's back-signature survived


def test_a_bogus_back_signature_is_not_served() -> None:
    """GnuPG checks only the first back-signature of a signing subkey's binding; a bogus one
    added to the unsigned area (and merged in by Sequoia) must not be served in front of the
    real one."""
    _, packets = f.simple_cert(ALICE)
    binding = packets[-1][1]  # the signing subkey's binding, back-signature unhashed
    hashed_len = int.from_bytes(binding[4:6], "big")
    at = 6 + hashed_len
    unhashed_len = int.from_bytes(binding[at : at + 2], "big")
    unhashed = binding[at + 2 : at + 2 + unhashed_len]
    genuine = next(b for t, b in _subpackets(unhashed) if t == f.EMBEDDED)
    bogus = genuine[:-3] + bytes((genuine[-3] ^ 1,)) + genuine[-2:]
    area = f.subpacket(f.EMBEDDED, bogus) + unhashed
    doctored = binding[:at] + len(area).to_bytes(2, "big") + area + binding[at + 2 + unhashed_len :]

    stored = parse_certificate(f.join(packets))
    merged = merge(stored.data, f.join([packets[0], packets[-2], (2, doctored)]))
    served = publishable(merged, [ALICE])
    assert genuine in served and bogus not in served
    assert len(merged.subkeys) == 2


def _subpackets(area: bytes) -> list[tuple[int, bytes]]:
    out = []
    i = 0
    while i < len(area):
        n = area[i]
        i += 1
        if n >= 192:
            n = ((n - 192) << 8) + area[i] + 192
            i += 1
        out.append((area[i], area[i + 1 : i + n]))
        i += n
    return out
