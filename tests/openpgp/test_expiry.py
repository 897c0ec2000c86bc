"""Expired certificates keep their validly bound user IDs: a keyserver serves them, with
their expiry, and lets clients decide."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from attester.openpgp import parse_certificate, publishable
from attester.openpgp._packets import split_packets
from tests.openpgp import forge as f
from tests.openpgp.conftest import GpgRun, colons_uids, generate, public


def test_gpg_certificate_expired_years_ago(gpg: GpgRun) -> None:
    # Made "in 2010", valid for a year: expired since 2011.
    made = gpg(
        "--faked-system-time",
        "20100101T000000!",
        "--passphrase",
        "",
        "--pinentry-mode",
        "loopback",
        "--quick-gen-key",
        "Old Timer <old@example.org>",
        "default",
        "default",
        "1y",
    )
    assert made.returncode == 0, made.stderr
    data = gpg("--export", "old@example.org").stdout
    cert = parse_certificate(data)
    assert [u.text for u in cert.user_ids] == ["Old Timer <old@example.org>"]
    assert cert.primary.created == datetime(2010, 1, 1, tzinfo=UTC)
    assert cert.expires == datetime(2011, 1, 1, tzinfo=UTC)
    # GnuPG puts no expiry on the subkey binding; the primary key's expiry covers it.
    assert len(cert.subkeys) == 1 and cert.subkeys[0].expires is None
    assert not cert.can_encrypt(datetime.now(UTC))
    assert cert.can_encrypt(datetime(2010, 6, 1, tzinfo=UTC))
    served = publishable(cert, [cert.user_ids[0].raw])
    assert [p.body for p in split_packets(served) if p.tag == 13] == [
        b"Old Timer <old@example.org>"
    ]
    shown = gpg("--with-colons", "--show-keys", data=served)
    assert colons_uids(shown.stdout) == [b"Old Timer <old@example.org>"]


def test_certificate_expired_last_month() -> None:
    carol = f.Key("ed25519")  # created 30 days ago
    expiry = [f.subpacket(f.KEY_EXPIRES, (86400).to_bytes(4, "big"))]
    uid = b"Gone <gone@example.org>"
    sig = f.certify(carol, carol, uid, hashed=expiry, created=carol.created + 60)
    data = f.join([(6, carol.body), (13, uid), (2, sig)])
    cert = parse_certificate(data)
    assert [u.raw for u in cert.user_ids] == [uid]
    assert cert.expires == datetime.fromtimestamp(carol.created + 86400, UTC)
    assert cert.expires < datetime.now(UTC)


def test_pysequoia_set_expiration() -> None:
    tsk = generate("Soon <soon@example.org>")
    when = (datetime.now(UTC) + timedelta(days=2)).replace(microsecond=0)
    cert = parse_certificate(bytes(public(tsk).set_expiration(when, tsk.certifier())))
    assert cert.expires == when
    assert cert.user_ids[0].expires is None  # the key expires, not the binding


def test_user_id_binding_expiry_is_reported() -> None:
    carol, packets = f.simple_cert(b"Carol <carol@example.org>", subkeys=False)
    sig = f.certify(
        carol,
        carol,
        b"Short <short@example.org>",
        hashed=[f.subpacket(f.SIG_EXPIRES, (600).to_bytes(4, "big"))],
    )
    cert = parse_certificate(f.join([*packets, (13, b"Short <short@example.org>"), (2, sig)]))
    short = next(u for u in cert.user_ids if u.text.startswith("Short"))
    assert short.expires == datetime.fromtimestamp(f.NOW + 600, UTC)  # expired, still listed


def test_key_expiry_comes_from_the_newest_self_signature() -> None:
    """The owner re-signed only one user ID to extend the key; that newest statement wins
    (as in GnuPG), whatever the older binding of the primary user ID says."""
    carol, packets = f.simple_cert(subkeys=False)

    def key_expiry(days: int) -> list[bytes]:
        return [f.subpacket(f.KEY_EXPIRES, (days * 86400).to_bytes(4, "big"))]

    primary_flag = [f.subpacket(f.PRIMARY_UID, b"\x01")]
    one = f.certify(carol, carol, b"One", hashed=key_expiry(40) + primary_flag, created=f.NOW - 500)
    two = f.certify(carol, carol, b"Two", hashed=key_expiry(400), created=f.NOW - 100)
    cert = parse_certificate(f.join([*packets, (13, b"One"), (2, one), (13, b"Two"), (2, two)]))
    assert cert.expires == datetime.fromtimestamp(carol.created + 400 * 86400, UTC)
