"""``attester serve`` bounds what a client can hold: a request must arrive whole within
``request_timeout_seconds`` (slowloris, half-sent bodies), headers are bounded, and no
token reaches the access log (issue 10, items 11 and 15), against the real command on a
free port."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.support.smtp import free_port


@dataclass
class Served:
    port: int
    log: Path

    def connect(self) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=30)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    port = free_port()
    log = tmp_path / "serve.log"
    env = {
        **os.environ,
        "ATTESTER_DATABASE_URL": f"sqlite:///{tmp_path / 'a.db'}",
        "ATTESTER_MAIL_URL": f"file:{tmp_path / 'outbox'}",
        "ATTESTER_REQUEST_TIMEOUT_SECONDS": "2",
        "ATTESTER_MAX_HEADER_BYTES": "16384",
        # One process: the limits are uvicorn's, the same in each worker of several.
        "ATTESTER_WORKERS": "1",
    }
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "attester", "serve", "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    httpx.get(f"http://127.0.0.1:{port}/", timeout=1)
                    break
                except httpx.HTTPError:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(log.read_text()) from None
                    time.sleep(0.1)
            yield Served(port, log)
        finally:
            proc.terminate()
            proc.wait(10)


def _closed_within(s: socket.socket, seconds: float) -> bool:
    s.settimeout(seconds)
    try:
        while s.recv(65536):
            pass
        return True
    except TimeoutError:
        return False


def test_slowloris_headers_and_half_sent_bodies_are_dropped(served: Served) -> None:
    started = time.monotonic()
    slow_head = served.connect()
    slow_head.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
    half_body = served.connect()
    half_body.sendall(
        b"POST /pub/a@example.org HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\nxx"
    )
    silent = served.connect()
    for _ in range(3):  # keep dripping header lines: progress does not extend the deadline
        time.sleep(0.5)
        slow_head.sendall(b"X-Drip: 1\r\n")
    # Meanwhile others are served.
    assert httpx.get(f"http://127.0.0.1:{served.port}/", timeout=5).status_code == 200
    for s in (slow_head, half_body, silent):
        assert _closed_within(s, 10)
        s.close()
    assert time.monotonic() - started < 10


def test_oversized_headers_get_431(served: Served) -> None:
    s = served.connect()
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 100_000 + b"\r\n\r\n")
    answer = s.recv(65536)
    assert answer.startswith(b"HTTP/1.1 431")
    s.close()
    r = httpx.get(f"http://127.0.0.1:{served.port}/", headers={"X-Ok": "a" * 1000}, timeout=5)
    assert r.status_code == 200


def test_access_log_has_no_token(served: Served) -> None:
    token = "Zx9Yw8Vu7Ts6Rq5Po4Nm3Lk2"
    r = httpx.get(f"http://127.0.0.1:{served.port}/verify/{token}", timeout=5)
    assert r.status_code == 404
    time.sleep(0.3)
    text = served.log.read_text()
    assert "/verify/…" in text and token not in text
