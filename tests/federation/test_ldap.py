"""A company directory as an upstream: a real OpenLDAP ``slapd`` on loopback holding keys
in GnuPG's schema, looked up through the app like any other upstream (policy, deadline,
cache, breaker, origin marking, checks), and read by GnuPG's own dirmngr too, which proves
the schema and layout are the ones GnuPG uses. Every test that goes through the app runs
on SQLite and PostgreSQL; each adds entries under addresses of its own."""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import quote

import ldap as python_ldap
import pytest

from attester.config import Settings, load_settings
from attester.federation import UpstreamRefused, UpstreamTimeout, UpstreamUnreachable
from attester.federation.ldap import ServerInfo, _mapped, search_filter, server_info
from attester.openpgp import parse_certificates
from attester.openpgp.types import Email, Fingerprint, KeyID
from attester.service.query import EmailQuery, FingerprintQuery, KeyIDQuery
from tests.federation.conftest import Serve, ldap, metric, stored
from tests.federation.directory import (
    KEY_SPACE,
    PUBLISHER_DN,
    PUBLISHER_PASSWORD,
    READER_DN,
    READER_PASSWORD,
    Directory,
    available,
)
from tests.federation.peers import Clock
from tests.support.keys import TestKey

pytestmark = pytest.mark.skipif(
    not available(), reason="slapd and ldap-utils are not installed (scripts/test installs them)"
)

CORP = "corp"

Person = Callable[..., tuple[TestKey, str]]


@pytest.fixture
def person(directory: Directory) -> Person:
    """Make a key for a fresh address ``<name>-<random>@example.com`` and store it in the
    directory (``store=False``: only make it). Returns the key and its address."""

    def make(name: str, *, store: bool = True, **entry: object) -> tuple[TestKey, str]:
        address = f"{name}-{secrets.token_hex(4)}@example.com"
        key = TestKey.generate(f"{name.title()} <{address}>")
        if store:
            directory.add_key(key.public, **entry)  # type: ignore[arg-type]
        return key, address

    return make


def _fingerprints(armored: str) -> list[str]:
    return [c.fingerprint.hex for c in parse_certificates(armored.encode())]


def test_an_address_is_found_in_the_company_directory(
    settings: Settings, serve: Serve, directory: Directory, person: Person
) -> None:
    alice, address = person("alice")
    with serve(upstreams=[ldap(CORP, directory.url)]) as live:
        r = live.client.get(f"/pub/{address}")
        assert r.status_code == 200, r.text
        assert _fingerprints(r.text) == [alice.fingerprint]
        assert r.headers["X-Attester-Origin"].startswith(f"upstream:{CORP}; fetched=")
        # Every adapter gets it through the core.
        r = live.client.get(f"/vks/v1/by-email/{quote(address)}")
        assert r.status_code == 200 and r.headers["X-Attester-Origin"].startswith("upstream:")
        assert metric(live, "attester_upstream_requests_total", upstream=CORP, outcome="found") == 1
    held = stored(settings)
    assert held.sources == {alice.fingerprint: f"upstream:{CORP}"}
    assert held.attested == []  # a directory's word is never our attestation


def test_lookups_by_fingerprint_subkey_and_key_id(
    serve: Serve, directory: Directory, person: Person
) -> None:
    frank, _ = person("frank")
    grace, _ = person("grace")
    subkey = parse_certificates(frank.public)[0].subkeys[0].fingerprint.hex
    with serve(upstreams=[ldap(CORP, directory.url)]) as live:
        r = live.client.get(f"/vks/v1/by-fingerprint/{subkey}")  # gpgSubFingerprint
        assert r.status_code == 200 and _fingerprints(r.text) == [frank.fingerprint]
        r = live.client.get(f"/pks/lookup?op=get&options=mr&search=0x{grace.key_id}")  # pgpCertID
        assert r.status_code == 200 and _fingerprints(r.text) == [grace.fingerprint]
        assert live.client.get(f"/pub/{'AB' * 20}").status_code == 404
        assert metric(live, "attester_upstream_requests_total", upstream=CORP, outcome="found") == 2


