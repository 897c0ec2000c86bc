"""The prefix tree in the database follows ``certs.digest`` in the same transaction, on
both backends: through the real write path (``Ingest.merge``), and through the hook itself
with thousands of digests so that leaves split and subtrees join again."""

from __future__ import annotations

import os
import random
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import delete, insert, select, update

from attester.config import Settings
from attester.recon.field import element, sample_values
from attester.recon.ptree import JOIN, SPLIT
from attester.service.attestation import Attestation
from attester.service.core import Core
from attester.store.db import Database
from attester.store.keys import KeyStore
from attester.store.recon import ReconStore
from attester.store.schema import certs, recon_nodes
from tests.support.keys import TestKey

NOW = datetime(2026, 11, 29, tzinfo=UTC)


def _fake_certs(db: Database, digests: list[str]) -> None:
    """Certificate rows carrying these digests, written as a write step would: the row,
    then the hook, in one transaction (the rest of the row does not matter here)."""
    store = KeyStore(db)
    with store.write() as tx:
        tx.conn.execute(
            insert(certs),
            [
                {
                    "fingerprint": os.urandom(20).hex().upper(),
                    "version": 4,
                    "algorithm": 22,
                    "algorithm_name": "EdDSA",
                    "bits": 256,
                    "created": NOW,
                    "revoked": False,
                    "data": b"",
                    "armored_identity_free": "",
                    "digest": d,
                    "source": "test",
                    "first_seen": NOW,
                    "updated": NOW,
                }
                for d in digests
            ],
        )
        for d in digests:
            tx.recon.change(added=d)


def _drop_certs(db: Database, digests: list[str]) -> None:
    store = KeyStore(db)
    with store.write() as tx:
        tx.conn.execute(delete(certs).where(certs.c.digest.in_(digests)))
        for d in digests:
            tx.recon.change(removed=d)


def _assert_matches(db: Database, digests: set[str]) -> None:
    tree = ReconStore(db)
    report = tree.check()
    assert report.ok, (report.samples, report.problems)
    assert report.elements == len(digests)
    root = tree.nodes([""])[""]
    assert root.size == len(digests)
    assert root.svalues == sample_values(element(bytes.fromhex(d)) for d in digests)


def test_thousands_of_digests_split_and_join(db: Database) -> None:
    rng = random.Random(7)
    held: set[str] = set()
    # Grow in import-sized batches and single keys: leaves split, several levels deep.
    for n in (500, 500, 1, 1, 700, 300):
        new = [rng.randbytes(16).hex() for _ in range(n)]
        _fake_certs(db, new)
        held.update(new)
        _assert_matches(db, held)
    tree = ReconStore(db)
    with db.reader.connect() as conn:
        depth = max(len(r[0]) for r in conn.execute(select(recon_nodes.c.prefix)))
        leaves = [r.size for r in conn.execute(select(recon_nodes).where(recon_nodes.c.leaf))]
    assert depth >= 3 and max(leaves) <= SPLIT
    # Shrink: subtrees fall to JOIN elements or fewer and become leaves again.
    for n in (900, 1, 800, 250):
        gone = rng.sample(sorted(held), n)
        _drop_certs(db, gone)
        held.difference_update(gone)
        _assert_matches(db, held)
    with db.reader.connect() as conn:
        internal = [r.size for r in conn.execute(select(recon_nodes).where(~recon_nodes.c.leaf))]
    assert all(s > JOIN for s in internal)
    # Empty again: one leaf, the root.
    _drop_certs(db, sorted(held))
    _assert_matches(db, set())
    assert tree.nodes([""])[""].leaf


def test_repeated_and_cancelled_changes_are_harmless(db: Database) -> None:
    d1, d2 = os.urandom(16).hex(), os.urandom(16).hex()
    _fake_certs(db, [d1])
    store = KeyStore(db)
    with store.write() as tx:
        tx.recon.change(added=d1)  # already an element: nothing changes
        tx.recon.change(added=d2)  # no certificate has it: it does not enter
        tx.recon.change(removed=d2)
    _assert_matches(db, {d1})


def test_a_rolled_back_transaction_leaves_the_tree(db: Database) -> None:
    store = KeyStore(db)
    with pytest.raises(RuntimeError), store.write() as tx:
        tx.recon.change(added=os.urandom(16).hex())
        raise RuntimeError("abort")
    _assert_matches(db, set())


