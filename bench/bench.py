"""The keyserver benchmark behind ``./bench/run`` (issue 11, "Performance at keyserver scale").

Loads the same keys into Attester (SQLite and PostgreSQL), SKS 1.1.6 and nginx (the same
answers as static files: the static-file ceiling), pins the servers to one core and wrk
to another, and prints one Markdown table of req/s, p50, p99 and the ratios to SKS and to
nginx for every lookup case, plus an import table (the Debian keyring, and synthetic keys
generated once and cached) with keys/s, peak RSS and the ratio to ``sks build``.

Servers are measured in turns inside each run (SKS, nginx, Attester on SQLite, Attester on
PostgreSQL, then the next run), so a burst of load from elsewhere on a shared machine
touches every server of a case alike and the ratios stay meaningful; absolute numbers do
not. See docs/performance.md for how to read the table.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import http.client
import itertools
import json
import os
import platform
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
CACHE = BENCH / ".cache"
RESULTS = BENCH / "results"
VENV = ROOT / ".venv"
ATTESTER = VENV / "bin" / "attester"
KEYRING = Path("/usr/share/keyrings/debian-keyring.gpg")
SKS = "/usr/sbin/sks"
NGINX = "/usr/sbin/nginx"
WRK = "/usr/bin/wrk"
GNU_TIME = "/usr/bin/time"
LUA = BENCH / "rotate.lua"
PG_ADMIN = ["psql", "-h", "127.0.0.1", "-p", "5432", "-U", "postgres", "-d", "postgres"]
PG_URL = "postgresql://postgres@127.0.0.1:5432/{name}"
CEILING_VENV = CACHE / "ceiling-venv"


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ---- processes: everything started here is killed at the end, whatever happens


class Processes:
    def __init__(self) -> None:
        self.running: list[subprocess.Popen[bytes]] = []

    def start(
        self,
        argv: Sequence[str],
        logfile: Path,
        cpus: str | None,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
    ) -> subprocess.Popen[bytes]:
        if cpus is not None:
            argv = ["taskset", "-c", cpus, *argv]
        with logfile.open("ab") as out:
            # Own session: stopping it stops its children too (nginx and uvicorn workers).
            p = subprocess.Popen(
                list(argv),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                cwd=cwd,
                start_new_session=True,
            )
        self.running.append(p)
        return p

    def stop(self, p: subprocess.Popen[bytes]) -> None:
        if p in self.running:
            self.running.remove(p)
        if p.poll() is None:
            for sig, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, 5)):
                try:
                    os.killpg(p.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    p.wait(wait)
                    break
                except subprocess.TimeoutExpired:
                    continue
        # children left in the group after the leader exited
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(p.pid, signal.SIGKILL)

    def stop_all(self) -> None:
        for p in list(reversed(self.running)):
            self.stop(p)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(port: int, path: str, proc: subprocess.Popen[bytes], logfile: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {logfile.read_text(errors='replace')[-2000:]}")
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            c.request("GET", path)
            r = c.getresponse()
            r.read()
            c.close()
            if r.status < 500:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"server on port {port} did not answer: {logfile.read_text()[-2000:]}")


# ---- keys: what the benchmark rotates over
# Read here from the raw packets, not with attester.openpgp: the request lists must not
# depend on the code being measured (a parser or WKD bug would quietly change them).


@dataclass
class KeyringInfo:
    certificates: int
    fingerprints: list[str]
    emails: list[str]


_EMAIL = re.compile(r"<([^<>\s@]+@[^<>\s@]+\.[^<>\s@]+)>")
_BARE_EMAIL = re.compile(r"^([^<>\s@]+@[^<>\s@]+\.[^<>\s@]+)$")


def packets(data: bytes) -> Iterator[tuple[int, bytes, int]]:
    """(tag, body, offset of the header) of each OpenPGP packet of a binary keyring
    (RFC 9580 §4.2)."""
    pos, end = 0, len(data)
    while pos < end:
        start = pos
        b = data[pos]
        pos += 1
        if not b & 0x80:
            raise ValueError(f"not an OpenPGP packet at byte {start}")
        if b & 0x40:
            tag = b & 0x3F
            first = data[pos]
            pos += 1
            if first < 192:
                n = first
            elif first < 224:
                n = ((first - 192) << 8) + data[pos] + 192
                pos += 1
            elif first == 255:
                n = int.from_bytes(data[pos : pos + 4], "big")
                pos += 4
            else:
                raise ValueError("partial body lengths do not occur in keyrings")
        else:
            tag = (b >> 2) & 0x0F
            kind = b & 3
            if kind == 3:
                n = end - pos
            else:
                width = 1 << kind
                n = int.from_bytes(data[pos : pos + width], "big")
                pos += width
        yield tag, data[pos : pos + n], start
        pos += n


def read_keyring(data: bytes) -> KeyringInfo:
    fprs: list[str] = []
    emails: dict[str, None] = {}
    for tag, body, _ in packets(data):
        if tag == 6:
            if body[0] == 4:
                h = hashlib.sha1(b"\x99" + len(body).to_bytes(2, "big") + body)
                fprs.append(h.hexdigest().upper())
            elif body[0] == 6:
                h = hashlib.sha256(b"\x9b" + len(body).to_bytes(4, "big") + body)
                fprs.append(h.hexdigest().upper())
            else:
                fprs.append("")
        elif tag == 13:
            uid = body.decode("utf-8", "replace").strip()
            m = _EMAIL.search(uid) or _BARE_EMAIL.match(uid)
            if m:
                emails[m.group(1).lower()] = None
    return KeyringInfo(len(fprs), [f for f in fprs if f], list(emails))


_ZB32 = "ybndrfg8ejkmcpqxot1uwisza345h769"


def wkd_hash(local: str) -> str:
    """SHA-1 of the local part (ASCII letters lowercased), z-base-32 (the WKD draft)."""
    lowered = "".join(c.lower() if "A" <= c <= "Z" else c for c in local)
    bits = int.from_bytes(hashlib.sha1(lowered.encode()).digest(), "big")
    return "".join(_ZB32[(bits >> (155 - 5 * i)) & 31] for i in range(32))


# ---- lookup cases


@dataclass(frozen=True)
class Case:
    key: str
    title: str
    sks: bool  # SKS answers this very request
    sks_peer: str  # the SKS case its ratio is taken to
    target: float | None  # x SKS at 16 connections
    by_email: bool
    path: Callable[[str], str]


def _q(s: str) -> str:
    return urllib.parse.quote(s, safe="")


CASES = [
    Case("root", "`GET /` (framework ceiling)", False, "hkp-get", None, False, lambda _: "/"),
    Case(
        "hkp-get",
        "HKP `op=get&options=mr` by fingerprint",
        True,
        "hkp-get",
        10,
        False,
        lambda f: f"/pks/lookup?op=get&options=mr&search=0x{f}",
    ),
    Case(
        "hkp-index",
        "HKP `op=index&options=mr` by email",
        True,
        "hkp-index",
        2,
        True,
        lambda e: f"/pks/lookup?op=index&options=mr&search={_q(e)}",
    ),
    Case(
        "pub",
        "FlowCrypt `GET /pub/{email}`",
        False,
        "hkp-get",
        10,
        True,
        lambda e: "/pub/" + urllib.parse.quote(e, safe="@+"),
    ),
    Case(
        "vks-fpr",
        "VKS `by-fingerprint`",
        False,
        "hkp-get",
        10,
        False,
        lambda f: f"/vks/v1/by-fingerprint/{f}",
    ),
    Case(
        "wkd",
        "WKD advanced `hu/{hash}`",
        False,
        "hkp-get",
        None,
        True,
        # An internationalised domain goes percent-encoded (UTF-8); the server maps it to
        # its IDNA form as it stores addresses.
        lambda e: "/.well-known/openpgpkey/{d}/hu/{h}?l={l}".format(
            d=_q(e.rsplit("@", 1)[1]), h=wkd_hash(e.rsplit("@", 1)[0]), l=_q(e.rsplit("@", 1)[0])
        ),
    ),
]
CASE = {c.key: c for c in CASES}
P99_TARGET_MS = 10.0
HIGH_CONNS = 32


# ---- servers


@dataclass
class Server:
    name: str  # shown in the table
    kind: str  # attester | sks | nginx | ceiling
    port: int
    proc: subprocess.Popen[bytes] | None = None


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.quick: bool = args.quick
        self.runs: int = args.runs or (1 if self.quick else 3)
        self.duration: int = args.duration or (5 if self.quick else 10)
        self.backends: list[str] = args.backends or (
            ["sqlite"] if self.quick else ["sqlite", "postgresql"]
        )
        self.procs = Processes()
        self.tmp = Path(tempfile.mkdtemp(prefix="attester-bench-", dir="/tmp"))
        self.pg_databases: list[str] = []
        self.pg_counter = itertools.count()
        ncpu = os.cpu_count() or 1
        if ncpu >= 2:
            self.server_cpus: str | None = args.server_cpus or "0"
            self.wrk_cpus: str | None = args.wrk_cpus or str(ncpu - 1)
        else:
            self.server_cpus = self.wrk_cpus = None
        self.workers = len(_cpu_list(self.server_cpus)) if self.server_cpus else 1
        help_text = subprocess.run(
            [str(ATTESTER), "serve", "--help"], capture_output=True, text=True
        ).stdout
        self.workers_flag = "--workers" in help_text
        self.results: dict[str, Any] = {
            "mode": "quick" if self.quick else "full",
            "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "machine": machine(),
            "commit": git_commit(),
            "versions": versions(),
            "settings": {
                "runs": self.runs,
                "duration_s": self.duration,
                "server_cpus": self.server_cpus,
                "wrk_cpus": self.wrk_cpus,
                "attester_workers": self.workers if self.workers_flag else None,
                "backends": self.backends,
            },
            "load_before": os.getloadavg(),
            "imports": [],
            "lookups": [],
            "ceiling": [],
        }

    # -- helpers

    def env(self, database_url: str, port: int | None = None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ATTESTER_")}
        env.update(
            ATTESTER_DATABASE_URL=database_url,
            ATTESTER_HOST="127.0.0.1",
            ATTESTER_MAIL_URL=f"file://{self.tmp / 'outbox'}",
            # uvicorn's access log off, as a busy keyserver would run it (it costs ~10%).
            ATTESTER_LOG_LEVEL="warning",
        )
        if port is not None:
            env["ATTESTER_PORT"] = str(port)
        return env

    def fresh_database(self, backend: str, label: str) -> str:
        if backend == "sqlite":
            path = self.tmp / f"{label}.db"
            for suffix in ("", "-wal", "-shm"):
                Path(str(path) + suffix).unlink(missing_ok=True)
            return f"sqlite:///{path}"
        # Short names (PostgreSQL cuts identifiers at 63 bytes): the pid and a counter.
        name = f"attester_bench_{os.getpid()}_{next(self.pg_counter)}"
        subprocess.run(
            [*PG_ADMIN, "-q", "-c", f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'],
            check=True,
            capture_output=True,
        )
        subprocess.run(
            [*PG_ADMIN, "-q", "-c", f'CREATE DATABASE "{name}"'], check=True, capture_output=True
        )
        self.pg_databases.append(name)
        return PG_URL.format(name=name)

    def drop_databases(self, only: str | None = None) -> None:
        for name in [n for n in self.pg_databases if only in (None, n)]:
            subprocess.run(
                [*PG_ADMIN, "-q", "-c", f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'],
                capture_output=True,
            )
            self.pg_databases.remove(name)

    def timed(self, argv: Sequence[str], env: dict[str, str] | None, label: str) -> dict[str, Any]:
        """Wall time and peak RSS (``/usr/bin/time -v``) of a command that must succeed."""
        stats = self.tmp / f"{label}.time"
        out = self.tmp / f"{label}.log"
        started = time.monotonic()
        with out.open("wb") as f:
            rc = subprocess.run(
                [GNU_TIME, "-v", "-o", str(stats), *argv], stdout=f, stderr=f, env=env
            ).returncode
        seconds = time.monotonic() - started
        if rc != 0:
            raise RuntimeError(f"{label} failed ({rc}): {out.read_text(errors='replace')[-3000:]}")
        text = stats.read_text()
        rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", text).group(1))  # type: ignore[union-attr]
        user = float(re.search(r"User time \(seconds\): ([\d.]+)", text).group(1))  # type: ignore[union-attr]
        system = float(re.search(r"System time \(seconds\): ([\d.]+)", text).group(1))  # type: ignore[union-attr]
        return {
            "seconds": seconds,
            "rss_mib": rss / 1024,
            "cpu_seconds": user + system,
            "log": str(out),
        }

    # -- imports

    def sks_basedir(self, label: str) -> tuple[Path, int]:
        # Short path: SKS binds a Unix socket below it (at most 108 bytes).
        base = Path(tempfile.mkdtemp(prefix="sks", dir=self.tmp))
        shutil.rmtree(base)
        for d in ("etc/sks", "var/lib/sks", "var/log/sks", "var/run/sks"):
            (base / d).mkdir(parents=True)
        port = free_port()
        (base / "etc/sks/sksconf").write_text(
            "hostname: localhost\n"
            "hkp_address: 127.0.0.1\n"
            f"hkp_port: {port}\n"
            "recon_address: 127.0.0.1\n"
            f"recon_port: {free_port()}\n"
            "disable_mailsync:\n"
        )
        (base / "etc/sks/membership").write_text("")  # no peers: SKS contacts nobody
        return base, port

    def sks_build(self, dump: Path, label: str) -> tuple[dict[str, Any], Path, int]:
        base, port = self.sks_basedir(label)
        r = self.timed(
            [SKS, "build", str(dump), "-basedir", str(base), "-n", "10", "-cache", "100"],
            None,
            label,
        )
        return r, base, port

    def attester_import(
        self, dump: Path, backend: str, attest: bool, label: str
    ) -> tuple[dict[str, Any], str]:
        url = self.fresh_database(backend, label)
        argv = [str(ATTESTER), "import", *(["--attest-emails"] if attest else []), str(dump)]
        r = self.timed(argv, self.env(url), label)
        return r, url

    def run_imports(
        self, dump: Path, name: str, keys: int, runs: int, modes: list[str]
    ) -> dict[str, str]:
        """``sks build`` and ``attester import`` of one dump, in turns, ``runs`` times;
        returns the database of the last ``--attest-emails`` import per backend."""
        samples: dict[tuple[str, str], list[dict[str, Any]]] = {}
        kept: dict[str, str] = {}
        slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
        for run in range(runs):
            # sks build of the keyring takes well under a second, where one stall of the
            # shared machine would move the ratio: in a 1-run (quick) pass it runs 3 times.
            for again in range(3 if runs == 1 and keys < 10_000 else 1):
                r, base, _ = self.sks_build(dump, f"sks-build-{slug}-{run}-{again}")
                samples.setdefault(("sks build", ""), []).append(r)
                shutil.rmtree(base, ignore_errors=True)
                log(f"{name}: sks build {keys / r['seconds']:.0f} keys/s")
            for mode in modes:
                for backend in self.backends:
                    label = f"import-{slug}-{mode}-{backend}-{run}"
                    r, url = self.attester_import(dump, backend, mode == "attest", label)
                    samples.setdefault((mode, backend), []).append(r)
                    log(
                        f"{name}: attester import {mode} {backend} {keys / r['seconds']:.0f} keys/s"
                    )
                    if mode == "attest" and run == runs - 1:
                        kept[backend] = url
                    elif backend == "sqlite":
                        Path(url.removeprefix("sqlite:///")).unlink(missing_ok=True)
                    else:
                        self.drop_databases(only=url.rsplit("/", 1)[1])
        for (mode, backend), rs in samples.items():
            self.results["imports"].append(
                {
                    "input": name,
                    "keys": keys,
                    "tool": "sks build"
                    if mode == "sks build"
                    else "attester import" + (" --attest-emails" if mode == "attest" else ""),
                    "mode": mode,
                    "backend": backend,
                    "runs": len(rs),
                    "seconds": statistics.median(r["seconds"] for r in rs),
                    "cpu_seconds": statistics.median(r["cpu_seconds"] for r in rs),
                    "rss_mib": max(r["rss_mib"] for r in rs),
                }
            )
        return kept

    # -- servers

    def start_attester(self, backend: str, url: str) -> Server:
        port = free_port()
        logfile = self.tmp / f"serve-{backend}.log"
        argv = [str(ATTESTER), "serve"]
        if self.workers_flag:
            argv += ["--workers", str(self.workers)]
        p = self.procs.start(argv, logfile, self.server_cpus, env=self.env(url, port))
        wait_http(port, "/", p, logfile)
        name = {"sqlite": "Attester (SQLite)", "postgresql": "Attester (PostgreSQL)"}[backend]
        return Server(name, "attester", port, p)

    def start_sks(self, base: Path, port: int) -> Server:
        logfile = base / "db.out"
        p = self.procs.start([SKS, "db", "-basedir", str(base)], logfile, self.server_cpus)
        wait_http(port, "/pks/lookup?op=stats", p, logfile)
        return Server("SKS 1.1.6", "sks", port, p)

    def start_nginx(self, www: Path) -> Server:
        port = free_port()
        conf = self.tmp / "nginx.conf"
        user = "user root;" if os.geteuid() == 0 else ""
        temp = self.tmp / "nginx-temp"
        temp.mkdir(exist_ok=True)
        conf.write_text(
            f"""{user}
