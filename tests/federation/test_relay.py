"""``GET /ldap-relay?server=HOST&search=EMAIL`` as FlowCrypt's browser calls it
(``attester.ts``: 200 armored keys, 404 none, 500 read as 404), through the real app in
process against a real slapd: only allow-listed directories, checked keys, bounded, and
nothing stored."""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from attester.config import Settings, load_settings
from attester.openpgp import parse_certificates
from tests.federation.conftest import stored
from tests.federation.directory import READER_DN, READER_PASSWORD, Directory, available
from tests.support.asgi import InProcess, in_process
from tests.support.keys import TestKey

pytestmark = pytest.mark.skipif(
    not available(), reason="slapd and ldap-utils are not installed (scripts/test installs them)"
)

SERVER = "keys.example.com"  # what the browser sends for users @example.com


def _settings(tmp_path: Path, **update: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": f"sqlite:///{tmp_path / 'attester.db'}",
        "mail_url": f"file:{tmp_path / 'outbox'}",
    }
    return load_settings(None, **{**values, **update})


@pytest.fixture
def relay(tmp_path: Path, directory: Directory) -> Iterator[InProcess]:
    settings = _settings(tmp_path, ldap_relay_servers=[{"server": SERVER, "url": directory.url}])
    with in_process(settings) as client:
        yield client


def _address(name: str) -> str:
    return f"{name}-{secrets.token_hex(4)}@example.com"


def _lookup(client: InProcess, search: str, server: str = SERVER, **kw: Any) -> Any:
    return client.get("/ldap-relay", params={"server": server, "search": search}, **kw)


def _error(r: Any, status: int, fragment: str = "") -> None:
    assert r.status_code == status, r.text
    body = r.json()
    assert body["code"] == status and body["error"] == {"code": status, "message": body["message"]}
    assert fragment in body["message"]


def test_relay_is_off_unless_configured(tmp_path: Path, directory: Directory) -> None:
    with in_process(_settings(tmp_path)) as client:
        _error(_lookup(client, "alice@example.com"), 404, "relays no LDAP lookups")


def test_keys_from_an_allow_listed_directory(
    relay: InProcess, directory: Directory, tmp_path: Path
) -> None:
    address = _address("alice")
    alice = TestKey.generate(f"Alice <{address}>").with_user_id("Alice <alice@private.example>")
    directory.add_key(alice.public)
    r = _lookup(relay, address.upper(), server="Keys.Example.COM.", headers={"Origin": "x://y"})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    assert r.headers["access-control-allow-origin"] == "*"
    assert r.headers["X-Attester-Origin"] == f"ldap-relay:{SERVER}"
    [cert] = parse_certificates(r.content)
    assert cert.fingerprint.hex == alice.fingerprint
    # As a peer's copy: the user IDs the directory published with it.
    assert {u.text for u in cert.user_ids} == {
        f"Alice <{address}>",
        "Alice <alice@private.example>",
    }
    # Two keys for one address: two armor blocks (one certificate per block).
    second = TestKey.generate(f"Alice at home <{address}>")
    directory.add_key(second.public)
    r = _lookup(relay, address)
    assert r.text.count("-----BEGIN PGP PUBLIC KEY BLOCK-----") == 2
    assert {c.fingerprint.hex for c in parse_certificates(r.content)} == {
        alice.fingerprint,
        second.fingerprint,
    }
    # Relay answers are passed through, never stored.
    assert stored(_settings(tmp_path)).sources == {}


def test_only_checked_keys_are_passed_on(relay: InProcess, directory: Directory) -> None:
    carol = _address("carol")
    directory.add_key(TestKey.generate(f"Carol <{carol}>").revoked_public())
    mallory = _address("mallory")
    directory.add_key(TestKey.generate(f"Mallory <{mallory}>").public, value=b"<html>no key</html>")
    erin = _address("erin")
    directory.add_key(TestKey.generate("Erin <elsewhere@example.net>").public, user_ids=[erin])
    for address in (carol, mallory, erin):
        _error(_lookup(relay, address), 404, "No key for")
    _error(_lookup(relay, _address("nobody")), 404, "No key for")


def test_never_an_open_relay(relay: InProcess, directory: Directory) -> None:
    address = _address("alice")
    directory.add_key(TestKey.generate(f"Alice <{address}>").public)
    # The directory is reachable at 127.0.0.1, but only under the name on the allow-list.
    for server in ("127.0.0.1", f"127.0.0.1:{directory.port}", "keys.example.org", "localhost"):
        _error(_lookup(relay, address, server=server), 404, "is not a directory this server")
    _error(relay.get("/ldap-relay", params={"search": address}), 400, "'server'")
    for search in ("", "alice", "(objectClass=*)", "*@example.com)(pgpUserID=*"):
        assert _lookup(relay, search).status_code == 400, search


def test_a_bound_directory_through_the_relay(tmp_path: Path, directory: Directory) -> None:
    address = _address("eve")
    directory.add_key(TestKey.generate(f"Eve <{address}>").public, restricted=True)
    servers = [
        {"server": SERVER, "url": directory.url},
        {
            "server": "keys.board.example.com",
            "url": directory.url,
            "bind_dn": READER_DN,
            "bind_password": READER_PASSWORD,
            "starttls": True,
            "ca_file": str(directory.ca_file),
        },
    ]
    with in_process(_settings(tmp_path, ldap_relay_servers=servers)) as client:
        _error(_lookup(client, address), 404)
        assert _lookup(client, address, server="keys.board.example.com").status_code == 200


def test_bounded_in_time_results_and_concurrency(
    tmp_path: Path,
    directory: Directory,
    silent_server: str,
) -> None:
    address = _address("bob")
    for i in range(3):
        directory.add_key(TestKey.generate(f"Bob {i} <{address}>").public)
    servers = [
        {"server": SERVER, "url": directory.url},
        {"server": "keys.slow.example", "url": silent_server, "timeout_seconds": 1.5},
    ]
    settings = _settings(
        tmp_path, ldap_relay_servers=servers, ldap_max_results=2, ldap_relay_concurrency=1
    )
    with in_process(settings) as client:
        r = _lookup(client, address)
        assert len(parse_certificates(r.content)) == 2  # ldap_max_results
        # A directory that never answers: 503 once the server's timeout has passed.
        start = time.monotonic()
        _error(_lookup(client, "x@example.com", server="keys.slow.example"), 503, "could not be")
        assert 1.0 < time.monotonic() - start < 3.0
        # One lookup at a time (ldap_relay_concurrency = 1): a second one is told to wait.
        statuses: list[int] = []
        slow = threading.Thread(
            target=lambda: statuses.append(
                _lookup(client, "y@example.com", server="keys.slow.example").status_code
            )
        )
        slow.start()
        time.sleep(0.5)
        _error(_lookup(client, address), 429, "Too many directory lookups")
        slow.join(10)
        assert statuses == [503]
        assert _lookup(client, address).status_code == 200  # free again
