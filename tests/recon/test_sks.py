"""Reconciliation with the real SKS 1.1.6 on loopback, in both directions: SKS connects
to us (we drive), and we connect to SKS (it drives). After each session both servers
hold the same set of digests: ours read from the store, SKS's asked of its own
``/pks/hashquery`` (SKS keeps no live count: its op=stats is computed once a day).

Scenarios, each about one path of the protocol (the messages metric shows it was taken):

- handful: 3 keys only SKS has, 2 only we have: decoded from the root's sample values;
- many under one node: 12 keys under one child of the root: SyncFail, then its children;
- subtree: every key under one child of the root only on the driving side:
  FullElements from the side that lacks it;
- 1,000 keys on one side only;
- both lack: 300 only SKS has, 40 only we have.

SKS fetches what it lacks 10 s after a session it accepted (its own delay), so in the
"we connect" direction SKS's side is checked by what it logs it lacks, and waited for
only in ``both_lack``.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from attester.config import Settings
from attester.recon.service import Report
from attester.service.core import Core
from attester.service.recon import recon_service
from attester.store.db import open_database
from attester.store.recon import ReconStore
from tests.recon.conftest import (
    Keys,
    attester,
    digests,
    free_port_on,
    holding,
    load,
    needs_sks,
    recon_settings,
    stored_digests,
    under,
)
from tests.support.database import migrated, postgres_database
from tests.support.sks import RunningSKS, build_sks, running_sks, sks_free_port, wait_for

pytestmark = [pytest.mark.slow, *needs_sks]
HOST = "127.0.0.2"
A, B = "127.0.0.2", "127.0.0.3"


@dataclass(frozen=True)
class Scenario:
    sks: str  # which SKS database
    sks_keys: list[bytes]
    ours: list[bytes]
    paths: frozenset[str] = frozenset()  # message types the session must carry
    not_paths: frozenset[str] = frozenset()  # ... and must not


def scenario(name: str, k: Keys, sks_drives: bool) -> Scenario:
    full = k.full
    if name == "handful":
        return Scenario(
            "debian",
            k.debian,
            k.debian[3:] + k.extra[:2],
            frozenset({"ReconRqstPoly"}),
            frozenset({"SyncFail", "FullElements"}),
        )
    if name == "many_under_one_node":
        gone = under(full, "2")[:12]
        return Scenario("full", full, [x for x in full if x not in gone], frozenset({"SyncFail"}))
    if name == "subtree":
        subtree = set(under(full, "1"))
        rest = [x for x in full if x not in subtree]
        if sks_drives:  # we lack the subtree and answer FullElements
            return Scenario("full", full, rest, frozenset({"FullElements"}))
        return Scenario("no1", rest, full, frozenset({"FullElements"}))
    if name == "thousand_there":
        return Scenario("debian", k.debian, k.debian + k.made[:1000])
    if name == "thousand_here":
        return Scenario("full", full, k.debian + k.made[1000:1060])
    assert name == "both_lack"
    return Scenario("full", full, k.debian + k.made[300:1060] + k.extra)


def _settings(tmp: Path, database_url: str, sks_port: int, **peer: object) -> Settings:
    return recon_settings(
        database_url, tmp, HOST, [{"address": f"127.0.0.1:{sks_port}", "name": "sks", **peer}]
    )


def _sks_holds(sks: RunningSKS, s: Scenario, keys: Keys, want: set[str]) -> bool:
    """SKS holds exactly ``want`` of the test's keys: it has what it had and what it
    should have fetched, and nothing else (asked only about those, to keep it cheap)."""
    start = digests(s.sks_keys)
    ask = (want - start) | (set(keys.universe) - want)
    return sks.digests(sorted(ask)) == want - start


def _paths(s: Scenario, messages: dict[str, float]) -> None:
    taken = {kind for kind, n in messages.items() if n}
    assert s.paths <= taken, (s.paths, taken)
    assert not (s.not_paths & taken), (s.not_paths, taken)


def _messages(metrics_text: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for m in re.finditer(
        r'attester_recon_messages_total\{[^}]*type="(\w+)"[^}]*\} (\S+)', metrics_text
    ):
        out[m.group(1)] = out.get(m.group(1), 0) + float(m.group(2))
    return out


@pytest.mark.parametrize(
    "name", ["handful", "many_under_one_node", "subtree", "thousand_there", "both_lack"]
)
def test_sks_connects_to_us(
    name: str, keys: Keys, sks_db: dict[str, Path], loaded_db: Path, tmp_path: Path
) -> None:
    s = scenario(name, keys, sks_drives=False)
    want = digests(s.sks_keys) | digests(s.ours)
    sks_port = sks_free_port()
    settings = _settings(tmp_path, holding(loaded_db, tmp_path / "a.db", s.ours), sks_port)
    with (
        attester(settings, HOST) as live,
        running_sks(
            sks_db[s.sks],
            partners=[f"{HOST} {settings.recon_port}"],
            gossip=True,
            recon_port=sks_port,
        ) as sks,
    ):
        wait_for(lambda: stored_digests(settings) == want, 60, "us to hold the union")
        wait_for(lambda: _sks_holds(sks, s, keys, want), 60, "SKS to hold the union")
        text = live.client.get("/metrics").text
        stats = live.client.get("/pks/lookup", params={"op": "stats", "options": "mr"}).json()
    assert stats["total"] == len(want)
    assert [p["reconAddr"] for p in stats["peers"]] == [f"127.0.0.1:{sks_port}"]
    assert stats["peers"][0]["lastRecon"] is not None
    _paths(s, _messages(text))
    db = open_database(settings.database_url)
    assert ReconStore(db).check().ok
    db.dispose()


def sync_now(settings: Settings) -> Report:
    """One session as ``attester recon sync`` runs it: we connect, SKS drives."""
    db = open_database(settings.database_url)
    core = Core(settings, db)

    async def run() -> Report:
        service = recon_service(core, CollectorRegistry())
        try:
            return await service.sync(service.peers[0])
        finally:
            await service.close()

    try:
        return asyncio.run(run())
    finally:
        db.dispose()


@pytest.mark.parametrize("name", ["handful", "subtree", "thousand_here", "both_lack"])
def test_we_connect_to_sks(
    name: str, keys: Keys, sks_db: dict[str, Path], loaded_db: Path, tmp_path: Path
) -> None:
    s = scenario(name, keys, sks_drives=True)
    want = digests(s.sks_keys) | digests(s.ours)
    sks_port = sks_free_port()
    settings = _settings(tmp_path, holding(loaded_db, tmp_path / "a.db", s.ours), sks_port)
    with (
        attester(settings, HOST) as live,  # SKS fetches what it lacks from here
        running_sks(
            sks_db[s.sks], partners=[f"{HOST} {settings.recon_port}"], recon_port=sks_port
        ) as sks,
    ):
        report = sync_now(live.settings)
        assert report.completed, report.problem
        assert report.missing_here == len(want - digests(s.ours))
        assert report.recovered.get("new", 0) == len(want - digests(s.ours))
        assert stored_digests(settings) == want
        _paths(s, {kind: float(n) for (_, kind), n in report.messages.items()})
        # SKS logs what it lacks as soon as the session ends, and fetches it 10 s later.
        lacks = len(want - digests(s.sks_keys))
        wait_for(lambda: sks.recovered() == [lacks] if lacks else True, 10, "SKS's count")
        if name == "both_lack":
            wait_for(lambda: _sks_holds(sks, s, keys, want), 40, "SKS to fetch from us")
    db = open_database(settings.database_url)
    assert ReconStore(db).check().ok
    db.dispose()


def _cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        "ATTESTER_DATABASE_URL": settings.database_url,
        "ATTESTER_RECON_ADDRESS": settings.recon_address,
        "ATTESTER_RECON_PEERS": "[]",
        "ATTESTER_RECON_HTTP_PORT": str(settings.recon_http_port or 1),
        "PATH": "/usr/bin:/bin",
    }
    return subprocess.run(
        [sys.executable, "-m", "attester", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


def test_recon_sync_command_and_filter_mismatch(
    keys: Keys, sks_db: dict[str, Path], tmp_path: Path, loaded_db: Path
) -> None:
    """``attester recon sync HOST:PORT`` with SKS's defaults; then our filters differ from
    SKS's, and SKS refuses in its own words, both when we connect and when it does."""
    sks_port = sks_free_port()
    ours: Sequence[bytes] = keys.debian[5:]
    url = holding(loaded_db, tmp_path / "a.db", ours)
    wrong = _settings(tmp_path, url, sks_port, filters="yminsky.merge")
    with running_sks(
        sks_db["debian"], partners=[f"{HOST} {wrong.recon_port}"], recon_port=sks_port
    ) as sks:
        done = _cli(wrong, "recon", "sync", f"127.0.0.1:{sks_port}")
        assert done.returncode == 0, done.stdout + done.stderr
        assert "keys the peer has and we lacked: 5" in done.stdout
        assert "new: 5" in done.stdout
        assert stored_digests(wrong) == digests(keys.debian)
        # A mismatch: SKS's sentence comes back to us...
        report = sync_now(wrong)
        assert not report.completed and report.outcome == "refused"
        assert "filters do not match" in report.problem
        assert "remote filters: [ yminsky.merge ]" in report.problem
    # ... and when SKS connects, we refuse in the same words and SKS logs them. (A new
    # SKS on a port of its own: SKS binds without SO_REUSEADDR, and the sessions above
    # left the first port's connections in TIME_WAIT.)
    sks_port = sks_free_port()
    wrong = _settings(tmp_path, url, sks_port, filters="yminsky.merge")
    with (
        attester(wrong, HOST) as live,
        running_sks(
            sks_db["debian"],
            partners=[f"{HOST} {wrong.recon_port}"],
            gossip=True,
            recon_port=sks_port,
        ) as sks,
    ):
        wait_for(lambda: "filters do not match" in sks.log(), 20, "SKS to log the refusal")
        text = live.client.get("/metrics").text
    assert re.search(r'attester_recon_sessions_total\{[^}]*outcome="refused"[^}]*\} [1-9]', text)


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A PostgreSQL database of this test's own, migrated."""
    with postgres_database() as url, migrated(url):
        yield url


