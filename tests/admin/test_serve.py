"""``attester admin`` against a running ``attester serve`` (a real process): a removal
made by the CLI on the database is in effect on the server within 2 s, the same commands
work through the admin API with a token, and SIGHUP reloads the policy. Runs on SQLite
and PostgreSQL.

The server is one worker (``tests/test_workers.py`` is where several share a port). Most
``attester admin`` calls run in this process through typer's runner: they still write the
database beside the server, or call its API over HTTP, which is what is tested here; each
test also runs some as real processes, so that the entry point, exit codes and stderr
are those a shell sees. (A process costs about a CPU-second of imports; the suite ran
about 40 of them here.)"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from attester.cli import app
from attester.openpgp.wkd import wkd_hash
from attester.service.attestation import Attestation
from tests.support.keys import TestKey

ATTESTER = [sys.executable, "-m", "attester"]


def _env(database_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ATTESTER_")}
    env["ATTESTER_DATABASE_URL"] = database_url
    env["ATTESTER_WORKERS"] = "1"
    env.update(extra)
    return env


@dataclass
class Ran:
    returncode: int
    stdout: str
    stderr: str


def attester(*args: str, env: dict[str, str], check: bool = True, process: bool = False) -> Ran:
    """``attester ARGS`` with exactly ``env``'s settings: in this process, or as a real
    process with ``process=True``."""
    if process:
        p = subprocess.run([*ATTESTER, *args], capture_output=True, text=True, env=env, timeout=120)
        r = Ran(p.returncode, p.stdout, p.stderr)
    else:
        # The runner sets these for the call and restores the environment afterwards;
        # None unsets a setting of this process that ``env`` leaves out.
        ours = {k: None for k in os.environ if k.startswith("ATTESTER_") and k not in env}
        settings = {k: v for k, v in env.items() if k.startswith("ATTESTER_")}
        res = CliRunner().invoke(app, list(args), env={**ours, **settings, "COLUMNS": "80"})
        if res.exception is not None and not isinstance(res.exception, SystemExit):
            raise res.exception
        r = Ran(res.exit_code, res.stdout, res.stderr)
    if check:
        assert r.returncode == 0, f"{args}: {r.stdout}\n{r.stderr}"
    return r


@dataclass
class Serving:
    url: str
    proc: subprocess.Popen[str]
    lines: list[str]

    def logged(self, pattern: str, timeout: float = 10) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(re.search(pattern, line) for line in list(self.lines)):
                return True
            time.sleep(0.05)
        return False


@contextmanager
def serve(env: dict[str, str], *args: str) -> Iterator[Serving]:
    proc = subprocess.Popen(
        [*ATTESTER, "serve", "--port", "0", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    found = threading.Event()
    url: list[str] = []

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            m = re.search(r"Attester listening on (http://127\.0\.0\.1:\d+)", line)
            if m and not url:
                url.append(m.group(1))
                found.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert found.wait(60), "".join(lines)
        yield Serving(url[0], proc, lines)
    finally:
        proc.terminate()
        proc.wait(20)
        reader.join(5)
        if proc.stdout:
            proc.stdout.close()


def within(seconds: float, check: Callable[[], bool]) -> float:
    """How long until ``check()`` holds; fails past ``seconds``."""
    start = time.monotonic()
    while True:
        if check():
            return time.monotonic() - start
        if time.monotonic() - start > seconds:
            pytest.fail(f"not in effect within {seconds} s")
        time.sleep(0.05)


@pytest.fixture
def alice(attestation: Attestation) -> TestKey:
    key = TestKey.generate("Alice <alice@example.com>").with_user_id("Alice <alice@lab.example>")
    assert attestation.imports.keyring(key.public, attest_emails=True).attested == 2
    return key


def test_a_cli_removal_takes_effect_on_a_running_server_within_2_seconds(
    database_url: str, alice: TestKey, tmp_path: Path
) -> None:
    env = _env(database_url, ATTESTER_MAIL_URL=f"file:{tmp_path / 'outbox'}")
    lookups = {
        "flowcrypt": "/pub/alice@example.com",
        "vks": f"/vks/v1/by-fingerprint/{alice.fingerprint}",
        "hkp": f"/pks/lookup?op=get&search=0x{alice.key_id}",
        "wkd": f"/.well-known/openpgpkey/example.com/hu/{wkd_hash('alice')}",
        "web": f"/download/{alice.fingerprint}",
    }
    with serve(env) as server, httpx.Client(base_url=server.url, timeout=10) as http:

        def statuses() -> set[int]:
            return {http.get(path).status_code for path in lookups.values()}

        assert statuses() == {200}
        attester(
            "admin",
            "remove",
            "--fingerprint",
            alice.fingerprint,
            "--reason",
            "stolen laptop",
            env=env,
            process=True,
        )
        within(2, lambda: statuses() == {404})
        attester("admin", "restore", "--fingerprint", alice.fingerprint, env=env)
        within(2, lambda: statuses() == {200})
        # A whole domain, then one address.
        attester("admin", "remove", "--domain", "example.com", "--reason", "sold", env=env)
        within(2, lambda: http.get("/pub/alice@example.com").status_code == 404)
        assert http.get("/pub/alice@lab.example").status_code == 200
        attester("admin", "restore", "--domain", "example.com", "--reason", "bought back", env=env)
        attester("admin", "remove", "--email", "alice@lab.example", "--reason", "gone", env=env)
        within(2, lambda: http.get("/pub/alice@lab.example").status_code == 404)
        assert http.get("/pub/alice@example.com").status_code == 200
        # Selectors are checked before anything is done.
        r = attester(
            "admin",
            "remove",
            "--email",
            "a@b.example",
            "--domain",
            "b.example",
            "--reason",
            "x",
            env=env,
            check=False,
        )
        assert r.returncode == 2 and "exactly one" in r.stderr
        r = attester("admin", "remove", "--email", "a@b.example", env=env, check=False)
        assert r.returncode == 2 and "--reason" in r.stderr
        r = attester(
            "admin", "restore", "--email", "nobody@b.example", env=env, check=False, process=True
        )
        assert r.returncode == 1 and "No removal" in r.stderr and "Traceback" not in r.stderr
    # The audit log, as JSON lines, with the reasons.
    out = attester("admin", "audit", "--json", env=env).stdout
    entries = [json.loads(line) for line in out.splitlines()]
    trail = [
        (e["action"], e["fingerprint"] or e["email"] or e["domain"], e["reason"], e["actor_kind"])
        for e in entries
        if e["action"] in ("remove", "restore")
    ]
    assert trail == [
        ("remove", alice.fingerprint, "stolen laptop", "cli"),
        ("restore", alice.fingerprint, None, "cli"),
        ("remove", "example.com", "sold", "cli"),
        ("restore", "example.com", "bought back", "cli"),
        ("remove", "alice@lab.example", "gone", "cli"),
    ]
    table = attester("admin", "audit", env=env).stdout
    assert "stolen" in table and "remove" in table  # (wrapped at 80 columns)


def test_tokens_and_the_same_commands_through_the_admin_api(
    database_url: str, alice: TestKey, tmp_path: Path
) -> None:
    env = _env(database_url, ATTESTER_MAIL_URL=f"file:{tmp_path / 'outbox'}")
    r = attester("admin", "token", "create", "ops", "--scope", "read,write", env=env, process=True)
    token = r.stdout.splitlines()[-1]
    assert token.startswith("att_") and len(token) > 40 and "shown only now" in r.stderr
    r = attester("admin", "token", "create", "ops", "--scope", "read", env=env, check=False)
    assert r.returncode == 1 and "exists already" in r.stderr
    r = attester("admin", "token", "create", "x", "--scope", "root", env=env, check=False)
    assert r.returncode == 1 and "'root' is no scope" in r.stderr
    listed = [
        json.loads(line)
        for line in attester("admin", "token", "list", "--json", env=env).stdout.splitlines()
    ]
    assert listed[0]["name"] == "ops" and token not in json.dumps(listed)
    with serve(env) as server:
        remote = _env(database_url, ATTESTER_ADMIN_SERVER=server.url, ATTESTER_ADMIN_TOKEN=token)
        keys = [
            json.loads(line)
            for line in attester(
                "admin", "keys", "--json", env=remote, process=True
            ).stdout.splitlines()
        ]
        assert [k["fingerprint"] for k in keys] == [alice.fingerprint]
        attester("admin", "remove", "--email", "alice@example.com", "--reason", "api", env=remote)
        assert httpx.get(f"{server.url}/pub/alice@example.com").status_code == 404
        shown = json.loads(attester("admin", "key", alice.fingerprint, "--json", env=remote).stdout)
        assert shown["removed_addresses"] == ["alice@example.com"]
        assert [r["reason"] for r in shown["removals"]] == ["api"]
        attester("admin", "restore", "--email", "alice@example.com", env=remote)
        assert httpx.get(f"{server.url}/pub/alice@example.com").status_code == 200
        lines = attester("admin", "audit", "--json", "--action", "remove", env=remote).stdout
        [entry] = [json.loads(line) for line in lines.splitlines()]
        assert (entry["actor_kind"], entry["actor"], entry["client_address"]) == (
            "token",
            "ops",
            "127.0.0.1",
        )
        # Refusals come back as sentences, and tokens are not made remotely.
        r = attester("admin", "policy", "reload", env=remote, check=False)
        assert r.returncode == 1 and "lacks the scope 'policy'" in r.stderr
        r = attester("admin", "token", "create", "y", env=remote, check=False)
        assert r.returncode == 2 and "without --server" in r.stderr
        attester("admin", "token", "revoke", "ops", env=env)
        r = attester("admin", "keys", env=remote, check=False, process=True)
        assert r.returncode == 1 and "not valid" in r.stderr


def test_sighup_reloads_the_policy_and_an_invalid_file_changes_nothing(
    database_url: str, alice: TestKey, tmp_path: Path
) -> None:
    cfg = tmp_path / "attester.toml"
    cfg.write_text('[policy]\ninternal_networks = ["127.0.0.0/8"]\n')
    # One worker (``_env``): each worker reloads (and audits) its own policy on SIGHUP.
    env = _env(database_url, ATTESTER_MAIL_URL=f"file:{tmp_path / 'outbox'}")
    with serve(env, "--config", str(cfg)) as server, httpx.Client(base_url=server.url) as http:
        path = "/vks/v1/by-email/alice@example.com"
        assert http.get(path).status_code == 200
        cfg.write_text(
            '[policy]\ninternal_networks = ["127.0.0.0/8"]\n[policy.modes]\nvks = "internal"\n'
        )
        server.proc.send_signal(signal.SIGHUP)
        assert server.logged("policy reloaded on SIGHUP")
        assert http.get(path).status_code == 200  # 127.0.0.1 is inside
        # Behind the reverse proxy (127.0.0.1, in forwarded_allow_ips) the client is the
        # address it forwards: an outside one is refused...
        r = http.get(path, headers={"X-Forwarded-For": "203.0.113.5"})
        assert r.status_code == 403 and "203.0.113.5" in r.text
        assert http.get(path, headers={"X-Forwarded-For": "127.0.0.9"}).status_code == 200
        # ...and an invalid file is refused, with the rule named; the policy stays.
        cfg.write_text('[policy.modes]\nvks = "public"\nldap = "internal"\n')
        server.proc.send_signal(signal.SIGHUP)
        assert server.logged(r"policy not reloaded .*'ldap' is no protocol")
        r = http.get(path, headers={"X-Forwarded-For": "203.0.113.5"})
        assert r.status_code == 403
    out = attester("admin", "audit", "--json", "--actor", "SIGHUP", env=env).stdout
    assert [json.loads(line)["action"] for line in out.splitlines()] == [
        "policy-reload",
        "policy-refused",
    ]