def test_two_keys_for_one_address_are_both_kept(
    settings: Settings, serve: Serve, directory: Directory, person: Person
) -> None:
    first, address = person("bob")
    second = TestKey.generate(f"Bob at home <{address}>")
    directory.add_key(second.public)
    with serve(upstreams=[ldap(CORP, directory.url)], multiple_keys_per_address=True) as live:
        r = live.client.get(f"/pub/{address}")
        assert r.status_code == 200
        assert sorted(_fingerprints(r.text)) == sorted([first.fingerprint, second.fingerprint])
        assert r.text.count("BEGIN PGP PUBLIC KEY BLOCK") == 2  # one block per key
    assert set(stored(settings).sources) == {first.fingerprint, second.fingerprint}


def test_what_the_directory_holds_is_checked_like_any_upstream_answer(
    settings: Settings, serve: Serve, directory: Directory, person: Person
) -> None:
    # A revoked key the directory does not mark as revoked.
    carol, carol_address = person("carol", store=False)
    directory.add_key(carol.revoked_public())
    # Garbage where the keyblock should be (the entry claims the address).
    mallory, mallory_address = person("mallory", value=b"<html>this is no key</html>")
    # Garbage beside a good key for the same address: the good one is still served.
    dave, dave_address = person("dave")
    directory.add_key(
        TestKey.generate("Dave again <d@example.com>").public,
        user_ids=[f"Dave <{dave_address}>"],
        value=b"-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nbm90IGEga2V5\n=AAAA\n-----END PGP",
    )
    # An entry claiming an address its key does not carry.
    erin, _ = person("erin", store=False)
    erin_address = f"erin-{secrets.token_hex(4)}@example.com"
    directory.add_key(erin.public, user_ids=[f"Erin <{erin_address}>"])
    with serve(upstreams=[ldap(CORP, directory.url)]) as live:
        assert live.client.get(f"/pub/{carol_address}").status_code == 404
        assert live.client.get(f"/pub/{mallory_address}").status_code == 404
        assert live.client.get(f"/pub/{erin_address}").status_code == 404
        r = live.client.get(f"/pub/{dave_address}")
        assert r.status_code == 200 and _fingerprints(r.text) == [dave.fingerprint]

        def refused(reason: str) -> float:
            return metric(
                live, "attester_upstream_refused_certificates_total", upstream=CORP, reason=reason
            )

        assert refused("revoked") == 1
        assert refused("wrong_address") == 1
        assert refused("unparsable") == 2  # mallory's and dave's garbage
    assert stored(settings).sources == {dave.fingerprint: f"upstream:{CORP}"}
    assert mallory.fingerprint not in stored(settings).sources


