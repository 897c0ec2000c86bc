"""Reconciling 100 and 1,000 differences: Attester against the real SKS 1.1.6, and SKS
against SKS on the same data, on loopback, measured in the same run.

    .venv/bin/python bench/recon_sks.py [100 1000]

Data: ~230 Debian keys on both sides, and N keys made here on one side only. The side
that lacks the N keys starts the session (SKS fetches at once when it started the
session and 10 s later when it accepted one, so this is SKS's fast direction). Timed,
from the moment the lacking side is told to reconcile until it holds every key:

- SKS <- SKS: SKS (lacking) is told to reconcile through its command socket;
- Attester <- SKS: ``ReconService.sync`` (as ``attester recon sync`` runs it);
- SKS <- Attester: SKS (lacking) reconciles with an Attester holding the N keys.

Also printed: the session alone (Attester's own timing), without fetching the keys.
Targets (issue 13): no slower than SKS <- SKS, and 100 differences in under 2 s.
"""

from __future__ import annotations

import asyncio
import socket
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from prometheus_client import CollectorRegistry
from pysequoia import Tsk
from tests.protocols.test_sks_digest import KEYRING, KNOWN_DIFFERENT, _slice
from tests.recon.conftest import free_port_on, load, stored_digests
from tests.support import loop
from tests.support.server import LiveServer
from tests.support.sks import RunningSKS, build_sks, running_sks, sks_free_port

from attester.config import Settings, load_settings
from attester.openpgp import sks_digest
from attester.openpgp._keys import fingerprint_of
from attester.openpgp._packets import split_packets
from attester.recon.service import Report
from attester.service.core import Core
from attester.service.parsing import ParsePool
from attester.service.recon import recon_service
from attester.store.db import open_database


def synchronize(sks: RunningSKS) -> None:
    """Tell SKS to reconcile now (its command socket; DbMessages ``Synchronize``)."""
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(str(sks.base / "var/run/sks/recon_com_sock"))
        s.sendall(b"\x06")
        s.recv(16)


def until(check: Callable[[], bool], timeout: float = 300) -> float:
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > timeout:
            raise TimeoutError("no convergence")
        time.sleep(0.02)
    return time.monotonic() - start


def sks_has(sks: RunningSKS, wanted: list[str]) -> Callable[[], bool]:
    return lambda: len(sks.digests(wanted)) == len(wanted)


def settings_for(url: str, tmp: Path, peer: str) -> Settings:
    return load_settings(
        None,
        database_url=url,
        mail_url=f"file:{tmp / 'outbox'}",
        port=0,
        recon_address="127.0.0.2",
        recon_port=free_port_on("127.0.0.2"),
        recon_peers=[{"address": peer, "name": "sks"}],
        recon_gossip_seconds=0,
        sync_peers=[],
    )


def attester_sync(settings: Settings, pool: ParsePool) -> Report:
    db = open_database(settings.database_url)
    core = Core(settings, db)
    core.use_parser(pool)  # started beforehand, as a running server's is

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


def main() -> None:
    sizes = [int(a) for a in sys.argv[1:]] or [100, 1000]
    debian = [
        k
        for k in _slice(KEYRING.read_bytes())
        if fingerprint_of(split_packets(k)[0].body).hex not in KNOWN_DIFFERENT
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        made = [
            bytes(Tsk.generate(user_ids=[f"Bench {i} <b{i}@example.org>"]).extract_certificate())
            for i in range(max(sizes))
        ]
    print(
        f"{'N':>6} {'SKS<-SKS s':>11} {'Att<-SKS s':>11} {'(session)':>10} "
        f"{'SKS<-Att s':>11} {'Att/SKS':>8}"
    )
    for n in sizes:
        extra = made[:n]
        extra_digests = sorted(sks_digest(k) for k in extra)
        with tempfile.TemporaryDirectory(prefix="rb", dir="/tmp") as t:
            tmp = Path(t)
            full = build_sks(debian + extra, tmp / "full")
            lacking = build_sks(debian, tmp / "lacking")
            # SKS <- SKS: the lacking one on 127.0.0.2 (its own host name, so it does
            # not take 127.0.0.1 for itself).
            a_port, b_port = sks_free_port("127.0.0.1"), sks_free_port("127.0.0.2")
            with (
                running_sks(full, partners=[f"127.0.0.2 {b_port}"], recon_port=a_port),
                running_sks(
                    lacking,
                    partners=[f"127.0.0.1 {a_port}"],
                    recon_port=b_port,
                    host="127.0.0.2",
                ) as b,
            ):
                synchronize(b)
                sks_sks = until(sks_has(b, extra_digests))
            # Attester (lacking) <- SKS (full): we connect, SKS drives, we fetch.
            url = f"sqlite:///{tmp / 'lacking.db'}"
            s_port = sks_free_port()
            ours = settings_for(url, tmp, f"127.0.0.1:{s_port}")
            load(ours, debian)
            with (
                LiveServer.start(ours, host="127.0.0.2") as live,
                running_sks(full, partners=[f"127.0.0.2 {ours.recon_port}"], recon_port=s_port),
            ):
                pool = ParsePool(ours.parse_workers, ours.parse_timeout_seconds).start()
                start = time.monotonic()
                try:
                    report = attester_sync(live.settings, pool)
                finally:
                    pool.close()
                att_sks = time.monotonic() - start
                assert report.completed and report.recovered.get("new") == n, report
                assert len(stored_digests(ours)) == len(debian) + n
            # SKS (lacking) <- Attester (full).
            url2 = f"sqlite:///{tmp / 'full.db'}"
            s_port = sks_free_port()
            theirs = settings_for(url2, tmp, f"127.0.0.1:{s_port}")
            load(theirs, debian + extra)
            with (
                LiveServer.start(theirs, host="127.0.0.2"),
                running_sks(
                    lacking, partners=[f"127.0.0.2 {theirs.recon_port}"], recon_port=s_port
                ) as sks,
            ):
                synchronize(sks)
                sks_att = until(sks_has(sks, extra_digests))
        print(
            f"{n:>6} {sks_sks:>11.2f} {att_sks:>11.2f} {report.seconds:>10.3f} "
            f"{sks_att:>11.2f} {max(att_sks, sks_att) / sks_sks:>7.2f}x"
        )


if __name__ == "__main__":
    try:
        main()
    finally:
        loop.stop()  # the servers' shared loop: left running, it holds the exit up
