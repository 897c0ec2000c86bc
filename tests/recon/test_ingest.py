"""Storing what a recon session recovered: parsed in the parsing pool (split across its
workers, a slow key refused alone), written as one batch, recorded under the peer."""

from __future__ import annotations

import time

from sqlalchemy import select

from attester.config import ReconPeer, Settings
from attester.openpgp import sks_digest
from attester.service.core import Core
from attester.service.parsing import ParsePool
from attester.service.recon import ingest_recon_keys
from attester.store.db import Database
from attester.store.schema import cert_origins, certs, origin_user_ids
from attester.store.views import uid_hash
from tests.openpgp import forge as f
from tests.support.keys import TestKey

PEER = ReconPeer.model_validate({"address": "127.0.0.2:11370", "name": "p", "serve_emails": True})


def _origins(db: Database) -> dict[str, tuple[str, set[str]]]:
    """Per stored fingerprint: the origin recorded and the user ID hashes it vouched for."""
    out: dict[str, tuple[str, set[str]]] = {}
    with db.read() as conn:
        rows = conn.execute(
            select(certs.c.fingerprint, cert_origins.c.id, cert_origins.c.origin).join(
                cert_origins, cert_origins.c.cert_id == certs.c.id
            )
        ).all()
        for fpr, origin_id, origin in rows:
            hashes = conn.execute(
                select(origin_user_ids.c.uid_hash).where(origin_user_ids.c.origin_id == origin_id)
            ).scalars()
            out[fpr] = (origin, set(hashes))
    return out


def test_a_sessions_keys_are_parsed_on_every_worker_and_stored_as_one_batch(
    settings: Settings, db: Database
) -> None:
    keys = [TestKey.generate(f"K{i} <k{i}@example.org>") for i in range(5)]
    grown = keys[0].with_user_id("K0 at work <k0@example.com>").public  # one more user ID
    sent = [(sks_digest(k.public), k.public) for k in keys]
    sent += [("00" * 16, b"\x99garbage"), (sks_digest(grown), grown)]
    core = Core(settings, db)
    with ParsePool(2, timeout=30) as pool:
        core.use_parser(pool)
        counts = ingest_recon_keys(core, PEER, sent)
    assert counts == {"new": 5, "updated": 1, "rejected": 1}, counts
    held = _origins(db)
    assert set(held) == {k.fingerprint for k in keys}
    assert {origin for origin, _ in held.values()} == {"recon:p"}
    # Of two copies of one key in a session, the later one's user IDs are what the peer
    # vouches for (as if recorded one after the other).
    first = keys[0]
    assert held[first.fingerprint][1] == {
        uid_hash(b"K0 <k0@example.org>"),
        uid_hash(b"K0 at work <k0@example.com>"),
    }


def test_a_key_too_slow_to_parse_is_refused_alone(settings: Settings, db: Database) -> None:
    # The key of issue 10 item 7 under limits raised to let it through: seconds of
    # Sequoia's work, against a few milliseconds for each of the others, so a timeout
    # of half a second tells them apart however busy the machine.
    _, packets = f.flooded_with_self_signatures(50, 6 * 1024, 12_000)
    slow = f.join(packets)
    loose = settings.model_copy(
        update={
            "max_input_bytes": 8 * 1024 * 1024,
            "max_signatures": 100_000,
            "max_self_signatures": 100_000,
            "max_signatures_per_component": 100_000,
        }
    )
    good = [TestKey.generate(f"G{i} <g{i}@example.org>") for i in range(3)]
    sent = [(sks_digest(good[0].public), good[0].public), ("11" * 16, slow)]
    sent += [(sks_digest(k.public), k.public) for k in good[1:]]
    core = Core(loose, db)
    # One worker, so all four keys are one share: it overruns the timeout, and the keys
    # are parsed again one at a time; only the slow one is refused.
    with ParsePool(1, timeout=0.5) as pool:
        core.use_parser(pool)
        start = time.monotonic()
        counts = ingest_recon_keys(core, PEER, sent)
    assert counts == {"new": 3, "rejected": 1}, counts
    assert set(_origins(db)) == {k.fingerprint for k in good}
    assert time.monotonic() - start < 30
