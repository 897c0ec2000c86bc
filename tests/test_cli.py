"""The ``attester`` command as operators run it: real subprocesses."""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.support.keys import TestKey

ATTESTER = [sys.executable, "-m", "attester"]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ATTESTER_")}
    # Off a terminal Rich wraps at 80 columns, which splits long temporary paths (pytest-xdist
    # workers' are longer) in the middle of the file names the tests look for.
    env["COLUMNS"] = "500"
    env.update(extra)
    return env


def test_help_reads_well() -> None:
    out = subprocess.run([*ATTESTER, "--help"], capture_output=True, text=True, check=True).stdout
    for word in ("serve", "import", "db", "OpenPGP"):
        assert word in out
    out = subprocess.run(
        [*ATTESTER, "import", "--help"], capture_output=True, text=True, check=True
    ).stdout
    assert "--attest-emails" in out and "--domain" in out


def test_import_then_lookup(database_url: str, tmp_path: Path) -> None:
    keys = [TestKey.generate(f"User {i} <user{i}@corp.example>") for i in range(3)]
    other = TestKey.generate("Ext <ext@elsewhere.example>")
    ring = tmp_path / "ring.pgp"
    ring.write_bytes(b"".join(k.public for k in keys) + other.public)
    env = _env(ATTESTER_DATABASE_URL=database_url)
    r = subprocess.run(
        [*ATTESTER, "import", "--attest-emails", "--domain", "corp.example", str(ring)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    assert re.search(r"new\s+│\s+4", r.stdout), r.stdout
    assert re.search(r"addresses attested\s+│\s+3", r.stdout), r.stdout
    # Again from stdin: nothing changes.
    r = subprocess.run(
        [*ATTESTER, "import", "-"],
        input=ring.read_bytes(),
        capture_output=True,
        env=env,
        timeout=120,
    )
    assert r.returncode == 0
    assert re.search(r"unchanged\s+│\s+4", r.stdout.decode()), r.stdout
    # Rejected input is summarised with its reason, and a bad file is an error, not a crash.
    junk = tmp_path / "junk.txt"
    junk.write_text("this is not a key")
    r = subprocess.run(
        [*ATTESTER, "import", str(junk), str(tmp_path / "missing.pgp")],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert r.returncode == 1
    assert "junk.txt" in r.stderr and "missing.pgp" in r.stderr
    assert "Traceback" not in r.stderr


def test_domain_needs_attest_emails(tmp_path: Path) -> None:
    r = subprocess.run(
        [*ATTESTER, "import", "--domain", "x.example", "f"],
        capture_output=True,
        text=True,
        env=_env(),
    )
    assert r.returncode == 2 and "--attest-emails" in r.stderr


def test_serve_on_embedded_defaults(tmp_path: Path) -> None:
    """No configuration at all: SQLite in ./var (WAL), outbox in ./var/outbox; one log line
    says where it listens once it accepts connections."""
    proc = subprocess.Popen(
        [*ATTESTER, "serve", "--port", "0"],
        cwd=tmp_path,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 60
        url = None
        lines = []
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            lines.append(line)
            m = re.search(r"Attester listening on (http://127\.0\.0\.1:\d+)", line)
            if m:
                url = m.group(1)
                break
            if not line and proc.poll() is not None:
                break
        assert url, "".join(lines)
        assert httpx.get(url + "/").json() == {"alive": True}
        db = tmp_path / "var" / "attester.db"
        assert db.exists()
        with sqlite3.connect(db) as conn:
            assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        proc.terminate()
        proc.wait(20)
        if proc.stdout:
            proc.stdout.close()


def test_bad_config_is_a_clear_error(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text("port = 'eighty'\n")
    r = subprocess.run(
        [*ATTESTER, "serve", "--config", str(cfg)],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=60,
    )
    assert r.returncode == 2 and "port" in r.stderr and "Traceback" not in r.stderr