def test_a_bind_dn_reads_what_anonymous_cannot(
    serve: Serve,
    directory: Directory,
    person: Person,
    clock: Clock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    eve, address = person("eve", restricted=True)
    caplog.set_level(logging.DEBUG)
    with serve(upstreams=[ldap(CORP, directory.url)]) as live:
        assert live.client.get(f"/pub/{address}").status_code == 404  # anonymous
    clock.advance(3600)  # past the cached miss
    bound = ldap(CORP, directory.url, bind_dn=READER_DN, bind_password=READER_PASSWORD)
    with serve(upstreams=[bound]) as live:
        r = live.client.get(f"/pub/{address}")
        assert r.status_code == 200 and _fingerprints(r.text) == [eve.fingerprint]
        assert READER_PASSWORD not in live.client.get("/metrics").text
    wrong = ldap(CORP, directory.url, bind_dn=READER_DN, bind_password="not-the-password")
    with serve(upstreams=[wrong], upstream_breaker_failures=2) as live:
        for i in range(3):
            assert live.client.get(f"/pub/other{i}-{address}").status_code == 404
        assert (
            metric(live, "attester_upstream_requests_total", upstream=CORP, outcome="refused") == 2
        )
        assert (
            metric(live, "attester_upstream_requests_total", upstream=CORP, outcome="circuit_open")
            == 1
        )
    # The secret appears nowhere: not in logs, not in the settings' text form.
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "Invalid credentials" in logged or "refused access" in logged
    for secret in (READER_PASSWORD, "not-the-password"):
        assert secret not in logged
        assert secret not in repr(load_settings(None, upstreams=[bound, wrong | {"name": "x"}]))


def test_tls_from_the_start_or_by_starttls_and_never_without(
    serve: Serve, directory: Directory, person: Person
) -> None:
    alice, address = person("alice")
    ca = str(directory.ca_file)
    for upstream in (
        ldap(CORP, directory.url, starttls=True, ca_file=ca),
        ldap(CORP, directory.ldaps_url, ca_file=ca),
    ):
        with serve(upstreams=[upstream]) as live:
            r = live.client.get(f"/pub/{address}")
            assert r.status_code == 200 and _fingerprints(r.text) == [alice.fingerprint], upstream
    # A certificate from a CA not trusted: the lookup fails, it is not retried in plain text.
    for upstream in (
        ldap(CORP, directory.url, starttls=True, ca_file=str(directory.other_ca_file)),
        ldap(CORP, directory.ldaps_url, ca_file=str(directory.other_ca_file)),
    ):
        with serve(upstreams=[upstream]) as live:
            assert live.client.get(f"/pub/x-{address}").status_code == 404
            assert (
                metric(
                    live, "attester_upstream_requests_total", upstream=CORP, outcome="unreachable"
                )
                == 1
            ), upstream


def test_a_configured_base_dn(serve: Serve, directory: Directory, person: Person) -> None:
    alice, address = person("alice")
    with serve(upstreams=[ldap(CORP, directory.url, base_dn=KEY_SPACE)]) as live:
        assert _fingerprints(live.client.get(f"/pub/{address}").text) == [alice.fingerprint]
    _, other = person("bob")
    nowhere = f"ou=Nowhere,{KEY_SPACE}"
    with serve(upstreams=[ldap(CORP, directory.url, base_dn=nowhere)]) as live:
        assert live.client.get(f"/pub/{other}").status_code == 404
        assert (
            metric(live, "attester_upstream_requests_total", upstream=CORP, outcome="refused") == 1
        )


def test_policy_deadline_and_breaker_apply(
    serve: Serve, directory: Directory, person: Person, silent_server: str
) -> None:
    _, address = person("alice")
    with serve(
        upstreams=[ldap(CORP, directory.url)], upstream_deny_domains=["example.com"]
    ) as live:
        assert live.client.get(f"/pub/{address}").status_code == 404
        assert metric(live, "attester_upstream_lookups_total", result="domain_refused") == 1
        assert metric(live, "attester_upstream_requests_total", upstream=CORP) == 0
    slow = ldap("slow", silent_server, timeout_seconds=5)
    with serve(upstreams=[slow, ldap(CORP, directory.url)], upstream_deadline_seconds=1.0) as live:
        start = time.monotonic()
        r = live.client.get(f"/pub/{address}")
        assert r.status_code == 200 and time.monotonic() - start < 2.5
        assert r.headers["X-Attester-Origin"].startswith(f"upstream:{CORP}")
        deadline = time.monotonic() + 5
        while metric(live, "attester_upstream_requests_total", upstream="slow") < 1:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert (
            metric(live, "attester_upstream_requests_total", upstream="slow", outcome="timeout")
            == 1
        )
    dead = ldap("dead", "ldap://127.0.0.1:9")  # nobody listens on port 9
    with serve(upstreams=[dead], upstream_breaker_failures=2) as live:
        for i in range(4):
            assert live.client.get(f"/pub/x{i}-{address}").status_code == 404
        assert (
            metric(live, "attester_upstream_requests_total", upstream="dead", outcome="unreachable")
            == 2
        )
        assert metric(live, "attester_upstream_circuit_open", upstream="dead") == 1


# ---- GnuPG's own dirmngr on the same directory


@pytest.fixture
def gnupg_home() -> Iterator[dict[str, str]]:
    if not (shutil.which("gpg") and shutil.which("gpgconf")):
        pytest.skip("GnuPG is not installed")
    home = Path(tempfile.mkdtemp(prefix="gpg", dir="/tmp"))  # socket paths must stay short
    home.chmod(0o700)
    (home / "dirmngr.conf").write_text("standard-resolver\ndisable-ipv6\nno-use-tor\n")
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "GNUPGHOME": str(home),
        "HOME": str(home),
        "LANG": "C",
        "LC_ALL": "C",
    }
    try:
        yield env
    finally:
        subprocess.run(["gpgconf", "--kill", "all"], env=env, capture_output=True, timeout=30)
        shutil.rmtree(home, ignore_errors=True)


