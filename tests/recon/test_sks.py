"""Reconciliation with the real SKS 1.1.6 on loopback, in both directions: SKS connects
to us (we drive), and we connect to SKS (it drives). After each session both servers
hold the same set of digests: ours read from the store, SKS's asked of its own
/pks/hashquery (SKS keeps no live count: its op=stats is computed once a day).

Scenarios (SKS's keys / ours), each exercising one path of the protocol:

- handful: 3 keys only SKS has, 2 only we have: decoded from the root's sample values;
- many under one node: 12 keys under one child of the root: SyncFail, then its children;
- subtree: every key under one child of the root only on SKS: FullElements;
- 1,000 on one side: only we have them (SKS fetches them), or only SKS (we do);
- both lack: 300 only SKS has, 40 only we have.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from attester.config import Settings
from attester.recon.ptree import path
from attester.recon.service import Report
from attester.service.core import Core
from attester.service.recon import recon_service
from attester.store.db import open_database
from attester.store.recon import ReconStore
from tests.recon.conftest import (
    Keys,
    attester,
    load,
    needs_sks,
    recon_settings,
    stored_digests,
)
from tests.support.sks import RunningSKS, running_sks, wait_for

pytestmark = [pytest.mark.slow, *needs_sks]
HOST = "127.0.0.2"


@dataclass(frozen=True)
class Scenario:
    sks: str  # which SKS database
    sks_keys: list[bytes]
    ours: list[bytes]
    poly_only: bool = False  # decoded at the root: no SyncFail, no FullElements
    sync_fail: bool = False
    full_elements: bool = False


def _under(keys: list[bytes], prefix: str) -> list[bytes]:
    from attester.openpgp import sks_digest

    return [k for k in keys if path(bytes.fromhex(sks_digest(k))).startswith(prefix)]


def scenario(name: str, k: Keys) -> Scenario:
    full = k.debian + k.made[:1200]
    extra = k.made[1200:]
    if name == "handful":
        return Scenario("debian", k.debian, k.debian[3:] + extra[:2], poly_only=True)
    if name == "many_under_one_node":
        gone = _under(full, "2")[:12]
        return Scenario("full", full, [x for x in full if x not in gone], sync_fail=True)
    if name == "subtree":
        gone = set(_under(full, "1"))
        return Scenario("full", full, [x for x in full if x not in gone], full_elements=True)
    if name == "thousand_there":
        return Scenario("debian", k.debian, k.debian + k.made[:1000])
    if name == "thousand_here":
        return Scenario("full", full, k.debian + k.made[1000:1200])
    assert name == "both_lack"
    return Scenario("full", full, k.debian + k.made[300:1200] + extra[:40])


SCENARIOS = [
    "handful",
    "many_under_one_node",
    "subtree",
    "thousand_there",
    "thousand_here",
    "both_lack",
]


def _ours(database_url: str, tmp: Path, sks_port: int, **extra: object) -> Settings:
    return recon_settings(
        database_url, tmp, HOST, [{"address": f"127.0.0.1:{sks_port}", "name": "sks"}], **extra
    )


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


def _converged(settings: Settings, sks: RunningSKS, keys: Keys, want: set[str]) -> bool:
    return stored_digests(settings) == want and sks.digests(keys.universe) == want


@pytest.mark.parametrize("name", SCENARIOS)
def test_sks_connects_to_us(name: str, keys: Keys, sks_db: dict[str, Path], tmp_path: Path) -> None:
    s = scenario(name, keys)
    want = keys.digests(s.sks_keys) | keys.digests(s.ours)
    settings = _ours(f"sqlite:///{tmp_path / 'a.db'}", tmp_path, sks_port := _port())
    load(settings, s.ours)
    with (
        attester(settings, HOST) as live,
        running_sks(
            sks_db[s.sks],
            partners=[f"{HOST} {settings.recon_port}"],
            gossip=True,
            recon_port=sks_port,
        ) as sks,
    ):
        wait_for(lambda: _converged(settings, sks, keys, want), 60, "both to hold the union")
        text = live.client.get("/metrics").text
    assert ReconStore(open_database(settings.database_url)).check().ok
    _paths(s, text)


def _port() -> int:
    from tests.support.smtp import free_port

    return free_port()


def _paths(s: Scenario, metrics: str) -> None:
    """The protocol paths the scenario is about were taken (our messages metric)."""
    got = {
        kind
        for line in metrics.splitlines()
        if line.startswith("attester_recon_messages_total") and not line.endswith(" 0.0")
        for kind in ("SyncFail", "FullElements", "ReconRqstPoly")
        if f'type="{kind}"' in line
    }
    if s.poly_only:
        assert "ReconRqstPoly" in got and not {"SyncFail", "FullElements"} & got, got
    if s.sync_fail:
        assert "SyncFail" in got, got
    if s.full_elements:
        assert "FullElements" in got, got