worker_processes 1;
daemon off;
pid {self.tmp}/nginx.pid;
error_log {self.tmp}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  sendfile on;
  tcp_nopush on;
  tcp_nodelay on;
  keepalive_timeout 75;
  keepalive_requests 10000000;
  client_body_temp_path {temp}/body;
  proxy_temp_path {temp}/proxy;
  fastcgi_temp_path {temp}/fastcgi;
  uwsgi_temp_path {temp}/uwsgi;
  scgi_temp_path {temp}/scgi;
  server {{
    listen 127.0.0.1:{port};
    root {www};
    default_type application/octet-stream;
    # HKP: the file named after op and search as sent (still percent-encoded)
    location = /pks/lookup {{
      default_type application/pgp-keys;
      try_files /hkp/$arg_op/$arg_search =404;
    }}
    location /pub/ {{ default_type application/pgp-keys; }}
    location /vks/ {{ default_type application/pgp-keys; }}
    location = / {{ default_type application/json; try_files /root.json =404; }}
  }}
}}
"""
        )
        logfile = self.tmp / "nginx.out"
        p = self.procs.start(
            [NGINX, "-c", str(conf), "-p", str(self.tmp), "-e", f"{self.tmp}/nginx-error.log"],
            logfile,
            self.server_cpus,
        )
        wait_http(port, "/", p, logfile)
        return Server(f"nginx {nginx_version()} (static files)", "nginx", port, p)

    # -- lookups

    def fetch_all(self, port: int, paths: list[str]) -> dict[str, tuple[int, bytes]]:
        def worker(chunk: list[str]) -> dict[str, tuple[int, bytes]]:
            out = {}
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            for p in chunk:
                c.request("GET", p)
                r = c.getresponse()
                out[p] = (r.status, r.read())
            c.close()
            return out

        n = 4
        chunks = [paths[i::n] for i in range(n)]
        merged: dict[str, tuple[int, bytes]] = {}
        with ThreadPoolExecutor(n) as pool:
            for part in pool.map(worker, chunks):
                merged.update(part)
        return merged

    def nginx_file(self, www: Path, path: str) -> Path:
        parsed = urllib.parse.urlsplit(path)
        if parsed.path == "/pks/lookup":
            q = dict(p.split("=", 1) for p in parsed.query.split("&"))
            return www / "hkp" / q["op"] / q["search"]
        if parsed.path == "/":
            return www / "root.json"
        return www / urllib.parse.unquote(parsed.path).lstrip("/")

    def wrk(self, server: Server, paths_file: Path, conns: int) -> dict[str, Any]:
        argv = [
            WRK,
            "-t1",
            f"-c{conns}",
            f"-d{self.duration}s",
            "--timeout",
            "10s",
            "-s",
            str(LUA),
            f"http://127.0.0.1:{server.port}",
            "--",
            str(paths_file),
        ]
        if self.wrk_cpus is not None:
            argv = ["taskset", "-c", self.wrk_cpus, *argv]
        out = subprocess.run(argv, capture_output=True, text=True, timeout=self.duration + 60)
        m = re.search(r"BENCHJSON (\{.*\})", out.stdout)
        if not m:
            raise RuntimeError(f"wrk printed no result: {out.stdout}{out.stderr}")
        r = json.loads(m.group(1))
        r["rps"] = r["requests"] / (r["duration_us"] / 1e6)
        r["errors"] = r["connect"] + r["read"] + r["write"] + r["status"] + r["timeout"]
        return r

    def prepare_paths(
        self,
        cases: list[Case],
        info: KeyringInfo,
        attesters: list[Server],
        sks: Server | None,
        www: Path,
    ) -> dict[str, Path]:
        """For each case, the request paths every server answers with 200 (Attester on the
        first backend decides what exists; SKS must have it too where it is measured), and
        nginx's files with Attester's answers."""
        rng = random.Random(905)
        fprs, emails = list(info.fingerprints), list(info.emails)
        rng.shuffle(fprs)
        rng.shuffle(emails)
        if self.args.sample:
            fprs, emails = fprs[: self.args.sample], emails[: self.args.sample]
        files: dict[str, Path] = {}
        for case in cases:
            paths = [case.path(x) for x in (emails if case.by_email else fprs)]
            paths = list(dict.fromkeys(paths))
            answers = self.fetch_all(attesters[0].port, paths)
            ok = [p for p in paths if answers[p][0] == 200]
            for other in attesters[1:]:
                theirs = self.fetch_all(other.port, ok)
                ok = [p for p in ok if theirs[p][0] == 200]
            if case.sks and sks is not None:
                theirs = self.fetch_all(sks.port, ok)
                ok = [p for p in ok if theirs[p][0] == 200]
            if not ok:
                raise RuntimeError(f"no request of case {case.key} is answered by every server")
            for p in ok:
                target = self.nginx_file(www, p)
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(answers[p][1])
            sizes = sorted(len(answers[p][1]) for p in ok)
            f = self.tmp / f"paths-{case.key}.txt"
            f.write_text("\n".join(ok) + "\n")
            files[case.key] = f
            self.results.setdefault("paths", {})[case.key] = {
                "count": len(ok),
                "of": len(paths),
                "median_bytes": sizes[len(sizes) // 2],
            }
            log(f"{case.key}: {len(ok)} of {len(paths)} requests answered by every server")
        return files

    def measure(
        self, plan: list[tuple[str, int]], servers: dict[str, list[Server]], files: dict[str, Path]
    ) -> None:
        for key, conns in plan:
            case = CASE[key]
            samples: dict[str, list[dict[str, Any]]] = {}
            for run in range(self.runs):
                for server in servers[key]:
                    r = self.wrk(server, files[key], conns)
                    samples.setdefault(server.name, []).append(r)
                    log(
                        f"{key} c{conns} run {run + 1}/{self.runs} {server.name}: "
                        f"{r['rps']:.0f} req/s p99 {r['p99_us'] / 1000:.1f} ms"
                    )
            for server in servers[key]:
                rs = samples[server.name]
                self.results["lookups"].append(
                    {
                        "case": key,
                        "title": case.title,
                        "conns": conns,
                        "server": server.name,
                        "kind": server.kind,
                        "runs": len(rs),
                        "rps": statistics.median(r["rps"] for r in rs),
                        "p50_ms": statistics.median(r["p50_us"] for r in rs) / 1000,
                        "p99_ms": statistics.median(r["p99_us"] for r in rs) / 1000,
                        "errors": sum(r["errors"] for r in rs),
                        "bytes_per_request": statistics.median(
                            r["bytes"] / max(r["requests"], 1) for r in rs
                        ),
                        "samples_rps": [round(r["rps"], 1) for r in rs],
                    }
                )

    # -- serving-stack ceiling

    def ceiling(self) -> None:
        granian = CEILING_VENV / "bin" / "granian"
        if not (CEILING_VENV / "bin" / "uvloop-installed").exists():
            # Granian is not a dependency of Attester: it lives in a venv of its own.
            log("installing Granian into bench/.cache/ceiling-venv (PyPI)")
            subprocess.run([sys.executable, "-m", "venv", str(CEILING_VENV)], check=True)
            subprocess.run(
                [
                    str(CEILING_VENV / "bin/pip"),
                    "install",
                    "-q",
                    "--disable-pip-version-check",
                    "granian",
                    "uvloop",
                ],
                check=True,
            )
            (CEILING_VENV / "bin" / "uvloop-installed").touch()
        uvicorn = VENV / "bin" / "uvicorn"
        common = ["--host", "127.0.0.1", "--log-level", "warning", "--no-access-log"]
        stacks = [
            (
                "raw ASGI on uvicorn (httptools, uvloop)",
                lambda port: [
                    str(uvicorn),
                    "asgi_ceiling:app",
                    "--http",
                    "httptools",
                    "--loop",
                    "uvloop",
                    "--port",
                    str(port),
                    *common,
                ],
            ),
            (
                "raw ASGI on Granian (1 worker, 1 thread)",
                lambda port: [
                    str(granian),
                    "--interface",
                    "asgi",
                    "--workers",
                    "1",
                    "--runtime-threads",
                    "1",
                    "--loop",
                    "uvloop",
                    "--http",
                    "1",
                    "--no-ws",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(port),
                    "--log-level",
                    "warning",
                    "--no-access-log",
                    "asgi_ceiling:app",
                ],
            ),
            (
                "raw RSGI on Granian (1 worker, 1 thread)",
                lambda port: [
                    str(granian),
                    "--interface",
                    "rsgi",
                    "--workers",
                    "1",
                    "--runtime-threads",
                    "1",
                    "--http",
                    "1",
                    "--no-ws",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(port),
                    "--log-level",
                    "warning",
                    "--no-access-log",
                    "asgi_ceiling:rsgi_app",
                ],
            ),
            (
                "Starlette route + CORS middleware on uvicorn",
                lambda port: [
                    str(uvicorn),
                    "asgi_ceiling:starlette_app",
                    "--http",
                    "httptools",
                    "--loop",
                    "uvloop",
                    "--port",
                    str(port),
                    *common,
                ],
            ),
        ]
        servers = []
        for name, argv in stacks:
            port = free_port()
            logfile = self.tmp / f"ceiling-{port}.log"
            p = self.procs.start(argv(port), logfile, self.server_cpus, cwd=BENCH)
            wait_http(port, "/", p, logfile)
            servers.append(Server(name, "ceiling", port, p))
        paths = self.tmp / "paths-ceiling.txt"
        paths.write_text("/pks/lookup?op=get&options=mr&search=0x0123\n")
        samples: dict[str, list[dict[str, Any]]] = {}
        for run in range(self.runs):
            for s in servers:
                r = self.wrk(s, paths, 16)
                samples.setdefault(s.name, []).append(r)
                log(f"ceiling run {run + 1}/{self.runs} {s.name}: {r['rps']:.0f} req/s")
        for s in servers:
            rs = samples[s.name]
            self.results["ceiling"].append(
                {
                    "server": s.name,
                    "conns": 16,
                    "rps": statistics.median(r["rps"] for r in rs),
                    "p50_ms": statistics.median(r["p50_us"] for r in rs) / 1000,
                    "p99_ms": statistics.median(r["p99_us"] for r in rs) / 1000,
                    "errors": sum(r["errors"] for r in rs),
                    "samples_rps": [round(r["rps"], 1) for r in rs],
                }
            )
            assert s.proc is not None
            self.procs.stop(s.proc)

    # -- the whole run

    def run(self) -> None:
        data = KEYRING.read_bytes()
        info = read_keyring(data)
        if self.args.keys:
            data, info = cut_keyring(data, self.args.keys)
        keyring = self.tmp / "debian-keyring.pgp"
        keyring.write_bytes(data)
        log(f"keyring: {info.certificates} certificates, {len(info.emails)} addresses")
        self.results["keyring"] = {
            "certificates": info.certificates,
            "addresses": len(info.emails),
            "bytes": len(data),
        }

        # Imports of the keyring: also what the lookups below are served from.
        modes = ["attest"] if self.quick else ["plain", "attest"]
        served = self.run_imports(keyring, "Debian keyring", info.certificates, self.runs, modes)
        _, sks_base, sks_port = self.sks_build(keyring, "sks-build-serve")

        # Lookups.
        attesters = [self.start_attester(b, served[b]) for b in self.backends]
        sks = self.start_sks(sks_base, sks_port)
        www = self.tmp / "www"
        www.mkdir()
        if self.quick:
            plan = [("hkp-get", 16), ("hkp-index", 16), ("pub", 16), ("hkp-get", HIGH_CONNS)]
        else:
            plan = [("root", 16)] + [
                (c.key, n) for c in CASES if c.key != "root" for n in (16, HIGH_CONNS)
            ]
        if self.args.cases:
            plan = [(k, n) for k, n in plan if k in self.args.cases]
        cases = [CASE[k] for k in dict.fromkeys(k for k, _ in plan)]
        files = self.prepare_paths(cases, info, attesters, sks, www)
        nginx = self.start_nginx(www)
        servers = {c.key: ([sks] if c.sks else []) + [nginx, *attesters] for c in cases}
        self.measure(plan, servers, files)
        for s in [*attesters, sks, nginx]:
            assert s.proc is not None
            self.procs.stop(s.proc)
        self.drop_databases()

        if not self.quick and not self.args.no_ceiling:
            try:
                self.ceiling()
            except (RuntimeError, subprocess.CalledProcessError) as e:
                log(f"serving-stack ceiling skipped: {e}")

        # Synthetic keys: generated once, cached.
        if not self.quick and self.args.synthetic > 0:
            dump = synthetic_dump(self.args.synthetic)
            n = read_keyring(dump.read_bytes()).certificates
            synth_modes = ["plain", "attest"] if self.args.synthetic_attest else ["plain"]
            self.run_imports(
                dump, f"{n:,} synthetic keys", n, self.args.synthetic_runs, synth_modes
            )
            self.drop_databases()
        self.results["load_after"] = os.getloadavg()

    def cleanup(self) -> None:
        self.procs.stop_all()
        self.drop_databases()
        if not self.args.keep:
            shutil.rmtree(self.tmp, ignore_errors=True)


def _cpu_list(spec: str) -> list[int]:
    out: list[int] = []
    for part in spec.split(","):
        if "-" in part:
            a, b = part.split("-")
            out += range(int(a), int(b) + 1)
        elif part:
            out.append(int(part))
    return out


def cut_keyring(data: bytes, n: int) -> tuple[bytes, KeyringInfo]:
    """The first ``n`` certificates (``--keys``: a smaller run for trying the harness)."""
    starts = [offset for tag, _, offset in packets(data) if tag == 6]
    cut = data[: starts[n]] if n < len(starts) else data
    return cut, read_keyring(cut)


def synthetic_dump(count: int) -> Path:
    path = CACHE / f"synthetic-{count}.pgp"
    if not path.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        log(f"generating {count} synthetic certificates once (cached in {path})")
        subprocess.run(
            [
                str(VENV / "bin/python"),
                "-W",
                "ignore",
                str(BENCH / "synthetic.py"),
                str(count),
                str(path),
            ],
            check=True,
        )
    return path


# ---- context for the table


def machine() -> dict[str, Any]:
    model = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": model, "cores": os.cpu_count(), "kernel": platform.release()}


def git_commit() -> str:
    r = subprocess.run(
        ["git", "-C", str(ROOT), "describe", "--always", "--dirty"], capture_output=True, text=True
    )
    return r.stdout.strip()


def nginx_version() -> str:
    r = subprocess.run([NGINX, "-v"], capture_output=True, text=True)
    m = re.search(r"nginx/([\d.]+)", r.stderr)
    return m.group(1) if m else "?"


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version(), "nginx": nginx_version()}
    for pkg in (
        "uvicorn",
        "starlette",
        "sqlalchemy",
        "pysequoia",
        "psycopg",
        "uvloop",
        "httptools",
    ):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "-"
    r = subprocess.run([WRK, "-v"], capture_output=True, text=True)
    m = re.search(r"wrk (\S+)", r.stdout + r.stderr)
    out["wrk"] = m.group(1) if m else "?"
    return out


# ---- the table


def fmt_rps(x: float) -> str:
    return f"{x:,.0f}"


def fmt_ms(x: float) -> str:
    return f"{x:.1f}" if x < 100 else f"{x:,.0f}"


def fmt_ratio(x: float | None) -> str:
    if x is None:
        return "–"
    if x < 0.1:
        return f"{x:.3f}×"
    return f"{x:.2f}×" if x < 10 else f"{x:.1f}×"


def render(results: dict[str, Any]) -> str:
    s = results["settings"]
    m = results["machine"]
    v = results["versions"]
    out = [
        f"# Attester benchmark ({results['mode']} run)",
        "",
        f"- Date: {results['date']}; Attester `{results['commit']}`",
        f"- Machine: {m['cpu']}, {m['cores']} cores; load average before the run "
        f"{results['load_before'][0]:.2f} (a shared machine: compare ratios, not absolute numbers)",
        f"- Servers pinned to CPU {s['server_cpus']}, `wrk -t1` on CPU {s['wrk_cpus']}; "
        f"{s['runs']} run(s) of {s['duration_s']} s per cell, median"
        + (
            f"; Attester workers: {s['attester_workers']}"
            if s["attester_workers"]
            else "; Attester: one process (`attester serve` has no `--workers` yet)"
        ),
        f"- Keys: Debian keyring, {results['keyring']['certificates']} certificates; "
        "requests rotate "
        "over every key (by fingerprint) or every attested address (by email): "
        + ", ".join(f"{k} {p['count']}" for k, p in results.get("paths", {}).items()),
        f"- Versions: Python {v['python']}, uvicorn {v['uvicorn']}, Starlette {v['starlette']}, "
        f"SQLAlchemy {v['sqlalchemy']}, pysequoia {v['pysequoia']}, SKS 1.1.6, nginx {v['nginx']}, "
        f"wrk {v['wrk']}",
        "",
        "## Lookups",
        "",
        "| case | conns | server | req/s | p50 ms | p99 ms | × SKS | × nginx | KB/answer "
        "| errors | target |",
        "|---|--:|---|--:|--:|--:|--:|--:|--:|--:|---|",
    ]
    rows = results["lookups"]

    def find(case: str, conns: int, kind: str) -> dict[str, Any] | None:
        return next(
            (r for r in rows if r["case"] == case and r["conns"] == conns and r["kind"] == kind),
            None,
        )

    last = None
    for r in rows:
        case = CASE[r["case"]]
        sks = find(case.sks_peer, r["conns"], "sks")
        nginx = find(r["case"], r["conns"], "nginx")
        x_sks = r["rps"] / sks["rps"] if sks else None
        x_nginx = r["rps"] / nginx["rps"] if nginx else None
        target = ""
        if r["kind"] == "attester":
            if r["conns"] >= HIGH_CONNS:
                ok = r["p99_ms"] < P99_TARGET_MS
                target = f"p99 < {P99_TARGET_MS:.0f} ms: {'met' if ok else 'not met'}"
            elif case.target is not None and x_sks is not None:
                peer = "`op=get`" if case.sks_peer == "hkp-get" else "`op=index`"
                ok = x_sks >= case.target
                target = f"≥ {case.target:g}× SKS {peer}: {'met' if ok else 'not met'}"
        if r["case"] == "root" and r["kind"] == "attester":
            target = "(framework ceiling)"
        label = (case.title, r["conns"])
        shown = f"{case.title}" if label != last else ""
        conns = str(r["conns"]) if label != last else ""
        last = label
        peer_note = "" if case.sks or r["kind"] == "sks" or sks is None else "ᵍ"
        out.append(
            f"| {shown} | {conns} | {r['server']} | {fmt_rps(r['rps'])} | {fmt_ms(r['p50_ms'])} | "
            f"{fmt_ms(r['p99_ms'])} | {fmt_ratio(x_sks)}{peer_note if x_sks else ''} | "
            f"{fmt_ratio(x_nginx)} | {r['bytes_per_request'] / 1024:.1f} | {r['errors']} "
            f"| {target} |"
        )
    out += [
        "",
        "ᵍ: SKS does not speak this protocol; the ratio is to SKS `op=get` by fingerprint "
        "at the same connection count. KB/answer includes headers.",
    ]
    if results["ceiling"]:
        get16 = find("hkp-get", 16, "sks")
        out += [
            "",
            "## Serving stack ceiling (a fixed 4 KiB answer, one core, 16 connections)",
            "",
            "| server | req/s | p50 ms | p99 ms | × SKS `op=get` |",
            "|---|--:|--:|--:|--:|",
        ]
        for r in results["ceiling"]:
            x = r["rps"] / get16["rps"] if get16 else None
            out.append(
                f"| {r['server']} | {fmt_rps(r['rps'])} | {fmt_ms(r['p50_ms'])} | "
                f"{fmt_ms(r['p99_ms'])} | {fmt_ratio(x)} |"
            )
    out += [
        "",
        "## Imports",
        "",
        "| input | tool | database | keys | s | keys/s | CPU s | peak RSS MiB | × sks build "
        "| target |",
        "|---|---|---|--:|--:|--:|--:|--:|--:|---|",
    ]
    for r in results["imports"]:
        sks = next(
            (
                x
                for x in results["imports"]
                if x["input"] == r["input"] and x["mode"] == "sks build"
            ),
            None,
        )
        rate = r["keys"] / r["seconds"]
        x = rate / (sks["keys"] / sks["seconds"]) if sks else None
        target = ""
        if r["mode"] == "plain" and x is not None:
            target = f"≥ 1× sks build: {'met' if x >= 1 else 'not met'}"
        elif r["mode"] == "attest" and x is not None:
            target = f"≥ 0.5× sks build: {'met' if x >= 0.5 else 'not met'}"
        db = {"sqlite": "SQLite", "postgresql": "PostgreSQL", "": "(its own BDB)"}[r["backend"]]
        runs = f" ({r['runs']} run{'s' if r['runs'] > 1 else ''})"
        out.append(
            f"| {r['input']} | {r['tool']} | {db} | {r['keys']:,} | {r['seconds']:.2f}{runs} | "
            f"{rate:,.0f} | {r['cpu_seconds']:.1f} | {r['rss_mib']:.0f} | {fmt_ratio(x)} "
            f"| {target} |"
        )
    return "\n".join(out) + "\n"


def compare(now: dict[str, Any], before: dict[str, Any]) -> str:
    """Ratios of this run beside those of an earlier one (same cases): × SKS for lookups
    and imports. Absolute numbers are not compared: the machine is shared."""

    def lookup_ratios(res: dict[str, Any]) -> dict[tuple[str, int, str], float]:
        out = {}
        for r in res["lookups"]:
            peer = CASE[r["case"]].sks_peer
            sks = next(
                (
                    x
                    for x in res["lookups"]
                    if x["case"] == peer and x["conns"] == r["conns"] and x["kind"] == "sks"
                ),
                None,
            )
            if sks and r["kind"] == "attester":
                out[(r["title"], r["conns"], r["server"])] = r["rps"] / sks["rps"]
        for r in res["imports"]:
            sks = next(
                (
                    x
                    for x in res["imports"]
                    if x["input"] == r["input"] and x["mode"] == "sks build"
                ),
                None,
            )
            if sks and r["mode"] != "sks build":
                out[(f"import {r['input']} {r['mode']}", 0, r["backend"])] = (
                    sks["seconds"] / r["seconds"] * r["keys"] / sks["keys"]
                )
        return out

    if before.get("keyring") != now.get("keyring") or before.get("mode") != now.get("mode"):
        return ""  # other keys or another subset: the ratios are not comparable
    a, b = lookup_ratios(before), lookup_ratios(now)
    common = [k for k in b if k in a]
    if not common:
        return ""
    lines = [
        f"## Compared with {before['mode']} run of {before['date']} (`{before['commit']}`)",
        "",
        "| case | conns | server | × SKS before | × SKS now | change |",
        "|---|--:|---|--:|--:|--:|",
    ]
    for k in common:
        change = b[k] / a[k] - 1
        lines.append(
            f"| {k[0]} | {k[1] or ''} | {k[2]} | {fmt_ratio(a[k])} | {fmt_ratio(b[k])} "
            f"| {change:+.0%} |"
        )
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(prog="bench/run", description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="a subset, 1 run of 5 s: under 3 minutes")
    ap.add_argument("--runs", type=int, help="runs per cell (median); default 3, quick 1")
    ap.add_argument("--duration", type=int, help="seconds per wrk run; default 10, quick 5")
    ap.add_argument("--backends", nargs="+", choices=["sqlite", "postgresql"])
    ap.add_argument("--cases", nargs="+", choices=list(CASE), help="only these lookup cases")
    ap.add_argument("--server-cpus", help="CPUs for the servers (taskset list) [0]")
    ap.add_argument("--wrk-cpus", help="CPUs for wrk [the last one]")
    ap.add_argument("--keys", type=int, help="only the first N certificates of the keyring")
    ap.add_argument("--sample", type=int, help="rotate over at most N keys / addresses per case")
    ap.add_argument(
        "--synthetic", type=int, default=100_000, help="synthetic keys to import (0: none)"
    )
    ap.add_argument("--synthetic-runs", type=int, default=1, help="runs of the synthetic import")
    ap.add_argument(
        "--synthetic-attest",
        action="store_true",
        help="also import the synthetic keys with --attest-emails",
    )
    ap.add_argument("--no-ceiling", action="store_true", help="skip the serving-stack ceiling")
    ap.add_argument("--compare", type=Path, help="an earlier results .json to compare ratios with")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder (logs)")
    ap.add_argument("--render", type=Path, help="print the table of a results .json again")
    args = ap.parse_args()
    if args.render:
        results = json.loads(args.render.read_text())
        print(render(results) + f"\nWhole run: {results['elapsed_s']:.0f} s.")
        return 0
    if args.quick and args.sample is None:
        args.sample = 300

    bench = Bench(args)

    def stop(signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGHUP, stop)
    started = time.monotonic()
    try:
        bench.run()
    finally:
        bench.cleanup()
    results = bench.results
    results["elapsed_s"] = time.monotonic() - started
    text = render(results) + f"\nWhole run: {results['elapsed_s']:.0f} s.\n"
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    earlier = sorted(RESULTS.glob(f"*-{results['mode']}.json"))
    before_file = args.compare or (earlier[-1] if earlier else None)
    if before_file is not None:
        text += "\n" + compare(results, json.loads(before_file.read_text()))
    base = RESULTS / f"{stamp}-{results['mode']}"
    base.with_suffix(".json").write_text(json.dumps(results, indent=1))
    base.with_suffix(".md").write_text(text)
    print(text)
    log(f"written to {base}.md and .json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
