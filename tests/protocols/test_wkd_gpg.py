"""WKD against GnuPG (2.2), the reference client: its hash, its import of what we serve,
and the directory its own ``gpg-wks-client --install-key`` builds for the same key.

GnuPG looks up WKD only over https with system CAs, but ``gpg --fetch-keys URL`` imports
over plain http, which exercises our bytes end to end. The advanced URL names the domain
in the path, so it works on ``127.0.0.1``. The direct URL takes the domain from ``Host``:
for that test the key's address is at ``localhost`` and GnuPG fetches
``http://localhost:PORT/...`` — run only where ``localhost`` resolves to 127.0.0.1 alone,
with dirmngr told to use the system resolver (``/etc/hosts``), so nothing but loopback
is ever contacted.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from attester.openpgp._packets import SIGNATURE, USER_ID, RawPacket, split_packets
from attester.openpgp.wkd import wkd_hash
from attester.service.attestation import Attestation
from tests.support import daemons
from tests.support.keys import TestKey
from tests.support.server import LiveServer

WKS_CLIENT = "/usr/lib/gnupg/gpg-wks-client"
W = "/.well-known/openpgpkey"

pytestmark = pytest.mark.skipif(
    shutil.which("gpg") is None or not Path(WKS_CLIENT).exists(),
    reason="GnuPG with gpg-wks-client is not installed",
)


@dataclass
class GnuPG:
    """A throwaway GnuPG home (short path: the agent's socket lives in it)."""

    home: Path

    @property
    def env(self) -> dict[str, str]:
        return {"GNUPGHOME": str(self.home), "PATH": "/usr/bin:/bin"}

    def run(self, *args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            args, input=stdin, env=self.env, check=True, capture_output=True, timeout=60
        )

    def gpg(self, *args: str, stdin: bytes | None = None) -> bytes:
        return self.run("gpg", "--batch", *args, stdin=stdin).stdout

    def user_ids(self) -> list[str]:
        out = self.gpg("--with-colons", "--list-keys").decode()
        return sorted(line.split(":")[9] for line in out.splitlines() if line.startswith("uid:"))


@pytest.fixture
def server(socket_server: LiveServer) -> LiveServer:
    """The session's app on a real socket: GnuPG fetches from it."""
    return socket_server


@pytest.fixture
def gnupg() -> Iterator[GnuPG]:
    home = Path(tempfile.mkdtemp(prefix="g", dir="/tmp"))
    daemons.watch(home)
    home.chmod(0o700)
    g = GnuPG(home)
    try:
        yield g
    finally:
        subprocess.run(["gpgconf", "--kill", "all"], env=g.env, check=False)
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def joe(attestation: Attestation) -> TestKey:
    key = (
        TestKey.generate("Joe Doe <Joe.Doe@Example.ORG>")
        .with_user_id("Joe (work) <joe.doe@example.org>")
        .with_user_id("Joe <jd@example.org>")
        .with_user_id("Joe <joe@other.example>")
    )
    assert attestation.imports.keyring(key.public, attest_emails=True).attested == 3
    return key


@pytest.mark.parametrize(
    "address",
    [
        "Joe.Doe@Example.ORG",
        "joe.doe@example.org",
        "alice+pgp@example.org",
        "Mixed.CASE_under-score@Example.com",
        "x@example.org",
        "0123456789@example.org",
        "Änne@example.org",  # GnuPG lowercases ASCII letters only
        "bjørn@bücher.example",
    ],
)
def test_hash_matches_gpg_wks_client(address: str) -> None:
    out = subprocess.run(
        [WKS_CLIENT, "--print-wkd-hash", address], check=True, capture_output=True, text=True
    ).stdout
    gpg_hash = out.split()[0]
    assert wkd_hash(address.rpartition("@")[0]) == gpg_hash


def test_gpg_fetch_keys_advanced_imports_one_address(
    server: LiveServer, joe: TestKey, gnupg: GnuPG
) -> None:
    url = f"{server.base_url}{W}/example.org/hu/{wkd_hash('jd')}?l=jd"
    gnupg.gpg("--fetch-keys", url)
    assert gnupg.user_ids() == ["Joe <jd@example.org>"]
    # The import really is the whole usable key: gpg can encrypt to it.
    gnupg.gpg("--trust-model", "always", "-r", "jd@example.org", "--encrypt", stdin=b"hi")


def test_gpg_fetch_keys_advanced_with_two_user_ids(
    server: LiveServer, joe: TestKey, gnupg: GnuPG
) -> None:
    gnupg.gpg("--fetch-keys", f"{server.base_url}{W}/example.org/hu/{wkd_hash('joe.doe')}")
    assert gnupg.user_ids() == ["Joe (work) <joe.doe@example.org>", "Joe Doe <Joe.Doe@Example.ORG>"]


def _localhost_is_only_loopback() -> bool:
    try:
        infos = socket.getaddrinfo("localhost", None)
    except OSError:
        return False
    return {info[4][0] for info in infos} == {"127.0.0.1"}


@pytest.mark.skipif(
    not _localhost_is_only_loopback(), reason="localhost does not resolve to 127.0.0.1 alone"
)
def test_gpg_fetch_keys_direct_uses_the_host(
    server: LiveServer, attestation: Attestation, gnupg: GnuPG
) -> None:
    key = TestKey.generate("Lo <lo@localhost>").with_user_id("Lo <lo@example.org>")
    attestation.imports.keyring(key.public, attest_emails=True)
    # dirmngr's own resolver would not read /etc/hosts the same way; the system one does.
    (gnupg.home / "dirmngr.conf").write_text("standard-resolver\n")
    port = server.base_url.rsplit(":", 1)[1]
    gnupg.gpg("--fetch-keys", f"http://localhost:{port}{W}/hu/{wkd_hash('lo')}?l=lo")
    assert gnupg.user_ids() == ["Lo <lo@localhost>"]


def _without_user_ids(packets: list[RawPacket], drop: set[bytes]) -> list[RawPacket]:
    """``packets`` without the user IDs in ``drop`` and the signatures that follow them."""
    out: list[RawPacket] = []
    skipping = False
    for p in packets:
        if p.tag == USER_ID:
            skipping = p.body in drop
        elif p.tag != SIGNATURE:
            skipping = False
        if not skipping:
            out.append(p)
    return out


def test_served_bytes_match_gpg_wks_client_install_key(
    server: LiveServer, joe: TestKey, gnupg: GnuPG, tmp_path: Path
) -> None:
    """GnuPG's reference directory holds the same packets in the same order, with two
    principled differences:

    - framing: GnuPG writes v4 packets with old-format headers, Sequoia (and we) with
      new-format ones; both are valid (RFC 9580 4.2) and parse to the same packets;
    - an address on two user IDs (``Joe Doe <Joe.Doe@Example.ORG>`` and ``Joe (work)
      <joe.doe@example.org>``): ``gpg-wks-client`` picks one user ID, we serve every
      user ID with the address (the draft: "the user ID(s)"). Without the extra user ID
      and its binding signature, the packets are identical.
    """
    gnupg.gpg("--import", stdin=joe.public)
    mboxes = gnupg.gpg("--list-options", "show-only-fpr-mbox", "--list-keys", joe.fingerprint)
    root = tmp_path / "wkd"
    root.mkdir()
    gnupg.run(WKS_CLIENT, "--install-key", "-C", str(root), stdin=mboxes)

    files = sorted(p.relative_to(root).as_posix() for p in root.glob("*/hu/*"))
    assert files == sorted(
        [
            f"example.org/hu/{wkd_hash('joe.doe')}",
            f"example.org/hu/{wkd_hash('jd')}",
            f"other.example/hu/{wkd_hash('joe')}",
        ]
    )
    for name in files:
        domain, _, h = name.split("/")
        reference = split_packets((root / name).read_bytes())
        served = split_packets(server.client.get(f"{W}/{domain}/hu/{h}").content)
        if h != wkd_hash("joe.doe"):
            assert served == reference, name
            continue
        kept = {p.body for p in reference if p.tag == USER_ID}
        extra = {p.body for p in served if p.tag == USER_ID} - kept
        assert len(kept) == 1 and len(extra) == 1
        assert _without_user_ids(served, extra) == reference
    # GnuPG writes an empty policy file; ours is empty too while nothing is configured.
    for domain in ("example.org", "other.example"):
        policy = server.client.get(f"{W}/{domain}/policy")
        assert policy.status_code == 200
        assert policy.content == (root / domain / "policy").read_bytes()
