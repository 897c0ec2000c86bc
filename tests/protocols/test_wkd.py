"""Web Key Directory (``wkd.md``) over real HTTP on loopback: advanced and direct URLs,
what is served for an address, policy and submission-address files, and what is not
served (unknown hashes, other domains, directories)."""

from __future__ import annotations

import httpx
import pytest

from attester.config import Settings
from attester.openpgp import parse_certificates
from attester.openpgp.wkd import wkd_hash
from attester.service.attestation import Attestation
from attester.service.core import Core
from tests.support.keys import TestKey
from tests.support.server import AppServer, Server

W = "/.well-known/openpgpkey"
JOE = "iy9q119eutrkn8s1mk4r39qejnbu3n5q"  # the draft's test vector: Joe.Doe@Example.ORG


@pytest.fixture
def joe(attestation: Attestation) -> TestKey:
    """Three addresses on two domains, two user IDs for one of them; all attested."""
    key = (
        TestKey.generate("Joe Doe <Joe.Doe@Example.ORG>")
        .with_user_id("Joe (work) <joe.doe@example.org>")
        .with_user_id("Joe <jd@example.org>")
        .with_user_id("Joe <joe.doe@other.example>")
    )
    assert attestation.imports.keyring(key.public, attest_emails=True).attested == 3
    return key


def _uids(resp: httpx.Response) -> list[str]:
    [cert] = parse_certificates(resp.content)
    return sorted(u.text for u in cert.user_ids)


def _is_wkd_key(resp: httpx.Response, key: TestKey) -> None:
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"] == "application/octet-stream"
    assert resp.headers["access-control-allow-origin"] == "*"
    assert not resp.content.startswith(b"-----BEGIN")  # binary, never armored
    [cert] = parse_certificates(resp.content)
    assert str(cert.fingerprint) == key.fingerprint


def test_test_vector() -> None:
    assert wkd_hash("Joe.Doe") == JOE


def test_advanced_serves_only_the_address_user_ids(server: Server, joe: TestKey) -> None:
    r = server.client.get(f"{W}/example.org/hu/{JOE}?l=Joe.Doe")
    _is_wkd_key(r, joe)
    assert _uids(r) == ["Joe (work) <joe.doe@example.org>", "Joe Doe <Joe.Doe@Example.ORG>"]
    r = server.client.get(f"{W}/example.org/hu/{wkd_hash('jd')}")
    assert _uids(r) == ["Joe <jd@example.org>"]
    # Same local part, other domain: that domain's user ID only.
    r = server.client.get(f"{W}/other.example/hu/{JOE}")
    assert _uids(r) == ["Joe <joe.doe@other.example>"]
    # The subkeys come along: a WKD key must be usable for encryption.
    [served] = parse_certificates(r.content)
    assert len(served.subkeys) == len(parse_certificates(joe.public)[0].subkeys)


@pytest.mark.parametrize(
    "suffix",
    ["", "?l=joe.doe", "?l=JOE.DOE", "?l=someone-else", f"?l=x&other={JOE}"],
)
def test_l_is_optional_and_ignored(server: Server, joe: TestKey, suffix: str) -> None:
    _is_wkd_key(server.client.get(f"{W}/example.org/hu/{JOE}{suffix}"), joe)


def test_domain_and_hash_case(server: Server, joe: TestKey) -> None:
    _is_wkd_key(server.client.get(f"{W}/Example.ORG/hu/{JOE.upper()}"), joe)


@pytest.mark.parametrize("host", ["example.org", "example.org:8443", "EXAMPLE.org."])
def test_direct_uses_the_host_header(server: Server, joe: TestKey, host: str) -> None:
    r = server.client.get(f"{W}/hu/{JOE}?l=Joe.Doe", headers={"Host": host})
    _is_wkd_key(r, joe)
    assert len(_uids(r)) == 2
    r = server.client.get(f"{W}/hu/{JOE}", headers={"Host": "other.example"})
    assert _uids(r) == ["Joe <joe.doe@other.example>"]


