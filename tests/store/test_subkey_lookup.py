"""Lookups by a subkey's fingerprint or key id cannot be hijacked: anybody can bind a
victim's encryption subkey (or primary key) as a subkey of his own certificate, since
encryption subkeys need no back-signature (issue 10, item 14)."""

from __future__ import annotations

import pytest
from sqlalchemy import update

from attester.openpgp import Fingerprint, KeyID, parse_certificates
from attester.service.attestation import Attestation
from attester.store.schema import certs
from tests.openpgp.forge import Key, bind, certify, join
from tests.support.server import Server


@pytest.fixture
def keys(attestation: Attestation) -> dict[str, Key]:
    victim, enc = Key("ed25519"), Key("cv25519")
    uid = b"Victim <victim@example.org>"
    victim_cert = join(
        [
            (6, victim.body),
            (13, uid),
            (2, certify(victim, victim, uid)),
            (14, enc.body),
            (2, bind(victim, enc)),
        ]
    )
    # Mallory binds the victim's encryption subkey and the victim's primary key (as an
    # encryption subkey) to his own key, with his own attested address.
    mallory = Key("ed25519")
    muid = b"Mallory <mallory@example.org>"
    mallory_cert = join(
        [
            (6, mallory.body),
            (13, muid),
            (2, certify(mallory, mallory, muid)),
            (14, enc.body),
            (2, bind(mallory, enc)),
            (14, victim.body),
            (2, bind(mallory, victim)),
        ]
    )
    # Mallory's key is stored and attested first: neither order nor attestation helps him.
    assert attestation.imports.keyring(mallory_cert, attest_emails=True).attested == 1
    assert attestation.imports.keyring(victim_cert, attest_emails=True).attested == 1
    return {"victim": victim, "enc": enc, "mallory": mallory}


def _fprs(certs: list) -> list[str]:  # type: ignore[type-arg]
    return [str(c.fingerprint) for c in certs]


def test_primary_match_wins_alone(attestation: Attestation, keys: dict[str, Key]) -> None:
    store = attestation.core.store
    for _ in range(8):
        assert _fprs(store.by_fingerprint(Fingerprint(keys["victim"].fpr_hex))) == [
            keys["victim"].fpr_hex
        ]
        kid = KeyID(keys["victim"].fpr_hex[-16:])
        assert _fprs(store.by_key_id(kid)) == [keys["victim"].fpr_hex]


def test_subkey_matches_all_served_deterministically(
    attestation: Attestation, keys: dict[str, Key]
) -> None:
    store = attestation.core.store
    enc = Fingerprint(keys["enc"].fpr_hex)
    seen = {tuple(_fprs(store.by_fingerprint(enc))) for _ in range(8)}
    # Both attested: in the order stored, every time.
    assert seen == {(keys["mallory"].fpr_hex, keys["victim"].fpr_hex)}
    # An owner with an attested address comes before one without.
    with attestation.core.store.write() as tx:
        cert_id = tx.cert_id(Fingerprint(keys["mallory"].fpr_hex))
        assert cert_id is not None
        rows = [r.id for r in tx.user_id_rows(cert_id)]
        tx.set_attested(rows, None, None)
        tx.conn.execute(update(certs).where(certs.c.id == cert_id).values(armored_published=None))
    assert _fprs(store.by_fingerprint(enc)) == [keys["victim"].fpr_hex, keys["mallory"].fpr_hex]


def test_lookups_serve_every_subkey_match_in_one_answer(
    server: Server, keys: dict[str, Key]
) -> None:
    enc = keys["enc"].fpr_hex
    want = [keys["mallory"].fpr_hex, keys["victim"].fpr_hex]
    for path in (f"/vks/v1/by-fingerprint/{enc}", f"/pub/{enc}", f"/vks/v1/by-keyid/{enc[-16:]}"):
        r = server.client.get(path)
        assert r.status_code == 200
        assert _fprs(parse_certificates(r.content)) == want, path
    r = server.client.get("/pks/lookup", params={"op": "get", "search": f"0x{enc}"})
    assert _fprs(parse_certificates(r.content)) == want
    victim = keys["victim"].fpr_hex
    for path in (f"/vks/v1/by-fingerprint/{victim}", f"/pub/{victim}", f"/pub/{victim[-16:]}"):
        r = server.client.get(path)
        assert _fprs(parse_certificates(r.content)) == [victim], path
