"""Sequoia's ``sq`` (0.27) against the server on loopback.

What sq 0.27 can reach over plain http, and how (sequoia-net 0.25):

- ``sq keyserver --policy insecure --server hkp://127.0.0.1:PORT get QUERY`` speaks HKP
  only (``/pks/lookup?op=get&options=mr&search=...``): by fingerprint, key id and
  address. ``hkp://`` means plain http; without ``--policy insecure`` sq refuses it
  ("Unmet network policy requirement: Insecure"), and ``http://`` URIs are refused
  outright ("expected hkp: or hkps:").
- No sq 0.27 command speaks VKS (``/vks/v1/...``); what VKS serves is checked here by
  sq reading it (``sq inspect``).
- ``sq wkd get`` uses https only, so it cannot fetch from a plain-http server; its URL
  builders (``sq wkd url`` / ``direct-url``) and its directory builder (``sq wkd
  generate``) are checked against what we serve instead.

sq 0.27 keeps no state (no certificate store); ``HOME`` still points at a throwaway
directory so nothing can touch the real one.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from attester.openpgp import parse_certificates
from attester.openpgp._packets import SIGNATURE, USER_ID, RawPacket, split_packets
from attester.openpgp.wkd import wkd_hash
from attester.service.attestation import Attestation
from tests.support.keys import TestKey
from tests.support.server import LiveServer, Server

pytestmark = pytest.mark.skipif(shutil.which("sq") is None, reason="sq is not installed")


def _sq(home: Path, *args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        ["sq", *args],
        input=stdin,
        env={"PATH": "/usr/bin:/bin", "HOME": str(home), "SEQUOIA_HOME": str(home)},
        capture_output=True,
        timeout=60,
        check=False,
    )


@pytest.fixture
def sq_home(tmp_path: Path) -> Path:
    home = tmp_path / "sq-home"
    home.mkdir()
    return home


@pytest.fixture
def sam(attestation: Attestation) -> TestKey:
    key = TestKey.generate("Sam <sam@example.org>").with_user_id("Sam <sam@hidden.example>")
    attestation.imports.keyring(key.public, attest_emails=True, domains=["example.org"])
    return key


def _sq_get(server: Server, home: Path, term: str) -> subprocess.CompletedProcess[bytes]:
    port = server.base_url.rsplit(":", 1)[1]
    server_uri = f"hkp://127.0.0.1:{port}"
    return _sq(home, "keyserver", "--policy", "insecure", "--server", server_uri, "get", term)


# ---- HKP: sq keyserver get


@pytest.mark.parametrize("query", ["fingerprint", "key_id", "email"])
def test_sq_keyserver_get(
    socket_server: LiveServer, sam: TestKey, sq_home: Path, query: str
) -> None:
    term = {"fingerprint": sam.fingerprint, "key_id": sam.key_id, "email": "sam@example.org"}
    p = _sq_get(socket_server, sq_home, term[query])
    assert p.returncode == 0, p.stderr.decode()
    [cert] = parse_certificates(p.stdout)
    assert str(cert.fingerprint) == sam.fingerprint
    assert [u.text for u in cert.user_ids] == ["Sam <sam@example.org>"]


@pytest.mark.parametrize("term", ["sam@hidden.example", "F" * 40])
def test_sq_keyserver_get_not_found(
    socket_server: LiveServer, sam: TestKey, sq_home: Path, term: str
) -> None:
    p = _sq_get(socket_server, sq_home, term)
    assert p.returncode != 0
    assert b"Key not found" in p.stderr


def test_sq_refuses_plain_http_without_insecure_policy(
    socket_server: LiveServer, sq_home: Path
) -> None:
    # Documented behaviour of sq, so operators know why the flag is needed.
    port = socket_server.base_url.rsplit(":", 1)[1]
    p = _sq(sq_home, "keyserver", "--server", f"hkp://127.0.0.1:{port}", "get", "F" * 40)
    assert p.returncode != 0 and b"Insecure" in p.stderr


# ---- VKS: what sq reads


@pytest.mark.parametrize("path", ["by-email/sam@example.org", "by-fingerprint/{fpr}"])
def test_sq_reads_vks_answers(server: Server, sam: TestKey, sq_home: Path, path: str) -> None:
    r = server.client.get("/vks/v1/" + path.format(fpr=sam.fingerprint))
    assert r.status_code == 200
    p = _sq(sq_home, "inspect", stdin=r.content)
    assert p.returncode == 0, p.stderr.decode()
    out = p.stdout.decode()
    assert "OpenPGP Certificate." in out and sam.fingerprint in out
    assert "sam@example.org" in out and "hidden.example" not in out


# ---- WKD: sq's URLs and directory builder


@pytest.mark.parametrize("method", ["url", "direct-url"])
@pytest.mark.parametrize("address", ["sam@example.org", "Sam@Example.org"])
def test_sq_wkd_urls_find_the_key(
    server: Server, sam: TestKey, sq_home: Path, method: str, address: str
) -> None:
    p = _sq(sq_home, "wkd", method, address)
    assert p.returncode == 0, p.stderr.decode()
    url = urlsplit(p.stdout.decode().strip())
    assert url.scheme == "https"  # what sq would fetch; we ask on loopback instead
    # The direct form names the domain in Host; the advanced one in the path (the Host
    # sq would use, openpgpkey.example.org, is irrelevant then and is not sent).
    headers = {"Host": url.netloc} if method == "direct-url" else {}
    r = server.client.get(f"{url.path}?{url.query}", headers=headers)
    assert r.status_code == 200, (url, r.text)
    [cert] = parse_certificates(r.content)
    assert [u.text for u in cert.user_ids] == ["Sam <sam@example.org>"]


def _keep_user_ids(packets: list[RawPacket], keep: set[bytes]) -> list[RawPacket]:
    """``packets`` without the user IDs not in ``keep`` and the signatures that follow them."""
    out: list[RawPacket] = []
    skipping = False
    for p in packets:
        if p.tag == USER_ID:
            skipping = p.body not in keep
        elif p.tag != SIGNATURE:
            skipping = False
        if not skipping:
            out.append(p)
    return out


def test_sq_wkd_generate_agrees_on_names_and_packets(
    server: Server, attestation: Attestation, sq_home: Path, tmp_path: Path
) -> None:
    """``sq wkd generate`` (0.27) writes the whole certificate, every user ID included,
    under each address's hash; we serve only the address's user IDs. So: the same file
    names, and sq's file reduced to our user IDs holds exactly the packets we serve (sq
    orders user IDs by their bytes, so the packets are compared as a multiset)."""
    key = (
        TestKey.generate("Tom <tom@example.org>")
        .with_user_id("Tom (laptop) <tom@example.org>")
        .with_user_id("Tom <t@example.org>")
        .with_user_id("Tom <tom@other.example>")
    )
    attestation.imports.keyring(key.public, attest_emails=True)
    ring = tmp_path / "ring.pgp"
    ring.write_bytes(key.public)
    root = tmp_path / "root"
    p = _sq(sq_home, "wkd", "generate", str(root), "example.org", str(ring))
    assert p.returncode == 0, p.stderr.decode()
    hu = root / ".well-known/openpgpkey/example.org/hu"
    assert sorted(f.name for f in hu.iterdir()) == sorted([wkd_hash("tom"), wkd_hash("t")])
    for f in hu.iterdir():
        r = server.client.get(f"/.well-known/openpgpkey/example.org/hu/{f.name}")
        served = split_packets(r.content)
        ours = {p.body for p in served if p.tag == USER_ID}
        assert len(ours) == (2 if f.name == wkd_hash("tom") else 1)
        reference = _keep_user_ids(split_packets(f.read_bytes()), ours)
        assert sorted(reference) == sorted(served)
