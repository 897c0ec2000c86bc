"""Real peers on loopback for federation tests: a second Attester acting as
keys.openpgp.org (VKS), a real Debian ``sks`` acting as keyserver.ubuntu.com (HKP), and
small HTTP servers that misbehave on purpose (slow, dead, lying). Everything binds to
127.0.0.1 and only 127.0.0.1 is ever contacted."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx

from attester.config import Settings, load_settings
from attester.service.attestation import Attestation
from attester.service.core import Core
from attester.store.db import open_database, upgrade
from tests.support import daemons
from tests.support.keys import TestKey
from tests.support.server import LiveServer

SKS = "/usr/sbin/sks"


class Clock:
    """A clock tests move by hand (cache TTLs, refresh schedules)."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ---- a second Attester, acting as keys.openpgp.org


@dataclass
class AttesterPeer:
    live: LiveServer
    attestation: Attestation

    @property
    def url(self) -> str:
        return self.live.base_url

    def publish(self, key: TestKey, data: bytes | None = None) -> None:
        """Store the key with every address verified (as after the mail round trip)."""
        s = self.attestation.imports.keyring(data or key.public, attest_emails=True)
        assert s.rejected == 0

    def upload(self, data: bytes) -> None:
        """Store (or update) a key without verifying anything, as an upload does."""
        s = self.attestation.imports.keyring(data)
        assert s.rejected == 0


@contextmanager
def attester_peer(directory: Path) -> Iterator[AttesterPeer]:
    directory.mkdir(parents=True, exist_ok=True)
    settings = load_settings(
        None,
        database_url=f"sqlite:///{directory / 'peer.db'}",
        mail_url=f"file:{directory / 'outbox'}",
        port=0,
    )
    db = open_database(settings.database_url)
    upgrade(db)
    attestation = Attestation.build(Core(settings, db))
    try:
        with LiveServer.start(settings) as live:
            yield AttesterPeer(live, attestation)
    finally:
        db.dispose()


# ---- a real SKS, acting as keyserver.ubuntu.com


@dataclass
class SKSServer:
    basedir: Path
    hkp_port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.hkp_port}"


def _sks_basedir() -> tuple[Path, int]:
    # A short path: SKS binds a Unix socket below it (at most 108 bytes).
    base = Path(tempfile.mkdtemp(prefix="sks", dir="/tmp"))
    daemons.watch(base)
    for d in ("etc/sks", "var/lib/sks", "var/log/sks", "var/run/sks"):
        (base / d).mkdir(parents=True)
    hkp_port = free_port()
    (base / "etc/sks/sksconf").write_text(
        "hostname: localhost\n"
        "hkp_address: 127.0.0.1\n"
        f"hkp_port: {hkp_port}\n"
        "recon_address: 127.0.0.1\n"
        f"recon_port: {free_port()}\n"
        "disable_mailsync:\n"
        "membership_reload_interval: 1\n"
    )
    (base / "etc/sks/membership").write_text("")  # no peers: SKS contacts nobody
    return base, hkp_port


def sks_build(dumps: list[Path]) -> tuple[Path, int]:
    """A fresh SKS database built from dump files with ``sks build`` (not running)."""
    base, port = _sks_basedir()
    subprocess.run(
        [SKS, "build", *map(str, dumps), "-basedir", str(base), "-n", "10", "-cache", "100"],
        check=True,
        capture_output=True,
        timeout=300,
    )
    return base, port


def sks_dump(base: Path, out: Path) -> list[Path]:
    """``sks dump``: the keys SKS holds, as SKS writes them (while ``sks db`` is stopped)."""
    out.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [SKS, "dump", "100000", str(out), "-basedir", str(base)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    return sorted(out.glob("*.pgp"))


@contextmanager
def sks_serving(base: Path, port: int) -> Iterator[SKSServer]:
    """``sks db`` answering HKP on 127.0.0.1:port until the block ends."""
    log = (base / "db.out").open("wb")
    proc = subprocess.Popen(
        [SKS, "db", "-basedir", str(base)], stdout=log, stderr=subprocess.STDOUT
    )
    server = SKSServer(base, port)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                r = httpx.get(f"{server.url}/pks/lookup?op=stats", timeout=2)
                if r.status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"sks db did not start: {(base / 'db.out').read_text()}")
            time.sleep(0.1)
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@contextmanager
def sks_peer(keyring: bytes, directory: Path) -> Iterator[SKSServer]:
    directory.mkdir(parents=True, exist_ok=True)
    dump = directory / "keydump-0000.pgp"
    dump.write_bytes(keyring)
    base, port = sks_build([dump])
    try:
        with sks_serving(base, port) as server:
            yield server
    finally:
        shutil.rmtree(base, ignore_errors=True)


# ---- upstreams that misbehave on purpose


@dataclass
class StubServer:
    """An HTTP server on loopback answering every GET with ``respond(path)``."""

    url: str
    requests: list[str] = field(default_factory=list)


Respond = Callable[[str], tuple[int, bytes]]


@contextmanager
def stub_server(respond: Respond, delay: float = 0.0) -> Iterator[StubServer]:
    stub = StubServer("")
    stop = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            stub.requests.append(self.path)
            if delay:
                stop.wait(delay)
            status, body = respond(self.path)
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/pgp-keys")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            except OSError:
                pass  # the client gave up (deadline): that is the point of a slow server

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    stub.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield stub
    finally:
        stop.set()
        httpd.shutdown()
        httpd.server_close()
        thread.join(10)


def settings_with(settings: Settings, **update: object) -> Settings:
    """``settings`` with federation settings changed, validated like a configuration file."""
    return load_settings(None, **{**settings.model_dump(), **update})
