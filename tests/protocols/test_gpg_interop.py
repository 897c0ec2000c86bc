"""GnuPG against a real Attester on loopback: ``gpg --send-keys``, ``--recv-keys``,
``--search-keys`` and ``--refresh-keys`` go through gpg's own dirmngr and HKP client, so
what is proven here is what users of ``gpg --keyserver hkp://...`` get.

Each test has a fresh GNUPGHOME under /tmp (gpg's socket paths must stay short) whose
dirmngr talks only to our server, with no proxy and no Tor, and is stopped afterwards.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from attester.openpgp import armor
from attester.service.attestation import Attestation
from tests.support import daemons
from tests.support.flows import link_in
from tests.support.keys import TestKey
from tests.support.server import LiveServer
from tests.support.smtp import LoopbackSMTPServer

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (shutil.which("gpg") and shutil.which("dirmngr") and shutil.which("gpgconf")),
        reason="GnuPG (gpg, dirmngr, gpgconf) is not installed",
    ),
]


@dataclass
class GnuPG:
    home: Path
    env: dict[str, str]

    def run(
        self, *args: str, input: bytes | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[bytes]:
        r = subprocess.run(
            ["gpg", "--batch", "--no-tty", *args],
            env=self.env,
            input=input,
            capture_output=True,
            timeout=60,
        )
        if check and r.returncode != 0:
            raise AssertionError(
                f"gpg {' '.join(args)} failed ({r.returncode}):\n{r.stderr.decode()}"
            )
        return r

    def colons(self, *args: str) -> list[list[str]]:
        out = self.run("--with-colons", "--fixed-list-mode", *args, check=False).stdout
        return [line.split(":") for line in out.decode().splitlines()]

    def public_keys(self) -> dict[str, dict[str, object]]:
        """Fingerprint → validity field of the primary key and the user ID strings."""
        keys: dict[str, dict[str, object]] = {}
        current: dict[str, object] | None = None
        pending_pub: list[str] | None = None
        for rec in self.colons("--list-keys"):
            if rec[0] == "pub":
                pending_pub, current = rec, None
            elif rec[0] == "fpr" and pending_pub is not None:
                current = {"validity": pending_pub[1], "uids": []}
                keys[rec[9]] = current
                pending_pub = None
            elif rec[0] == "uid" and current is not None:
                uids = current["uids"]
                assert isinstance(uids, list)
                uids.append(rec[9])
        return keys


@pytest.fixture
def live(socket_server: LiveServer) -> LiveServer:
    """The session's app on a real socket: dirmngr connects to it."""
    return socket_server


@pytest.fixture
def gnupg(live: LiveServer) -> Iterator[GnuPG]:
    home = Path(tempfile.mkdtemp(prefix="gpg", dir="/tmp"))
    daemons.watch(home)
    home.chmod(0o700)
    port = live.origin.rsplit(":", 1)[1]
    # Only our server: an IP literal (no SRV or DNS lookups), IPv4 only, no Tor probing,
    # and no proxy (honor-http-proxy is off unless set; the environment is cleared too).
    (home / "dirmngr.conf").write_text(
        f"keyserver hkp://127.0.0.1:{port}\nstandard-resolver\ndisable-ipv6\nno-use-tor\n"
    )
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "GNUPGHOME": str(home),
        "LANG": "C",
        "LC_ALL": "C",
        "HOME": str(home),
    }
    try:
        yield GnuPG(home, env)
    finally:
        subprocess.run(["gpgconf", "--kill", "all"], env=env, capture_output=True, timeout=30)
        shutil.rmtree(home, ignore_errors=True)


def _published(attestation: Attestation, key: TestKey, *domains: str) -> TestKey:
    summary = attestation.imports.keyring(
        key.public, attest_emails=True, domains=list(domains) or None
    )
    assert summary.attested >= 1
    return key


