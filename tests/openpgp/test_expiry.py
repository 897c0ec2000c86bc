"""Expired certificates keep their validly bound user IDs: a keyserver serves them (with
their expiry), and Sequoia's ``Cert.user_ids`` cannot be used for that."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pysequoia import Cert

from attester.openpgp import parse_certificate, publishable
from attester.openpgp._packets import split_packets
from tests.openpgp import forge as f
from tests.openpgp.conftest import GpgRun, colons_uids, generate, public


def test_gpg_certificate_expired_years_ago(gpg: GpgRun) -> None:
    # Made "in 2010", valid for a year: expired since 2011.
    made = gpg(
        "--faked-system-time", "20100101T000000!", "--passphrase", "", "--pinentry-mode",
        "loopback", "--quick-gen-key", "Old Timer <old@example.org>", "rsa2048", "default", "1y",
    )
    assert made.returncode == 0, made.stderr
    exported = gpg("--export", "old@example.org")
    data = exported.stdout.encode("latin-1") if isinstance(exported.stdout, str) else b""
    # ``gpg()`` decodes output as text; export armored instead to keep the bytes intact.
    armored = gpg("--armor", "--export", "old@example.org").stdout.encode()
    assert armored.startswith(b"-----BEGIN PGP PUBLIC KEY BLOCK-----"), data[:40]

    with pytest.raises(Exception, match="No binding signature"):
        Cert.from_bytes(armored).user_ids  # noqa: B018 - the property raises

    cert = parse_certificate(armored)
    assert [u.text for u in cert.user_ids] == ["Old Timer <old@example.org>"]
    assert cert.expires == datetime(2011, 1, 1, tzinfo=UTC)
    assert cert.primary.created == datetime(2010, 1, 1, tzinfo=UTC)
    assert len(cert.subkeys) == 1 and cert.subkeys[0].expires == datetime(2011, 1, 1, tzinfo=UTC)
    assert not cert.can_encrypt(datetime.now(UTC))
    assert cert.can_encrypt(datetime(2010, 6, 1, tzinfo=UTC))
    served = split_packets(publishable(cert, [cert.user_ids[0].raw]))
    assert [p.body for p in served if p.tag == 13] == [b"Old Timer <old@example.org>"]
    assert colons_uids(gpg("--with-colons", "--show-keys", data=publishable(cert, [cert.user_ids[0].raw])).stdout) == [
        "Old Timer <old@example.org>"
    ]


def test_pysequoia_expiration_set_in_the_past() -> None:
    tsk = generate("Gone <gone@example.org>")
    past = datetime.now(UTC).replace(microsecond=0) - timedelta(days=2)
    expired = public(tsk).set_expiration(past, tsk.certifier())
    cert = parse_certificate(bytes(expired))
    assert [u.text for u in cert.user_ids] == ["Gone <gone@example.org>"]
    assert cert.expires is not None and abs(cert.expires - past) <= timedelta(seconds=1)
    assert not cert.can_encrypt(datetime.now(UTC))


def test_user_id_binding_expiry_is_reported() -> None:
    carol, packets = f.simple_cert(b"Carol <carol@example.org>", subkeys=False)
    sig = f.certify(
        carol, carol, b"Short <short@example.org>", hashed=[f.subpacket(f.SIG_EXPIRES, (600).to_bytes(4, "big"))]
    )
    cert = parse_certificate(f.join([*packets, (13, b"Short <short@example.org>"), (2, sig)]))
    short = next(u for u in cert.user_ids if u.text.startswith("Short"))
    assert short.expires == datetime.fromtimestamp(f.NOW + 600, UTC)  # expired, still listed


def test_key_expiry_comes_from_the_newest_self_signature() -> None:
    """The owner re-signed only one user ID to extend the key; that newest statement wins
    (as in GnuPG), whatever the older binding of the primary user ID says."""
    carol, packets = f.simple_cert(subkeys=False)
    key_expiry = lambda days: [f.subpacket(f.KEY_EXPIRES, (days * 86400).to_bytes(4, "big"))]  # noqa: E731
    primary_flag = [f.subpacket(f.PRIMARY_UID, b"\x01")]
    one = f.certify(carol, carol, b"One", hashed=key_expiry(40) + primary_flag, created=f.NOW - 500)
    two = f.certify(carol, carol, b"Two", hashed=key_expiry(400), created=f.NOW - 100)
    cert = parse_certificate(f.join([*packets, (13, b"One"), (2, one), (13, b"Two"), (2, two)]))
    assert cert.expires == datetime.fromtimestamp(carol.created + 400 * 86400, UTC)
