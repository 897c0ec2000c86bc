"""The audit log is append-only in the database itself, on SQLite and PostgreSQL, and
records who changed what from where: an email confirmation by the confirmed address and
the client's address, a management link by its owner, the operator's import."""

from __future__ import annotations

import pytest
from sqlalchemy import delete, exc, text, update

from attester.openpgp.types import Email
from attester.service.attestation import Attestation
from attester.service.core import Core
from attester.store.audit import AuditFilter, AuditStore
from attester.store.schema import audit_log
from tests.service.test_removal_wins import verify_link
from tests.support.keys import TestKey


def test_rows_cannot_be_changed_or_deleted(core: Core, attestation: Attestation) -> None:
    attestation.imports.keyring(TestKey.generate("A <a@example.com>").public, attest_emails=True)
    for statement in (
        update(audit_log).values(actor="someone else"),
        delete(audit_log),
        text("UPDATE audit_log SET reason = 'rewritten'"),
    ):
        with pytest.raises(exc.DatabaseError, match="append-only"), core.db.write() as conn:
            conn.execute(statement)
    [entry] = AuditStore(core.db).query(AuditFilter())
    assert (entry.action, entry.actor_kind, entry.actor) == ("attest", "import", "operator")


def test_confirmations_and_management_are_audited_with_the_client_address(
    core: Core, attestation: Attestation
) -> None:
    key = TestKey.generate("Bea <bea@example.com>")
    attestation.submit.for_address(Email("bea@example.com"), key.public)
    view = attestation.verify.confirm(verify_link(core, "bea@example.com"), "198.51.100.7")
    assert view.state.value == "confirmed"
    entries = AuditStore(core.db).query(AuditFilter(email=Email("bea@example.com")))
    assert [(e.action, e.actor_kind, e.actor, e.client_address) for e in entries] == [
        ("verify-mail", "system", "attester", None),
        ("attest", "email", "bea@example.com", "198.51.100.7"),
    ]
    assert entries[1].fingerprint == key.fingerprint
