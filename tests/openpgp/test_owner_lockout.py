"""Owners are never locked out of their own key (issue 10, item 13): limits count what is
validly bound, once; components nobody bound are not stored beyond a small cap; a limit
is a 400 with its sentence, never a 500."""

from __future__ import annotations

from attester.openpgp import Limits, armor, merge, parse_certificate
from attester.service.attestation import Attestation
from tests.openpgp.forge import Key, bind, certify, join, split
from tests.support.keys import TestKey
from tests.support.server import Server


def _with_uids(n: int) -> TestKey:
    key = TestKey.generate("Own <own@example.org>")
    for i in range(1, n):
        key = key.with_user_id(f"Own {i} <own{i}@example.org>")
    return key


def test_a_key_with_60_user_ids_can_be_updated() -> None:
    key = _with_uids(60)
    stored = parse_certificate(key.public)
    assert len(stored.user_ids) == 60
    updated = key.with_user_id("Own new <own-new@example.org>")
    merged = merge(stored.data, updated.public)
    assert len(merged.user_ids) == 61


def test_padding_with_unbound_components_is_capped() -> None:
    victim = Key("ed25519")
    uid = b"Victim <victim@example.org>"
    pad: list[tuple[int, bytes]] = []
    mallory = Key("ed25519")
    for i in range(98):
        junk = f"Junk {i} <junk{i}@example.org>".encode()
        # A third-party certification by Mallory: the user ID is bound by nobody.
        pad += [(13, junk), (2, certify(mallory, victim, junk))]
    for _ in range(20):
        pad += [(14, Key("cv25519").body)]  # unsigned subkeys
    stored = parse_certificate(
        join([(6, victim.body), (13, uid), (2, certify(victim, victim, uid)), *pad])
    )
    limits = Limits()
    assert [u.text for u in stored.user_ids] == ["Victim <victim@example.org>"]
    assert any("without a self-signature dropped" in i for i in stored.ignored)
    # At most the cap of unbound components is stored, so the owner can still add 80 more.
    enc = Key("cv25519")
    update = [(6, victim.body), (13, uid), (2, certify(victim, victim, uid))]
    for i in range(80):
        u = f"V {i} <v{i}@example.org>".encode()
        update += [(13, u), (2, certify(victim, victim, u))]
    update += [(14, enc.body), (2, bind(victim, enc))]
    merged = merge(stored.data, join(update), limits)
    assert len(merged.user_ids) == 81 and len(merged.subkeys) == 1


def test_a_limit_on_merge_is_a_400_not_a_500(server: Server, attestation: Attestation) -> None:
    key = _with_uids(90)
    assert attestation.imports.keyring(key.public, attest_emails=True).attested == 90
    more = key
    for i in range(20):
        more = more.with_user_id(f"More {i} <more{i}@example.org>")
    # The upload alone has 110 user IDs: refused as an upload.
    r = server.client.post("/pub/own@example.org", content=more.armored)
    assert r.status_code == 400 and "100 user IDs" in r.json()["message"]
    # 15 new ones alone are fine, but stored + new exceed the limit: still a 400.
    full = key
    for i in range(15):
        full = full.with_user_id(f"Part {i} <part{i}@example.org>")
    known = {u.raw for u in parse_certificate(key.public).user_ids} - {b"Own <own@example.org>"}
    packets, keep = split(full.public), True
    part = []
    for tag, body in packets:
        if tag == 13:
            keep = body not in known
        if keep or tag not in (13, 2):
            part.append((tag, body))
    data = join(part)
    assert len(parse_certificate(data).user_ids) == 16
    r = server.client.post("/pub/own@example.org", content=data)
    assert r.status_code == 400 and "user IDs" in r.json()["message"], r.text
    r = server.client.post("/pks/add", data={"keytext": armor(data)})
    assert r.status_code == 400 and "Rejected" in r.text