def test_send_keys_publishes_addresses_only_after_confirmation(
    live: LiveServer, gnupg: GnuPG, smtp_server: LoopbackSMTPServer
) -> None:
    gnupg.run(
        "--passphrase", "", "--pinentry-mode", "loopback",
        "--quick-gen-key", "Gina Gpg <gina@example.org>", "ed25519", "default", "never",
    )  # fmt: skip
    [fpr] = gnupg.public_keys()
    gnupg.run("--send-keys", fpr)

    def index(search: str) -> list[str]:
        r = live.client.get(
            "/pks/lookup", params={"op": "index", "search": search, "options": "mr"}
        )
        return r.text.splitlines() if r.status_code == 200 else [str(r.status_code)]

    # The key arrived, but its address is not published until the link is followed.
    assert index("0x" + fpr)[1].startswith(f"pub:{fpr}:22:")
    assert not any(line.startswith("uid:") for line in index("0x" + fpr))
    assert index("gina@example.org") == ["404"]
    [mail] = smtp_server.wait_for(1)
    assert mail["To"].addresses[0].addr_spec == "gina@example.org"
    assert live.client.post(link_in(mail)).status_code == 200
    lines = index("gina@example.org")
    assert lines[0] == "info:1:1"
    assert lines[2].startswith("uid:Gina Gpg <gina@example.org>:")


def test_recv_keys_by_fingerprint_and_long_key_id(
    live: LiveServer, gnupg: GnuPG, attestation: Attestation
) -> None:
    key = _published(
        attestation,
        TestKey.generate("Rita <rita@example.org>").with_user_id("Rita <rita@secret.example>"),
        "example.org",
    )
    gnupg.run("--recv-keys", key.fingerprint)
    keys = gnupg.public_keys()
    assert keys[key.fingerprint]["uids"] == ["Rita <rita@example.org>"]  # only what is attested
    gnupg.run("--yes", "--delete-keys", key.fingerprint)
    assert gnupg.public_keys() == {}
    gnupg.run("--recv-keys", key.key_id)
    assert key.fingerprint in gnupg.public_keys()


def test_search_keys_by_email_imports_the_chosen_key(
    live: LiveServer, gnupg: GnuPG, attestation: Attestation
) -> None:
    key = _published(attestation, TestKey.generate("Sam Search <sam@example.org>"))
    _published(attestation, TestKey.generate("Someone Else <else@example.org>"))
    # gpg lists the machine-readable index and reads the choice from the command fd.
    r = gnupg.run("--command-fd", "0", "--search-keys", "sam@example.org", input=b"1\n")
    listing = r.stdout.decode() + r.stderr.decode()
    assert "Sam Search <sam@example.org>" in listing
    assert "Someone Else" not in listing
    assert list(gnupg.public_keys()) == [key.fingerprint]
    assert gnupg.public_keys()[key.fingerprint]["uids"] == ["Sam Search <sam@example.org>"]


def test_refresh_keys_picks_up_a_revocation(
    live: LiveServer, gnupg: GnuPG, attestation: Attestation
) -> None:
    key = _published(attestation, TestKey.generate("Rex Revoke <rex@example.org>"))
    other = _published(attestation, TestKey.generate("Olga <olga@example.org>"))
    gnupg.run("--recv-keys", key.fingerprint, other.fingerprint)
    assert gnupg.public_keys()[key.fingerprint]["validity"] != "r"
    # The owner publishes the revocation through the server's own ingest path.
    r = live.client.post("/pks/add", data={"keytext": armor(key.revoked_public())})
    assert r.status_code == 200 and "revoked" in r.text
    gnupg.run("--refresh-keys")
    keys = gnupg.public_keys()
    assert keys[key.fingerprint]["validity"] == "r"
    assert keys[other.fingerprint]["validity"] != "r"


def test_recv_keys_of_a_key_with_nothing_published_imports_nothing(
    live: LiveServer, gnupg: GnuPG, attestation: Attestation
) -> None:
    key = TestKey.generate("Una <una@example.org>")
    upload = attestation.submit.keyring(key.public)
    assert upload.added[0].addresses  # stored, its address unpublished
    # The server answers with the identity-free key; GnuPG takes no key without a user ID.
    r = gnupg.run("--recv-keys", key.fingerprint)
    assert "new key but contains no user ID - skipped" in r.stderr.decode()
    assert gnupg.public_keys() == {}
