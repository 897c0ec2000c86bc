"""A real SKS keyserver (Debian's ``sks`` 1.1.6) on loopback for reconciliation tests.

``build_sks`` makes a database from a dump once (``sks build``, ``cleandb``, ``pbuild``);
``running_sks`` copies it into a temporary base directory and runs ``sks db`` and
``sks recon`` on free 127.0.0.1 ports, with the given partners in its membership file,
gossiping every ~1.2 s or not at all. Both processes are ended when the block exits.

SKS skips membership entries whose address is its own host's, and accepts recon
connections only from membership addresses, so partners live on 127.0.0.2, 127.0.0.3.
"""

from __future__ import annotations

import random
import re
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from attester.openpgp import sks_digest
from tests.support import hashquery

SKS = shutil.which("sks") or "/usr/sbin/sks"


def _run(args: list[str], base: Path) -> None:
    subprocess.run(
        [SKS, *args, "-basedir", str(base)],
        check=False,  # cleandb may segfault on exit after finishing; its log tells
        capture_output=True,
        timeout=120,
        cwd=base,
    )


def build_sks(keys: Sequence[bytes], where: Path) -> Path:
    """A ready SKS database holding ``keys`` (binary certificates), in ``where``."""
    for d in ("etc/sks", "var/lib/sks", "var/log/sks", "var/run/sks", "var/spool/sks"):
        (where / d).mkdir(parents=True, exist_ok=True)
    (where / "etc/sks/sksconf").write_text("hostname: localhost\n")
    dump = where / "dump.pgp"
    dump.write_bytes(b"".join(keys))
    _run(["build", str(dump), "-n", "10", "-cache", "100"], where)
    _run(["cleandb"], where)  # so it announces both filters, yminsky.dedup and .merge
    _run(["pbuild", "-cache", "20", "-ptree_cache", "70"], where)
    dump.unlink()
    pbuild = (where / "var/log/sks/pbuild.log").read_text(errors="replace")
    if f"{len(keys)} hashes processed" not in pbuild:
        raise RuntimeError(f"sks pbuild did not take all {len(keys)} keys:\n{pbuild[-1500:]}")
    return where


@dataclass
class RunningSKS:
    base: Path
    hkp_port: int
    recon_port: int
    client: httpx.Client = field(repr=False)

    host: str = "127.0.0.1"

    @property
    def recon_address(self) -> str:
        return f"{self.host}:{self.recon_port}"

    def digests(self, universe: Sequence[str]) -> set[str]:
        """Which of these digests SKS holds: one hashquery for all of them (SKS keeps no
        live count; its op=stats is computed once a day)."""
        found: set[str] = set()
        wanted = list(universe)
        for i in range(0, len(wanted), 500):
            r = self.client.post("/pks/hashquery", content=hashquery.request(wanted[i : i + 500]))
            assert r.status_code == 200, r.text
            found.update(sks_digest(k) for k in hashquery.response_keys(r.content))
        return found

    def log(self) -> str:
        path = self.base / "var/log/sks/recon.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def recovered(self) -> list[int]:
        """How many hashes each of its sessions found it lacked (its recon.log)."""
        return [int(n) for n in re.findall(r"(\d+) hashes recovered from", self.log())]


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.2)


def sks_free_port(host: str = "127.0.0.1") -> int:
    """A port SKS can listen on. SKS binds without SO_REUSEADDR, so a port the kernel
    handed out for an outgoing connection that now lingers in TIME_WAIT (``bind(0)``
    may return one) makes it exit; ports below the ephemeral range never linger so."""
    rng = random.Random()
    while True:
        port = rng.randint(20000, 30000)
        with socket.socket() as s:
            try:
                s.bind((host, port))
                return port
            except OSError:
                continue


def _serving(client: httpx.Client) -> bool:
    try:
        return client.get("/pks/lookup", params={"op": "stats"}).status_code == 200
    except httpx.TransportError:
        return False


def _listening(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=1).close()
        return True
    except OSError:
        return False


@contextmanager
def running_sks(
    template: Path,
    partners: Sequence[str] = (),
    gossip: bool = False,
    recon_port: int | None = None,
    host: str = "127.0.0.1",
) -> Iterator[RunningSKS]:
    """SKS on a copy of ``template``; ``partners`` are "host port" membership lines."""
    base = Path(tempfile.mkdtemp(prefix="sks", dir="/tmp"))  # short: SKS binds unix sockets
    shutil.copytree(template, base, dirs_exist_ok=True)
    for region in base.glob("var/lib/sks/*/__db.*"):
        region.unlink()  # BerkeleyDB environment regions are rebuilt on open
    hkp_port, recon_port = sks_free_port(host), recon_port or sks_free_port(host)
    # SKS skips membership entries on its own host name's address: another host gets
    # its address as its name.
    (base / "etc/sks/sksconf").write_text(
        f"hostname: {'localhost' if host == '127.0.0.1' else host}\n"
        f"hkp_address: {host}\nhkp_port: {hkp_port}\n"
        f"recon_address: {host}\nrecon_port: {recon_port}\n"
        "disable_mailsync:\ndisable_log_diffs:\nmembership_reload_interval: 1\n"
        + ("gossip_interval: 0.02\n" if gossip else "dontgossip:\n")
    )
    (base / "etc/sks/membership").write_text("".join(f"{p}\n" for p in partners))

    def start(cmd: str) -> subprocess.Popen[bytes]:
        # An exit before its log opens (a failed bind or connect) is told on stderr only.
        with (base / f"{cmd}.stderr").open("wb") as err:
            return subprocess.Popen(
                [SKS, cmd, "-basedir", str(base)],
                cwd=base,
                stdout=subprocess.DEVNULL,
                stderr=err,
                start_new_session=True,
            )

    procs = [start("db")]
    # "sks recon" connects to the db's command socket at once and exits if it is not there yet.
    deadline = time.monotonic() + 60
    while not (base / "var/run/sks/db_com_sock").exists() and procs[0].poll() is None:
        if time.monotonic() > deadline:
            break
        time.sleep(0.05)
    procs.append(start("recon"))
    client = httpx.Client(base_url=f"http://{host}:{hkp_port}", timeout=30, trust_env=False)
    try:
        deadline = time.monotonic() + 60
        while True:
            if _serving(client) and _listening(host, recon_port):
                break
            if any(p.poll() is not None for p in procs) or time.monotonic() > deadline:
                exits = [p.poll() for p in procs]
                logs = "".join(
                    f"--- {f.name}\n{f.read_text(errors='replace')[-1500:]}"
                    for f in sorted([*base.glob("var/log/sks/*.log"), *base.glob("*.stderr")])
                )
                raise RuntimeError(f"sks did not start (db, recon exit: {exits}):\n{logs}")
            time.sleep(0.1)
        yield RunningSKS(base, hkp_port, recon_port, client, host)
    finally:
        client.close()
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(10)
        shutil.rmtree(base, ignore_errors=True)