def test_direct_on_a_host_without_keys(server: Server, joe: TestKey) -> None:
    # A loopback request names 127.0.0.1: no address lives there.
    r = server.client.get(f"{W}/hu/{JOE}")
    assert r.status_code == 404
    assert r.headers["access-control-allow-origin"] == "*"


def test_head(server: Server, joe: TestKey) -> None:
    get = server.client.get(f"{W}/example.org/hu/{JOE}")
    r = server.client.head(f"{W}/example.org/hu/{JOE}")
    assert r.status_code == 200 and r.content == b""
    assert r.headers["content-type"] == "application/octet-stream"
    assert int(r.headers["content-length"]) == len(get.content)
    r = server.client.head(f"{W}/hu/{JOE}", headers={"Host": "example.org"})
    assert r.status_code == 200
    assert server.client.head(f"{W}/example.org/hu/{wkd_hash('nobody')}").status_code == 404
    assert server.client.head(f"{W}/example.org/policy").status_code == 200


@pytest.mark.parametrize(
    "path",
    [
        f"{W}/example.org/hu/{wkd_hash('nobody')}",  # no such address
        f"{W}/example.net/hu/{JOE}",  # the address is on another domain
        f"{W}/example.org/hu/{JOE[:-1]}",  # 31 characters
        f"{W}/example.org/hu/{JOE}y",  # 33
        f"{W}/example.org/hu/{JOE[:-1]}0",  # 0 is not in the z-base-32 alphabet
        f"{W}/example.org/hu/joe.doe",
        f"{W}/exa_mple.org/hu/{JOE}",  # not a domain
        f"{W}/hu/policy",
    ],
)
def test_not_found(server: Server, joe: TestKey, path: str) -> None:
    r = server.client.get(path)
    assert r.status_code == 404
    assert r.headers["content-type"].startswith("text/plain")


def test_unattested_address_is_not_served(server: Server, attestation: Attestation) -> None:
    key = TestKey.generate("Kim <kim@example.org>").with_user_id("Kim <kim@hidden.example>")
    attestation.imports.keyring(key.public, attest_emails=True, domains=["example.org"])
    assert server.client.get(f"{W}/example.org/hu/{wkd_hash('kim')}").status_code == 200
    assert server.client.get(f"{W}/hidden.example/hu/{wkd_hash('kim')}").status_code == 404


def test_revocation_takes_the_key_off_wkd(server: Server, attestation: Attestation) -> None:
    key = TestKey.generate("Rev <rev@example.org>")
    attestation.imports.keyring(key.public, attest_emails=True)
    url = f"{W}/example.org/hu/{wkd_hash('rev')}"
    assert server.client.get(url).status_code == 200
    attestation.imports.keyring(key.revoked_public())
    assert server.client.get(url).status_code == 404


@pytest.mark.parametrize(
    "path",
    [
        f"{W}",
        f"{W}/",
        f"{W}/hu",
        f"{W}/hu/",
        f"{W}/example.org",
        f"{W}/example.org/",
        f"{W}/example.org/hu",
        f"{W}/example.org/hu/",
        f"{W}/example.org/hu/{JOE}/",
        f"{W}/example.org/other-file",
    ],
)
def test_no_directory_listing(server: Server, joe: TestKey, path: str) -> None:
    r = server.client.get(path)
    assert r.status_code == 404, path
    assert JOE not in r.text


# ---- policy and submission-address


def test_policy_exists_without_configuration(server: Server) -> None:
    # The comment line is GnuPG's (gpg-wks-client --install-key writes the same file).
    for path, headers, domain in (
        (f"{W}/Example.org/policy", {}, "example.org"),
        (f"{W}/policy", {"Host": "example.org:443"}, "example.org"),
        (f"{W}/policy", {}, "127.0.0.1"),  # the loopback host too while "*" is served
    ):
        r = server.client.get(path, headers=headers)
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/plain")
        assert r.headers["access-control-allow-origin"] == "*"
        assert r.text == f"# Policy flags for domain {domain}\n"
    assert server.client.get(f"{W}/example.org/submission-address").status_code == 404
    assert server.client.get(f"{W}/submission-address").status_code == 404