def test_two_attesters_and_sks_converge_by_gossip(
    keys: Keys, pg_url: str, loaded_db: Path, tmp_path: Path
) -> None:
    """Each of the three starts with a different two thirds of the Debian keys; gossip
    alone (every ~1 s, each with a random partner) brings all three to every key."""
    d = keys.debian
    thirds = [d[0::3], d[1::3], d[2::3]]
    sks_keys, a_keys, b_keys = (
        thirds[0] + thirds[2],
        thirds[0] + thirds[1],
        thirds[1] + thirds[2],
    )
    want = digests(d)
    sks_port, a_port, b_port = sks_free_port(), free_port_on(A), free_port_on(B)
    gossip = {"recon_gossip_seconds": 1.0}
    a = recon_settings(
        holding(loaded_db, tmp_path / "a.db", a_keys),
        tmp_path,
        A,
        [
            {"address": f"127.0.0.1:{sks_port}", "name": "sks"},
            {"address": f"{B}:{b_port}", "name": "b"},
        ],
        recon_port=a_port,
        **gossip,
    )
    b = recon_settings(
        pg_url,  # one of the two on PostgreSQL
        tmp_path,
        B,
        [
            {"address": f"127.0.0.1:{sks_port}", "name": "sks"},
            {"address": f"{A}:{a_port}", "name": "a"},
        ],
        recon_port=b_port,
        **gossip,
    )
    load(b, b_keys)
    sks_db = build_sks(sks_keys, tmp_path / "sks")
    with (
        attester(a, A),
        attester(b, B),
        running_sks(
            sks_db, partners=[f"{A} {a_port}", f"{B} {b_port}"], gossip=True, recon_port=sks_port
        ) as sks,
    ):
        s = Scenario("conv", sks_keys, [])
        wait_for(
            lambda: (
                stored_digests(a) == want
                and stored_digests(b) == want
                and _sks_holds(sks, s, keys, want)
            ),
            90,
            "all three to hold every key",
        )
    for settings in (a, b):
        db = open_database(settings.database_url)
        assert ReconStore(db).check().ok
        db.dispose()
