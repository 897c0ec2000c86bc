"""``attester admin`` on the local database, in process (typer's runner): each command's
table for people and ``--json`` for scripts, and clear errors. Runs on SQLite and
PostgreSQL. (tests/admin/test_serve.py runs the same commands as processes against a
running server.)"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from attester.cli import app
from attester.service.attestation import Attestation
from tests.support.keys import TestKey


@pytest.fixture
def run(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("ATTESTER_DATABASE_URL", database_url)
    monkeypatch.setenv("ATTESTER_MAIL_URL", f"file:{tmp_path / 'outbox'}")
    runner = CliRunner()

    def invoke(*args: str, code: int = 0) -> tuple[str, str]:
        r = runner.invoke(app, ["admin", *args])
        assert r.exit_code == code, (args, r.stdout, r.stderr, r.exception)
        return r.stdout, r.stderr

    return invoke


@pytest.fixture
def keys(attestation: Attestation) -> dict[str, TestKey]:
    k = {
        "ann": TestKey.generate("Ann <ann@example.com>"),
        "kim": TestKey.generate("Kim <kim@other.example>"),
    }
    attestation.imports.keyring(k["ann"].public, attest_emails=True)
    attestation.imports.keyring(k["kim"].public)
    return k


def _lines(out: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def test_keys_key_attest_and_unattest(run, keys: dict[str, TestKey]) -> None:  # type: ignore[no-untyped-def]
    ann, kim = keys["ann"].fingerprint, keys["kim"].fingerprint
    out, _ = run("keys", "--json")
    assert [k["fingerprint"] for k in _lines(out)] == [ann, kim]
    out, _ = run("keys", "--not-attested", "--json")
    assert [k["fingerprint"] for k in _lines(out)] == [kim]
    out, _ = run("keys", "--domain", "example.com")
    assert ann in out and kim not in out and "1 key(s)" in out
    out, _ = run("attest", kim, "kim@other.example", "--reason", "verified in person")
    assert "attested on" in out
    out, _ = run("key", kim, "--json")
    shown = json.loads(out)
    assert shown["attested"] == ["kim@other.example"]
    assert [(e["action"], e["actor_kind"], e["reason"]) for e in shown["history"]] == [
        ("attest", "cli", "verified in person")
    ]
    out, _ = run("key", kim)
    assert "kim@other.example" in out and "operator" in out and "history" in out
    run("unattest", kim, "kim@other.example")
    _, err = run("unattest", kim, "kim@other.example", code=1)
    assert "is not attested" in err
    _, err = run("attest", "ABCD", "kim@other.example", code=1)
    assert "fingerprint is 40" in err
    _, err = run("key", "AB" * 20, code=1)
    assert "No key with fingerprint" in err


def test_removals_stats_and_policy(run, keys: dict[str, TestKey], tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    run("remove", "--domain", "example.com", "--reason", "divested")
    out, _ = run("removals")
    assert "example.com" in out and "divested" in out
    [removal] = _lines(run("removals", "--json")[0])
    assert removal["kind"] == "domain" and removal["reason"] == "divested"
    out, _ = run("remove", "--domain", "example.com", "--reason", "again")
    assert "removed already (divested); nothing changed" in out
    stats = json.loads(run("stats", "--json")[0])
    assert stats["served"]["published_addresses"] == 0
    assert stats["stored"]["addresses_removed"] == 1
    assert "served: keys" in run("stats")[0]
    cfg = tmp_path / "attester.toml"
    cfg.write_text('[[policy.domains]]\ndomain = "example.com"\nsubmit = ["operator"]\n')
    out, _ = run("--config", str(cfg), "policy", "check")
    assert "example.com" in out and "the policy is valid" in out
    cfg.write_text('[[policy.domains]]\ndomain = "*"\n[[policy.domains]]\ndomain = "a.example"\n')
    _, err = run("--config", str(cfg), "policy", "check", code=2)
    assert "can never apply" in err
    _, err = run("policy", "reload", code=1)
    assert "SIGHUP" in err
