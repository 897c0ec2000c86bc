"""Upstream lookups on a local miss, over real HTTP on loopback: a second Attester acting
as keys.openpgp.org (VKS), a real ``sks`` acting as keyserver.ubuntu.com (HKP), and
upstreams that are slow, dead, or lie. Every test runs on SQLite and PostgreSQL."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from attester.config import Settings
from attester.openpgp import parse_certificates
from attester.service.attestation import Attestation
from tests.federation.conftest import Serve, hkp, metric, stored, vks
from tests.federation.peers import AttesterPeer, Clock, sks_peer, stub_server
from tests.support.keys import TestKey

OPENPGP_ORG = "keys.openpgp.org"


def _emails(armored: str) -> set[str]:
    return {
        u.email.address
        for c in parse_certificates(armored.encode())
        for u in c.user_ids
        if u.email is not None
    }


def test_a_miss_is_answered_by_keys_openpgp_org_over_vks(
    settings: Settings, openpgp_org: AttesterPeer, serve: Serve
) -> None:
    alice = TestKey.generate("Alice <alice@example.org>").with_user_id(
        "Alice <alice@unverified.example>"
    )
    s = openpgp_org.attestation.imports.keyring(
        alice.public, attest_emails=True, domains=["example.org"]
    )
    assert s.attested == 1
    with serve(upstreams=[vks(OPENPGP_ORG, openpgp_org.url)]) as live:
        r = live.client.get("/pub/alice@example.org", headers={"Origin": "https://mail.example"})
        assert r.status_code == 200, r.text
        assert r.headers["X-Attester-Origin"].startswith(f"upstream:{OPENPGP_ORG}; fetched=")
        assert "X-Attester-Origin" in r.headers["Access-Control-Expose-Headers"]  # browsers
        # Only what the upstream published (it verified one address) is served.
        assert _emails(r.text) == {"alice@example.org"}
        # Every adapter gets it through the core: VKS by email, fingerprint and key id too.
        for path in (
            "/vks/v1/by-email/alice%40example.org",
            f"/vks/v1/by-fingerprint/{alice.fingerprint}",
            f"/vks/v1/by-keyid/{alice.key_id}",
        ):
            r = live.client.get(path)
            assert r.status_code == 200 and _emails(r.text) == {"alice@example.org"}, path
            assert r.headers["X-Attester-Origin"].startswith(f"upstream:{OPENPGP_ORG}"), path
        # HKP lists the identities the peer published, and says whose word they rest on.
        r = live.client.get(
            "/pks/lookup", params={"op": "index", "options": "mr", "search": "alice@example.org"}
        )
        assert r.status_code == 200 and "uid:Alice <alice@example.org>" in r.text, r.text
        assert "unverified" not in r.text
        assert r.headers["X-Attester-Origin"].startswith(f"upstream:{OPENPGP_ORG}")
        # The other address was never published upstream: not found by it.
        assert live.client.get("/pub/alice@unverified.example").status_code == 404
    held = stored(settings)
    assert held.sources == {alice.fingerprint: f"upstream:{OPENPGP_ORG}"}
    assert held.attested == []  # never marked as attested by this server


def test_local_attestation_wins_and_nothing_is_asked(
    settings: Settings, attestation: Attestation, openpgp_org: AttesterPeer, serve: Serve
) -> None:
    ours = TestKey.generate("Bob <bob@example.org>")
    theirs = TestKey.generate("Bob elsewhere <bob@example.org>")
    attestation.imports.keyring(ours.public, attest_emails=True)
    openpgp_org.publish(theirs)
    with serve(upstreams=[vks(OPENPGP_ORG, openpgp_org.url)]) as live:
        r = live.client.get("/pub/bob@example.org")
        assert r.headers["X-Attester-Origin"] == "local"
        assert parse_certificates(r.text.encode())[0].fingerprint.hex == ours.fingerprint
        assert metric(live, "attester_upstream_lookups_total", result="asked") == 0
        # Their key by fingerprint is a miss here: fetched, and marked as theirs.
        r = live.client.get(f"/pub/{theirs.fingerprint}")
        assert r.status_code == 200 and r.headers["X-Attester-Origin"].startswith("upstream:")
        # Now both are stored; the address still finds ours.
        r = live.client.get("/pub/bob@example.org")
        assert parse_certificates(r.text.encode())[0].fingerprint.hex == ours.fingerprint
        assert r.headers["X-Attester-Origin"] == "local"


def test_hits_and_misses_are_cached_with_their_ttls(
    openpgp_org: AttesterPeer, serve: Serve, clock: Clock
) -> None:
    carol = TestKey.generate("Carol <carol@example.org>")
    openpgp_org.publish(carol)
    up = [vks(OPENPGP_ORG, openpgp_org.url)]
    with serve(upstreams=up, upstream_hit_ttl_seconds=600, upstream_miss_ttl_seconds=60) as live:

        def asked(outcome: str) -> float:
            return metric(
                live, "attester_upstream_requests_total", upstream=OPENPGP_ORG, outcome=outcome
            )

        for _ in range(3):
            assert live.client.get("/pub/nobody@example.org").status_code == 404
            assert live.client.get("/pub/carol@example.org").status_code == 200
        assert asked("not_found") == 1 and asked("found") == 1
        assert metric(live, "attester_upstream_lookups_total", result="cached") == 4
        # The negative answer expires first...
        carol2 = carol.with_user_id("Carol <carol@work.example>")
        openpgp_org.publish(carol2)
        clock.advance(61)
        live.client.get("/pub/nobody@example.org")
        r = live.client.get("/pub/carol@example.org")
        assert asked("not_found") == 2 and asked("found") == 1
        assert _emails(r.text) == {"carol@example.org"}  # still the cached copy
        # ...then the hit, and the upstream's news arrives.
        clock.advance(600)
        r = live.client.get("/pub/carol@example.org")
        assert asked("found") == 2
        assert _emails(r.text) == {"carol@example.org", "carol@work.example"}


def test_domain_policy_keeps_addresses_home(serve: Serve) -> None:
    with stub_server(lambda path: (404, b"")) as upstream:
        up = [vks("spy", upstream.url)]
        with serve(
            upstreams=up,
            upstream_allow_domains=["example.org", "*.partner.example"],
            upstream_deny_domains=["secret.example.org"],
        ) as live:
            for address in (
                "colleague@corp.example",  # not on the allow list
                "x@partner.example",  # only its subdomains are
                "y@secret.example.org",  # denied whatever the allow list says
            ):
                assert live.client.get(f"/pub/{address}").status_code == 404
            assert upstream.requests == []
            assert metric(live, "attester_upstream_lookups_total", result="domain_refused") == 3
            live.client.get("/pub/ok@example.org")
            live.client.get("/pub/ok@eu.partner.example")
            assert len(upstream.requests) == 2
            # Fingerprints reveal no address: the policy is about recipients only.
            live.client.get(f"/pub/{'AB' * 20}")
            assert len(upstream.requests) == 3


def test_a_slow_upstream_cannot_hold_a_lookup_past_the_deadline(
    openpgp_org: AttesterPeer, serve: Serve
) -> None:
    dave = TestKey.generate("Dave <dave@example.org>")
    openpgp_org.publish(dave)
    with stub_server(lambda path: (404, b""), delay=10) as slow:
        up = [vks("slow", slow.url, timeout_seconds=5), vks(OPENPGP_ORG, openpgp_org.url)]
        with serve(upstreams=up, upstream_deadline_seconds=1.0) as live:
            start = time.monotonic()
            r = live.client.get("/pub/dave@example.org")
            took = time.monotonic() - start
            assert r.status_code == 200 and took < 2.5, took
            assert r.headers["X-Attester-Origin"].startswith(f"upstream:{OPENPGP_ORG}")
            assert slow.requests  # it was asked, and not waited for
            start = time.monotonic()
            assert live.client.get("/pub/nobody@example.org").status_code == 404
            assert time.monotonic() - start < 2.5
            # Its requests end at the deadline and count as timeouts.
            deadline = time.monotonic() + 5
            while metric(live, "attester_upstream_requests_total", upstream="slow") < 2:
                assert time.monotonic() < deadline
                time.sleep(0.1)
            assert (
                metric(live, "attester_upstream_requests_total", upstream="slow", outcome="timeout")
                == 2
            )
            assert metric(live, "attester_upstream_request_seconds_count", upstream="slow") == 2


def test_a_dead_upstream_opens_its_circuit(serve: Serve) -> None:
    with stub_server(lambda path: (503, b"down")) as dead:
        up = [vks("dead", dead.url), vks("gone", "http://127.0.0.1:9")]  # 9: nobody listens
        with serve(
            upstreams=up, upstream_breaker_failures=2, upstream_breaker_reset_seconds=1.0
        ) as live:
            for i in range(5):
                assert live.client.get(f"/pub/user{i}@example.org").status_code == 404
            assert len(dead.requests) == 2  # then it was left alone
            assert metric(live, "attester_upstream_circuit_open", upstream="dead") == 1
            assert metric(live, "attester_upstream_circuit_open", upstream="gone") == 1
            assert (
                metric(
                    live, "attester_upstream_requests_total", upstream="gone", outcome="unreachable"
                )
                == 2
            )
            assert (
                metric(
                    live,
                    "attester_upstream_requests_total",
                    upstream="dead",
                    outcome="circuit_open",
                )
                == 3
            )
            time.sleep(1.1)  # half-open: one trial request, which fails: open again
            live.client.get("/pub/later@example.org")
            live.client.get("/pub/later2@example.org")
            assert len(dead.requests) == 3


def test_a_key_for_the_wrong_address_is_refused(settings: Settings, serve: Serve) -> None:
    mallory = TestKey.generate("Mallory <mallory@evil.example>")
    with (
        stub_server(lambda path: (200, mallory.armored.encode())) as liar,
        serve(upstreams=[vks("liar", liar.url)]) as live,
    ):
        assert live.client.get("/pub/alice@example.org").status_code == 404
        assert live.client.get(f"/pub/{'AB' * 20}").status_code == 404  # wrong key too
        assert (
            metric(
                live,
                "attester_upstream_refused_certificates_total",
                upstream="liar",
                reason="wrong_address",
            )
            == 1
        )
        assert (
            metric(
                live,
                "attester_upstream_refused_certificates_total",
                upstream="liar",
                reason="wrong_key",
            )
            == 1
        )

    assert stored(settings).sources == {}  # nothing of it was kept


@pytest.mark.slow
def test_sks_as_keyserver_ubuntu_com_over_hkp(
    settings: Settings, openpgp_org: AttesterPeer, serve: Serve, tmp_path: Path
) -> None:
    erin = TestKey.generate("Erin <erin@example.net>").with_user_id("Erin <erin@work.example>")
    frank = TestKey.generate("Frank <frank@example.net>")
    with sks_peer(erin.public + frank.public, tmp_path / "sks") as sks:
        up = [vks(OPENPGP_ORG, openpgp_org.url), hkp("keyserver.ubuntu.com", sks.url)]
        with serve(upstreams=up) as live:
            r = live.client.get("/pub/erin@example.net")
            assert r.status_code == 200, r.text
            assert r.headers["X-Attester-Origin"].startswith("upstream:keyserver.ubuntu.com")
            # SKS publishes every user ID it has (it verifies none): all are vouched for.
            assert _emails(r.text) == {"erin@example.net", "erin@work.example"}
            r = live.client.get(f"/vks/v1/by-fingerprint/{frank.fingerprint}")
            assert r.status_code == 200 and _emails(r.text) == {"frank@example.net"}
            r = live.client.get(f"/pks/lookup?op=get&search=0x{frank.key_id}")
            assert r.status_code == 200
            assert live.client.get("/pub/erin@work.example").status_code == 200
            assert live.client.get("/pub/nobody@example.net").status_code == 404
            # One request per distinct query (the cache keeps repeats at home).
            live.client.get("/pub/erin@example.net")
            assert (
                metric(
                    live,
                    "attester_upstream_requests_total",
                    upstream="keyserver.ubuntu.com",
                    outcome="found",
                )
                == 4
            )
    assert stored(settings).attested == []
