"""Attester with Attester, reconciling over loopback.

Keys learnt by recon keep ``recon:<peer>`` as their origin: served by fingerprint and
key id, by email only when the operator opted in for that peer (``serve_emails``), and
never in place of an address attested here.
"""

from __future__ import annotations

from pathlib import Path

import httpx

from attester.config import Settings
from attester.service.attestation import Attestation
from attester.service.core import Core
from attester.store.db import open_database, upgrade
from tests.recon.conftest import attester, load, recon_settings, stored_digests
from tests.recon.test_sks import sync_now
from tests.support.keys import TestKey
from tests.support.sks import wait_for
from tests.support.smtp import free_port

A, B = "127.0.0.2", "127.0.0.3"


def _attest(settings: Settings, key: TestKey, email: str) -> None:
    db = open_database(settings.database_url)
    upgrade(db)
    service = Attestation.build(Core(settings, db))
    service.imports.keyring(key.public, source="import", attest_emails=True)
    db.dispose()


def test_recon_keys_keep_their_origin(tmp_path: Path) -> None:
    shared = TestKey.generate("Shared <shared@example.org>")  # attested on A
    other = TestKey.generate("Impostor <shared@example.org>")  # B's key for that address
    only_b = TestKey.generate("Bea <bea@example.org>")
    a_port, b_port = free_port(), free_port()
    a = recon_settings(
        f"sqlite:///{tmp_path / 'a.db'}",
        tmp_path,
        A,
        [{"address": f"{B}:{b_port}", "name": "b", "serve_emails": True}],
        recon_port=a_port,
    )
    b = recon_settings(
        f"sqlite:///{tmp_path / 'b.db'}",
        tmp_path,
        B,
        [{"address": f"{A}:{a_port}", "name": "a"}],
        recon_port=b_port,
    )
    _attest(a, shared, "shared@example.org")
    load(b, [other.public, only_b.public])
    with attester(a, A) as live_a, attester(b, B) as live_b:
        # B connects to A (A drives); each learns the other's keys.
        report = sync_now(live_b.settings)
        assert report.completed, report.problem
        wait_for(lambda: len(stored_digests(a)) == 3 and len(stored_digests(b)) == 3, 20, "both")
        # On B (serve_emails off for A): A's key by fingerprint, marked with its origin,
        # and not by email: B has no address attested, and A's word does not count.
        assert _origin(live_b, f"/pks/lookup?op=get&search=0x{shared.fingerprint}") == "recon:a"
        assert _origin(live_b, f"/vks/v1/by-keyid/{shared.key_id}") == "recon:a"
        assert live_b.client.get("/vks/v1/by-email/shared@example.org").status_code == 404
        # On A (serve_emails on for B): B's keys by email too, marked with their origin...
        assert _origin(live_a, "/pks/lookup?op=get&search=bea@example.org") == "recon:b"
        # ... but never in place of the address attested here.
        own = live_a.client.get("/pks/lookup", params={"op": "get", "search": "shared@example.org"})
        assert own.headers["X-Attester-Origin"] == "local"
        assert _fingerprints(own) == [shared.fingerprint]
        # Nothing learnt by recon became attested.
        assert _attested(a) == ["shared@example.org"] and _attested(b) == []


def _attested(settings: Settings) -> list[str]:
    from sqlalchemy import select

    from attester.store.schema import user_ids

    db = open_database(settings.database_url)
    with db.reader.connect() as c:
        rows = c.execute(select(user_ids.c.email).where(user_ids.c.attested_at.is_not(None)))
        out = sorted(r[0] for r in rows)
    db.dispose()
    return out


def _origin(live: object, path: str) -> str:
    assert hasattr(live, "client")
    r = live.client.get(path)
    assert r.status_code == 200, r.text
    return str(r.headers["X-Attester-Origin"]).split(";")[0]


def _fingerprints(r: httpx.Response) -> list[str]:
    from attester.openpgp import parse_certificates
    from attester.openpgp._packets import dearmor

    return [str(c.fingerprint) for c in parse_certificates(dearmor(r.content))]
