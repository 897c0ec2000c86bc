"""Mirrors: keys from a peer's dump served with their origin, pull mirroring of a VKS-only
server (revocations and withdrawn addresses arrive), and the one decision point that
every source passes."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time

from attester.config import Settings
from attester.federation import DumpImporter, Federation
from attester.openpgp import parse_certificates
from attester.openpgp.types import Email, Fingerprint
from attester.service.attestation import Attestation
from attester.service.core import Core
from attester.service.query import EmailQuery, FingerprintQuery
from attester.store.views import OriginKind
from tests.federation.conftest import Serve, metric, stored, vks
from tests.federation.peers import AttesterPeer, Clock, settings_with, stub_server
from tests.support.keys import TestKey

UBUNTU = "keyserver.ubuntu.com"
OPENPGP_ORG = "keys.openpgp.org"


def _mirror(attestation: Attestation, *keys: TestKey, name: str = UBUNTU) -> None:
    dump = io.BytesIO(b"".join(k.public for k in keys))
    summary = DumpImporter(attestation.core, mirror=name).load(dump)
    assert summary.rejected == 0


def test_mirrored_keys_are_served_marked_and_local_wins(
    settings: Settings, attestation: Attestation, serve: Serve
) -> None:
    hank = TestKey.generate("Hank <hank@example.com>")
    ivy_theirs = TestKey.generate("Ivy <ivy@example.com>")
    ivy_ours = TestKey.generate("Ivy <ivy@example.com>")
    _mirror(attestation, hank, ivy_theirs)
    attestation.imports.keyring(ivy_ours.public, attest_emails=True)
    with (
        stub_server(lambda path: (404, b"")) as upstream,
        serve(upstreams=[vks("other", upstream.url)]) as live,
    ):
        r = live.client.get("/pub/hank@example.com")
        assert r.status_code == 200
        assert r.headers["X-Attester-Origin"].startswith(f"mirror:{UBUNTU}; fetched=")
        r = live.client.get("/pub/ivy@example.com")
        assert r.headers["X-Attester-Origin"] == "local"
        assert parse_certificates(r.text.encode())[0].fingerprint.hex == ivy_ours.fingerprint
        r = live.client.get(f"/vks/v1/by-fingerprint/{ivy_theirs.fingerprint}")
        assert r.status_code == 200  # the mirror's copy, with the mirror's user IDs
        assert b"ivy@example.com" in parse_certificates(r.text.encode())[0].data
        # A mirror has the answer: nothing is asked upstream.
        assert upstream.requests == []

    held = stored(settings)
    assert held.sources[hank.fingerprint] == f"mirror:{UBUNTU}"
    assert held.attested == ["ivy@example.com"]  # ours only: mirrors are never attested


def test_pull_mirroring_brings_revocations_and_withdrawals(
    openpgp_org: AttesterPeer, serve: Serve, clock: Clock
) -> None:
    gina = TestKey.generate("Gina <gina@example.org>")
    jo = TestKey.generate("Jo <jo@example.org>")
    openpgp_org.publish(gina)
    openpgp_org.publish(jo)
    up = [vks(OPENPGP_ORG, openpgp_org.url, refresh_seconds=10, refresh_per_second=20)]
    with serve(upstreams=up) as live:
        # Fetched on a miss: from now on these keys are known from the upstream.
        assert live.client.get("/pub/gina@example.org").status_code == 200
        assert live.client.get("/pub/jo@example.org").status_code == 200
        openpgp_org.upload(gina.revoked_public())
        peer = openpgp_org.attestation.core
        with peer.store.write() as tx:  # Jo unpublishes the address upstream
            cert_id = tx.cert_id(Fingerprint(jo.fingerprint))
            assert cert_id is not None
            cert = peer.publication.load(tx, cert_id)
            peer.publication.unpublish(tx, cert_id, cert, Email.parse("jo@example.org"), clock())
        clock.advance(11)  # both are due now
        deadline = time.monotonic() + 15
        while metric(live, "attester_mirror_refreshes_total", peer=OPENPGP_ORG) < 2:
            assert time.monotonic() < deadline, "pull mirroring did not run"
            time.sleep(0.2)
        # Gina's certificate changed (the revocation); Jo's did not, only what is published.
        assert metric(live, "attester_mirror_refreshes_total", result="updated") == 1
        assert metric(live, "attester_mirror_refreshes_total", result="unchanged") == 1
        r = live.client.get(f"/vks/v1/by-fingerprint/{gina.fingerprint}")
        assert parse_certificates(r.text.encode())[0].revoked
        # A revoked key is found by no address; Jo's address is no longer vouched for.
        assert live.client.get("/pub/gina@example.org").status_code == 404
        assert live.client.get("/pub/jo@example.org").status_code == 404
        r = live.client.get(f"/vks/v1/by-fingerprint/{jo.fingerprint}")
        assert r.status_code == 200 and b"jo@example.org" not in r.content


def test_mirror_refresh_command_seeds_a_vks_mirror(
    settings: Settings, openpgp_org: AttesterPeer
) -> None:
    kim = TestKey.generate("Kim <kim@example.org>")
    openpgp_org.publish(kim)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ATTESTER_")}
    env.update(
        ATTESTER_DATABASE_URL=settings.database_url,
        ATTESTER_UPSTREAMS=json.dumps([vks(OPENPGP_ORG, openpgp_org.url)]),
    )
    cmd = [sys.executable, "-m", "attester", "mirror-refresh", OPENPGP_ORG]
    r = subprocess.run([*cmd, kim.fingerprint], capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "1 new" in r.stdout
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=60)
    assert "1 unchanged" in r.stdout, r.stdout  # known keys are due again at once
    r = subprocess.run([*cmd[:-1], "nope"], capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 2 and "not a configured upstream" in r.stderr
    assert stored(settings).sources == {kim.fingerprint: f"mirror:{OPENPGP_ORG}"}


def test_every_source_reaches_clients_through_one_lookup(
    settings: Settings,
    core: Core,
    attestation: Attestation,
    openpgp_org: AttesterPeer,
) -> None:
    local = TestKey.generate("Lou <lou@example.org>")
    upstream_only = TestKey.generate("Uma <uma@example.org>")
    mirrored = TestKey.generate("Max <max@example.org>")
    attestation.imports.keyring(local.public, attest_emails=True)
    openpgp_org.publish(local)  # the upstream would supply it too: local wins
    openpgp_org.publish(upstream_only)
    _mirror(attestation, mirrored)
    federated = settings_with(settings, upstreams=[vks(OPENPGP_ORG, openpgp_org.url)])
    keys = {"lou": local, "uma": upstream_only, "max": mirrored}
    fed = Core(federated, core.db)
    federation = Federation(federated, fed)
    fed.upstreams = federation.fallback
    try:
        origins = {
            name: fed.lookup(EmailQuery(Email.parse(f"{name}@example.org")))[0].origin.kind
            for name in keys
        }
        assert origins == {
            "lou": OriginKind.LOCAL,
            "uma": OriginKind.UPSTREAM,
            "max": OriginKind.MIRROR,
        }
        for key in keys.values():
            [found] = fed.lookup(FingerprintQuery(Fingerprint(key.fingerprint)))
            assert found.fingerprint == Fingerprint(key.fingerprint)
    finally:
        federation.close()


def test_pull_mirroring_keeps_to_its_rate(settings: Settings, core: Core) -> None:
    """The schedule's arithmetic, with the peer faked (the real one is tested above)."""
    import httpx

    seen: list[float] = []

    def peer(request: httpx.Request) -> httpx.Response:
        seen.append(time.monotonic())
        return httpx.Response(404)

    configured = settings_with(
        settings, upstreams=[vks("peer", "http://127.0.0.1:9", refresh_per_second=10)]
    )
    federation = Federation(configured, core, transport=httpx.MockTransport(peer))
    try:
        fprs = [Fingerprint(f"{i:040X}") for i in range(5)]
        summary = federation.mirror("peer").refresh(fprs)
    finally:
        federation.close()
    assert summary.withdrawn == 5  # the peer has none of them: it vouches for nothing
    assert seen[-1] - seen[0] >= 0.39  # five requests at ten a second
