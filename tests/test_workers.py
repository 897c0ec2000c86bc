"""``attester serve --workers 2``: two processes on one port and one database answer as
one server. A key another process imports (the CLI, as an operator would) is found by
every worker within moments, although each worker had kept its "not found"; and the
workers stop with the server, on SQLite and PostgreSQL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.support.keys import TestKey
from tests.support.smtp import free_port


def _children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(entry.name))
    return out


def test_two_workers_answer_as_one_server(database_url: str, tmp_path: Path) -> None:
    port = free_port()
    env = {
        **os.environ,
        "ATTESTER_DATABASE_URL": database_url,
        "ATTESTER_MAIL_URL": f"file:{tmp_path / 'outbox'}",
    }
    key = TestKey.generate("Wes <wes@example.org>")
    (tmp_path / "wes.asc").write_bytes(key.public)
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "attester", "serve", "--port", str(port), "--workers", "2"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(f"{base}/", timeout=1)
                break
            except httpx.HTTPError:
                assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
                time.sleep(0.2)
        workers = _children(proc.pid)
        assert len(workers) >= 2, (workers, log.read_text())
        # Each new connection may reach either worker; both keep their "not found".
        for _ in range(20):
            assert httpx.get(f"{base}/pub/wes@example.org").status_code == 404
        subprocess.run(
            [
                sys.executable,
                "-m",
                "attester",
                "import",
                "--attest-emails",
                str(tmp_path / "wes.asc"),
            ],
            env=env,
            check=True,
            capture_output=True,
            timeout=120,
        )
        deadline = time.monotonic() + 2
        while httpx.get(f"{base}/pub/wes@example.org").status_code != 200:
            assert time.monotonic() < deadline, "a worker kept serving the old answer"
            time.sleep(0.05)
        for _ in range(20):  # every worker, on fresh connections
            assert httpx.get(f"{base}/pub/wes@example.org").status_code == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in workers):
        assert time.monotonic() < deadline, "a worker outlived serve"
        time.sleep(0.1)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie has ended; only its parent's wait is missing