def test_configured_policy_and_submission_address(settings: Settings) -> None:
    s = settings.model_copy(
        update={
            "wkd_policy_keywords": ("mailbox-only", "protocol-version: 5", "  ", "auth-submit"),
            "wkd_submission_address": "key-submission@example.org",
        }
    )
    with AppServer.start(s) as live:
        expected = (
            b"# Policy flags for domain example.org\n"
            b"mailbox-only\n"
            b"protocol-version: 5\n"
            b"auth-submit\n"
            b"submission-address: key-submission@example.org\n"
        )
        for path, headers in (
            (f"{W}/example.org/policy", {}),
            (f"{W}/policy", {"Host": "example.org"}),
        ):
            r = live.client.get(path, headers=headers)
            assert r.status_code == 200 and r.content == expected
            assert all(line.endswith(b"\n") for line in r.content.splitlines(keepends=True))
        for path in (f"{W}/example.org/submission-address", f"{W}/submission-address"):
            r = live.client.get(path)
            assert r.status_code == 200
            assert r.content == b"key-submission@example.org\n"


def test_keyword_naming_the_submission_address_is_not_repeated(settings: Settings) -> None:
    s = settings.model_copy(
        update={
            "wkd_policy_keywords": ("submission-address: a@example.org\nmailbox-only",),
            "wkd_submission_address": "a@example.org",
        }
    )
    with AppServer.start(s) as live:
        assert live.client.get(f"{W}/x.example/policy").text == (
            "# Policy flags for domain x.example\nsubmission-address: a@example.org\nmailbox-only\n"
        )


def test_only_listed_domains_are_served(settings: Settings, attestation: Attestation) -> None:
    key = TestKey.generate("Lu <lu@example.org>").with_user_id("Lu <lu@other.example>")
    attestation.imports.keyring(key.public, attest_emails=True)
    s = settings.model_copy(update={"wkd_domains": ("Example.ORG",)})
    with AppServer.start(s) as live:
        h = wkd_hash("lu")
        assert live.client.get(f"{W}/example.org/hu/{h}").status_code == 200
        assert live.client.get(f"{W}/hu/{h}", headers={"Host": "example.org"}).status_code == 200
        assert live.client.get(f"{W}/other.example/hu/{h}").status_code == 404
        assert live.client.get(f"{W}/hu/{h}", headers={"Host": "other.example"}).status_code == 404
        assert live.client.get(f"{W}/example.org/policy").status_code == 200
        assert live.client.get(f"{W}/other.example/policy").status_code == 404
        assert live.client.get(f"{W}/policy").status_code == 404  # Host 127.0.0.1


def test_no_wkd_at_all(settings: Settings, attestation: Attestation) -> None:
    key = TestKey.generate("Mo <mo@example.org>")
    attestation.imports.keyring(key.public, attest_emails=True)
    with AppServer.start(settings.model_copy(update={"wkd_domains": ()})) as live:
        assert live.client.get(f"{W}/example.org/hu/{wkd_hash('mo')}").status_code == 404
        assert live.client.get(f"{W}/example.org/policy").status_code == 404


def test_several_keys_per_address_are_concatenated(
    settings: Settings, attestation: Attestation
) -> None:
    s = settings.model_copy(update={"multiple_keys_per_address": True})
    a, b = TestKey.generate("N <n@example.org>"), TestKey.generate("N <n@example.org>")
    with AppServer.start(s) as live:
        both = Attestation.build(Core(s, attestation.core.db))
        both.imports.keyring(a.public, attest_emails=True)
        both.imports.keyring(b.public, attest_emails=True)
        r = live.client.get(f"{W}/example.org/hu/{wkd_hash('n')}")
        assert r.status_code == 200
        found = {str(c.fingerprint) for c in parse_certificates(r.content)}
        assert found == {a.fingerprint, b.fingerprint}


def test_post_is_not_allowed(server: Server) -> None:
    assert server.client.post(f"{W}/example.org/hu/{JOE}").status_code == 405