def _gpg(env: dict[str, str], *args: str, input: bytes | None = None) -> str:
    r = subprocess.run(
        ["gpg", "--batch", "--no-tty", *args], env=env, input=input, capture_output=True, timeout=60
    )
    assert r.returncode == 0, r.stderr.decode()
    return r.stdout.decode() + r.stderr.decode()


@pytest.mark.slow
def test_gnupg_and_attester_read_and_write_the_same_directory(
    serve: Serve, directory: Directory, person: Person, gnupg_home: dict[str, str]
) -> None:
    # What the test directory holds, dirmngr finds: by fingerprint (GnuPG's second schema
    # version, gpgFingerprint) and by long key id (pgpCertID).
    alice, _ = person("alice")
    out = _gpg(gnupg_home, "--keyserver", directory.url, "--recv-keys", alice.fingerprint)
    assert "imported: 1" in out
    bob, _ = person("bob")
    out = _gpg(gnupg_home, "--keyserver", directory.url, "--recv-keys", bob.key_id)
    assert "imported: 1" in out
    # What dirmngr writes (gpg --send-keys to an LDAP keyserver), Attester finds.
    gus, address = person("gus", store=False)
    _gpg(gnupg_home, "--import", input=gus.public)
    writer = (
        f"{directory.url}/????bindname={quote(PUBLISHER_DN, safe='=')},"
        f"password={PUBLISHER_PASSWORD}"
    )
    _gpg(gnupg_home, "--keyserver", writer, "--send-keys", gus.fingerprint)
    with serve(upstreams=[ldap(CORP, directory.url)]) as live:
        r = live.client.get(f"/pub/{address}")
        assert r.status_code == 200 and _fingerprints(r.text) == [gus.fingerprint]


# ---- the parts, without a server


def test_search_filters_follow_the_schema_version() -> None:
    v1, v2 = ServerInfo(KEY_SPACE), ServerInfo(KEY_SPACE, schema_v2=True)
    email = EmailQuery(Email.parse("a*b@example.com"))
    # A filter metacharacter in an address is escaped (RFC 4515), never a wildcard.
    assert search_filter(email, v1) == (
        "(&(|(pgpUserID=*<a\\2ab@example.com>*)(pgpUserID=a\\2ab@example.com))"
        "(!(|(pgpRevoked=1)(pgpDisabled=1))))"
    )
    assert search_filter(email, v2).startswith("(&(|(gpgMailbox=a\\2ab@example.com)")
    fpr = Fingerprint("AB" * 20)
    assert search_filter(FingerprintQuery(fpr), v2) == (
        f"(&(|(gpgFingerprint={fpr.hex})(gpgSubFingerprint={fpr.hex})"
        f"(pgpCertID={'AB' * 8})(pgpSubKeyID={'AB' * 8}))(!(pgpDisabled=1)))"
    )
    # The first schema has no fingerprints: the key id finds candidates, checks decide.
    assert "gpgFingerprint" not in search_filter(FingerprintQuery(fpr), v1)
    assert search_filter(KeyIDQuery(KeyID("CD" * 8)), v1) == (
        f"(&(|(pgpCertID={'CD' * 8})(pgpSubKeyID={'CD' * 8}))(!(pgpDisabled=1)))"
    )


def test_server_info_is_read_as_dirmngr_reads_it() -> None:
    assert server_info("GnuPG", "2 cnfpr", "ou=k").schema_v2
    assert server_info("gnupg", "2", "ou=k").schema_v2
    assert not server_info("GnuPG", "1", "ou=k").schema_v2
    assert not server_info("", "2", "ou=k").schema_v2  # only GnuPG's numbering means this
    assert not server_info("GnuPG", "", "ou=k").schema_v2


def _ldap_errors(cls: type[BaseException]) -> list[type[BaseException]]:
    out: list[type[BaseException]] = []
    for sub in cls.__subclasses__():
        out.append(sub)
        out.extend(_ldap_errors(sub))
    return out


@pytest.mark.parametrize("exc", _ldap_errors(python_ldap.LDAPError), ids=lambda c: c.__name__)
def test_every_ldap_error_is_mapped(exc: type[BaseException]) -> None:
    with pytest.raises((UpstreamTimeout, UpstreamUnreachable, UpstreamRefused)) as e, _mapped("x"):
        raise exc({"desc": "something", "info": "detail"})
    assert str(e.value).startswith("x: ")
