"""Verification mails: one per (address, key), a ceiling per mailbox (sub-addresses
folded), per key and per request, 429 with Retry-After when hit, and the same answer
whether or not a verification is pending (issue 10, items 4, 8 and 19)."""

from __future__ import annotations

from sqlalchemy import func, select

from attester.service.attestation import Attestation
from attester.store.db import Database
from attester.store.schema import outbox
from tests.support.keys import TestKey
from tests.support.server import Server


def pending_count(db: Database) -> int:
    """Verification mails queued (sent or not)."""
    with db.read() as conn:
        q = select(func.count()).select_from(outbox).where(outbox.c.kind == "verify")
        return int(conn.execute(q).scalar_one())


def test_a_second_key_gets_its_own_link(server: Server, attestation: Attestation) -> None:
    a, b, c = (TestKey.generate("Pat <pat@example.org>") for _ in range(3))
    assert attestation.imports.keyring(a.public, attest_emails=True).attested == 1
    answers = []
    for key in (b, c):
        r = server.client.post("/pub/pat@example.org", content=key.armored)
        assert r.status_code == 200
        answers.append(r.text)
    assert pending_count(attestation.core.db) == 2  # one link for B, one for C
    # The same key again: no new mail, and the very same words (nothing about pending).
    r = server.client.post("/pub/pat@example.org", content=c.armored)
    assert r.status_code == 200 and r.text == answers[1] == answers[0]
    assert pending_count(attestation.core.db) == 2


def test_mailbox_ceiling_folds_sub_addresses(server: Server, attestation: Attestation) -> None:
    limit = attestation.core.settings.mail_per_mailbox_limit
    for i in range(limit):
        key = TestKey.generate(f"V <victim+{i}@example.org>")
        r = server.client.post(f"/pub/victim+{i}@example.org", content=key.armored)
        assert r.status_code == 200
    key = TestKey.generate("V <victim+x@example.org>")
    r = server.client.post("/pub/victim+x@example.org", content=key.armored)
    assert r.status_code == 429 and int(r.headers["retry-after"]) > 0
    assert "No confirmation email was sent" in r.json()["message"]
    assert pending_count(attestation.core.db) == limit


def test_one_pks_add_cannot_bomb_a_mailbox(server: Server, attestation: Attestation) -> None:
    key = TestKey.generate("V <victim+0@example.org>")
    for i in range(1, 40):
        key = key.with_user_id(f"V <victim+{i}@example.org>")
    r = server.client.post("/pks/add", data={"keytext": key.armored})
    assert r.status_code == 429 and int(r.headers["retry-after"]) > 0
    assert pending_count(attestation.core.db) == attestation.core.settings.mail_per_mailbox_limit


def test_one_keyring_queues_at_most_the_request_limit(
    server: Server, attestation: Attestation
) -> None:
    keys = [TestKey.generate(f"K <k{i}@d{i}.example>") for i in range(25)]
    r = server.client.post("/pks/add", data={"keytext": "".join(k.armored for k in keys)})
    assert r.status_code == 429
    assert pending_count(attestation.core.db) == attestation.core.settings.mail_per_request_limit
    assert r.text.count("Key ") == 25  # every key stored