def test_the_write_path_keeps_the_tree(attestation: Attestation, core: Core) -> None:
    keys = [TestKey.generate(f"User {i} <u{i}@example.org>") for i in range(60)]
    summary = attestation.imports.keyring(b"".join(k.public for k in keys), source="import")
    assert summary.new == 60
    digests = {c.digest for c in _stored(core)}
    _assert_matches(core.db, digests)
    # A merge that changes a certificate's packets moves its digest in the tree.
    changed = keys[0].with_user_id("Another <another@example.org>")
    attestation.imports.keyring(changed.public, source="import")
    after = {c.digest for c in _stored(core)}
    assert len(after) == 60 and after != digests
    _assert_matches(core.db, after)


def _stored(core: Core) -> list[object]:
    with core.db.reader.connect() as conn:
        return list(conn.execute(select(certs.c.digest)))


def test_rebuild_streams_the_tree_and_check_finds_damage(db: Database) -> None:
    rng = random.Random(3)
    held = {rng.randbytes(16).hex() for _ in range(1200)}
    _fake_certs(db, sorted(held))
    tree = ReconStore(db)
    before = tree.nodes([""])[""]
    # Damage: a node's count, a lost node, an element no certificate has.
    with db.writer.begin() as conn:
        conn.execute(update(recon_nodes).where(recon_nodes.c.prefix == "0").values(size=1))
        conn.execute(delete(recon_nodes).where(recon_nodes.c.prefix == "12"))
    with db.writer.begin() as conn:
        conn.execute(delete(certs).where(certs.c.digest == min(held)))
    report = tree.check()
    assert not report.ok
    assert report.extra == 1 and report.samples == [f"extra {min(held)}"]
    assert any("'0' counts 1" in p for p in report.problems), report.problems
    assert any("lacks its child '12'" in p for p in report.problems), report.problems
    done: list[int] = []
    summary = tree.rebuild(progress=done.append)
    held.discard(min(held))
    assert summary.elements == len(held) == sum(done)
    _assert_matches(db, held)
    assert tree.nodes([""])[""].svalues != before.svalues


def test_concurrent_writers_keep_one_tree(db: Database) -> None:
    """Writers on several connections at once (app servers sharing one database): tree
    updates take turns, none is lost."""
    import threading

    rng = random.Random(11)
    batches = [[rng.randbytes(16).hex() for _ in range(120)] for _ in range(6)]
    errors: list[BaseException] = []

    def write(batch: list[str]) -> None:
        try:
            for i in range(0, len(batch), 30):
                _fake_certs(db, batch[i : i + 30])
        except BaseException as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=write, args=(b,)) for b in batches]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    _assert_matches(db, {d for b in batches for d in b})


def test_an_out_of_step_tree_is_rebuilt_and_the_cli_checks_it(
    core: Core, settings: Settings, tmp_path: Path
) -> None:
    import subprocess
    import sys

    from attester.service.recon import prepare_tree
    from attester.store.schema import recon_elements

    held = [os.urandom(16).hex() for _ in range(80)]
    _fake_certs(core.db, held)
    with core.db.writer.begin() as conn:  # a database from before recon, say
        conn.execute(delete(recon_nodes))
        conn.execute(delete(recon_elements))
    env = {"ATTESTER_DATABASE_URL": settings.database_url, "PATH": os.environ["PATH"]}
    cli = [sys.executable, "-m", "attester", "recon"]
    bad = subprocess.run([*cli, "check"], capture_output=True, text=True, env=env, timeout=60)
    assert bad.returncode == 1 and "80 stored digest(s) missing from the tree" in bad.stdout
    assert not ReconStore(core.db).in_step()
    prepare_tree(core)  # what attester serve does on start
    _assert_matches(core.db, set(held))
    with core.db.writer.begin() as conn:
        conn.execute(update(recon_nodes).where(recon_nodes.c.prefix == "").values(size=3))
    done = subprocess.run([*cli, "rebuild"], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0 and "recon tree rebuilt: 80 keys" in done.stdout, done.stderr
    ok = subprocess.run([*cli, "check"], capture_output=True, text=True, env=env, timeout=60)
    assert ok.returncode == 0 and "the recon tree matches the stored keys" in ok.stdout
