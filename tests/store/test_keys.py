"""The key store on both backends: merge results, lookups, atomic concurrent merges."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

from attester.openpgp import parse_certificate
from attester.openpgp.types import Email, Fingerprint, KeyID
from attester.service.core import Core
from attester.service.ingest import ImportResult
from attester.store.views import AttestedBy
from tests.support.keys import TestKey

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def _merge(core: Core, data: bytes) -> ImportResult:
    cert = parse_certificate(data, core.settings.limits)
    with core.store.write() as tx:
        return core.ingest.merge(tx, cert, "upload", NOW).result


def test_new_unchanged_updated(core: Core) -> None:
    key = TestKey.generate("Alice <alice@example.org>")
    assert _merge(core, key.public) is ImportResult.NEW
    assert _merge(core, key.public) is ImportResult.UNCHANGED
    assert _merge(core, key.with_user_id("Alice <alice@work.example>").public) is (
        ImportResult.UPDATED
    )
    [stored] = core.store.by_fingerprint(Fingerprint(key.fingerprint))
    assert stored is not None
    uids = {u.uid for u in core.store.user_ids_of(stored.id)}
    assert uids == {"Alice <alice@example.org>", "Alice <alice@work.example>"}
    assert core.store.stats()["keys"] == 1


def test_lookup_paths(core: Core) -> None:
    key = TestKey.generate("Bob <bob@example.org>")
    _merge(core, key.public)
    cert = parse_certificate(key.public, core.settings.limits)
    fpr = Fingerprint(key.fingerprint)
    [by_fpr] = core.store.by_fingerprint(fpr)
    assert by_fpr is not None and by_fpr.fingerprint == fpr
    for sub in cert.subkeys:
        [hit] = core.store.by_fingerprint(sub.fingerprint)
        assert hit is not None and hit.fingerprint == fpr
        assert [c.fingerprint for c in core.store.by_key_id(sub.key_id)] == [fpr]
    assert [c.fingerprint for c in core.store.by_key_id(KeyID(key.key_id))] == [fpr]
    assert core.store.by_digest(cert.digest) is not None
    # Not attested: not findable by email, served identity-free by fingerprint.
    assert core.store.by_email(Email.parse("bob@example.org")) == []
    assert by_fpr.armored_published is None
    assert "BEGIN PGP PUBLIC KEY BLOCK" in by_fpr.armored
    assert parse_certificate(by_fpr.armored.encode(), core.settings.limits).user_ids == ()


def test_attest_publishes_only_attested_user_ids(core: Core) -> None:
    key = TestKey.generate("Carol <carol@example.org>").with_user_id("Carol <carol@other.example>")
    cert = parse_certificate(key.public, core.settings.limits)
    with core.store.write() as tx:
        o = core.ingest.merge(tx, cert, "upload", NOW)
        done = core.publication.attest(
            tx, o.cert_id, o.cert, [Email.parse("carol@example.org")], AttestedBy.EMAIL, NOW
        )
    assert done == {Email.parse("carol@example.org")}
    [hit] = core.store.by_email(Email.parse("carol@example.org"))
    assert hit.armored_published is not None
    served = parse_certificate(hit.armored_published.encode(), core.settings.limits)
    assert [u.text for u in served.user_ids] == ["Carol <carol@example.org>"]
    assert core.store.by_email(Email.parse("carol@other.example")) == []
    [u] = [u for u in core.store.user_ids_of(hit.id) if u.published]
    assert u.attested_by is AttestedBy.EMAIL and u.attested_at == NOW


def test_revocation_wins_and_unpublishes(core: Core) -> None:
    key = TestKey.generate("Dave <dave@example.org>")
    cert = parse_certificate(key.public, core.settings.limits)
    with core.store.write() as tx:
        o = core.ingest.merge(tx, cert, "upload", NOW)
        core.publication.attest(tx, o.cert_id, o.cert, cert.emails, AttestedBy.OPERATOR, NOW)
    assert core.store.by_email(Email.parse("dave@example.org"))
    assert _merge(core, key.revoked_public()) is ImportResult.UPDATED
    assert core.store.by_email(Email.parse("dave@example.org")) == []
    # An older, unrevoked copy does not undo the revocation.
    assert _merge(core, key.public) is ImportResult.UNCHANGED
    [stored] = core.store.by_fingerprint(Fingerprint(key.fingerprint))
    assert stored is not None and stored.revoked
    # Still served by fingerprint, so clients learn of the revocation.
    assert parse_certificate(stored.armored.encode(), core.settings.limits).revoked


def test_revoked_user_id_is_unpublished(core: Core) -> None:
    key = TestKey.generate("Erin <erin@example.org>").with_user_id("Erin <erin@old.example>")
    cert = parse_certificate(key.public, core.settings.limits)
    with core.store.write() as tx:
        o = core.ingest.merge(tx, cert, "upload", NOW)
        core.publication.attest(tx, o.cert_id, o.cert, cert.emails, AttestedBy.OPERATOR, NOW)
    _merge(core, key.public + key.user_id_revocation("Erin <erin@old.example>"))
    assert core.store.by_email(Email.parse("erin@old.example")) == []
    [hit] = core.store.by_email(Email.parse("erin@example.org"))
    assert hit.armored_published is not None
    served = parse_certificate(hit.armored_published.encode(), core.settings.limits)
    assert [u.text for u in served.user_ids] == ["Erin <erin@example.org>"]


def test_twenty_concurrent_merges_lose_nothing(core: Core) -> None:
    base = TestKey.generate("Frank <frank@example.org>")
    _merge(core, base.public)
    versions = [base.with_user_id(f"Frank {i} <frank{i}@example.org>") for i in range(20)]
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(versions))

    def run(k: TestKey) -> None:
        try:
            barrier.wait()
            _merge(core, k.public)
        except BaseException as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=run, args=(k,)) for k in versions]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    [stored] = core.store.by_fingerprint(Fingerprint(base.fingerprint))
    assert stored is not None
    uids = {u.uid for u in core.store.user_ids_of(stored.id)}
    assert uids == {"Frank <frank@example.org>"} | {
        f"Frank {i} <frank{i}@example.org>" for i in range(20)
    }
    data = core.store.stored_data(Fingerprint(base.fingerprint))
    assert data is not None
    assert len(parse_certificate(data, core.settings.limits).user_ids) == 21


def test_concurrent_first_uploads_of_one_certificate(core: Core) -> None:
    """Writers racing to store a certificate nobody has yet end with one row holding all of
    their user IDs (PostgreSQL takes the ON CONFLICT path, SQLite the write lock)."""
    base = TestKey.generate("Gus <gus@example.org>")
    versions = [base.with_user_id(f"Gus {i} <gus{i}@example.org>") for i in range(8)]
    results: list[ImportResult] = []
    barrier = threading.Barrier(len(versions))

    def run(k: TestKey) -> None:
        barrier.wait()
        results.append(_merge(core, k.public))

    threads = [threading.Thread(target=run, args=(k,)) for k in versions]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(r.value for r in results) == ["new"] + ["updated"] * 7
    assert core.store.stats()["keys"] == 1
    data = core.store.stored_data(Fingerprint(base.fingerprint))
    assert data is not None
    assert len(parse_certificate(data, core.settings.limits).user_ids) == 9
