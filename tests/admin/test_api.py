"""The admin HTTP API through the real app in process: tokens and scopes, every operation,
the audit trail it leaves, policy reloads, and the OpenAPI schema that describes it.
Every test runs on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from attester.admin.api import routes
from attester.config import Settings, load_settings
from attester.service.access import Scope
from attester.service.attestation import Attestation
from attester.service.core import Core
from attester.store.audit import Actor, ActorKind
from attester.store.schema import audit_log
from tests.support.asgi import InProcess, in_process
from tests.support.keys import TestKey

API = "/admin/api/v1"
CLIENT = ("192.0.2.10", 50000)
CLI = Actor(ActorKind.CLI, "tester")


@pytest.fixture
def tokens(attestation: Attestation) -> dict[str, str]:
    t = attestation.admin.tokens
    return {
        "all": t.create("ops", frozenset({Scope.READ, Scope.WRITE, Scope.POLICY}), CLI),
        "read": t.create("auditor", frozenset({Scope.READ}), CLI),
    }


@pytest.fixture
def keys(attestation: Attestation) -> dict[str, TestKey]:
    k = {
        "alice": TestKey.generate("Alice <alice@example.com>").with_user_id(
            "Alice <alice@home.example>"
        ),
        "bob": TestKey.generate("Bob <bob@example.com>"),
        "eve": TestKey.generate("Eve <eve@other.example>"),
    }
    attestation.imports.keyring(k["alice"].public + k["bob"].public, attest_emails=True)
    attestation.imports.keyring(k["eve"].public)  # stored, nothing attested
    return k


@pytest.fixture
def client(settings: Settings) -> Iterator[InProcess]:
    with in_process(settings, client=CLIENT) as c:
        yield c


def _as(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_tokens_and_scopes(
    client: InProcess, tokens: dict[str, str], attestation: Attestation
) -> None:
    r = client.get(f"{API}/stats")
    assert r.status_code == 401 and r.json()["code"] == "token-missing"
    assert r.headers["WWW-Authenticate"].startswith("Bearer")
    for bad in ("att_unknown-0000000000000000000", "not-even-ours", ""):
        r = client.get(f"{API}/stats", headers=_as(bad))
        assert r.status_code == 401, bad
    assert client.get(f"{API}/stats", headers=_as(tokens["read"])).status_code == 200
    r = client.request(
        "POST",
        f"{API}/removals",
        json={"domain": "x.example", "reason": "r"},
        headers=_as(tokens["read"]),
    )
    assert r.status_code == 403 and r.json()["code"] == "scope-missing"
    assert "write" in r.json()["error"]
    r = client.request("POST", f"{API}/policy/reload", headers=_as(tokens["read"]))
    assert r.status_code == 403
    attestation.admin.tokens.revoke("auditor", CLI)
    assert client.get(f"{API}/stats", headers=_as(tokens["read"])).status_code == 401
    listed = client.get(f"{API}/tokens", headers=_as(tokens["all"])).json()["tokens"]
    assert [(t["name"], t["scopes"]) for t in listed] == [("ops", ["policy", "read", "write"])]


def test_keys_are_listed_with_filters_and_pages(
    client: InProcess, tokens: dict[str, str], keys: dict[str, TestKey]
) -> None:
    def fprs(**params: Any) -> list[str]:
        r = client.get(f"{API}/keys", params=params, headers=_as(tokens["read"]))
        assert r.status_code == 200, r.text
        return [k["fingerprint"] for k in r.json()["keys"]]

    alice, bob, eve = (keys[n].fingerprint for n in ("alice", "bob", "eve"))
    assert fprs() == [alice, bob, eve]
    assert fprs(domain="example.com") == [alice, bob]
    assert fprs(domain="HOME.example") == [alice]
    assert fprs(attested="true") == [alice, bob] and fprs(attested="false") == [eve]
    assert fprs(origin="local") == [alice, bob, eve] and fprs(origin="mirror") == []
    assert fprs(q="eve") == [eve] and fprs(q=alice[:10].lower()) == [alice]
    assert fprs(removed="true") == []
    r = client.get(f"{API}/keys", params={"limit": 2}, headers=_as(tokens["read"])).json()
    assert len(r["keys"]) == 2 and r["next"] is not None
    r2 = client.get(f"{API}/keys", params={"after": r["next"]}, headers=_as(tokens["read"])).json()
    assert [k["fingerprint"] for k in r2["keys"]] == [eve] and r2["next"] is None
    for bad in ({"attested": "maybe"}, {"limit": "0"}, {"limit": "x"}, {"domain": "*.x"}):
        r = client.get(f"{API}/keys", params=bad, headers=_as(tokens["read"]))
        assert r.status_code == 400 and r.json()["code"] == "bad-request", bad


def test_attest_unattest_remove_restore_and_their_trail(
    client: InProcess, tokens: dict[str, str], keys: dict[str, TestKey], core: Core
) -> None:
    eve = keys["eve"].fingerprint
    h = _as(tokens["all"])
    assert client.get("/pub/eve@other.example").status_code == 404
    r = client.request(
        "POST",
        f"{API}/keys/{eve}/attest",
        json={"email": "eve@other.example", "reason": "HR"},
        headers=h,
    )
    assert (
        r.status_code == 200
        and r.json()["changed"]
        and r.json()["attested"] == ["eve@other.example"]
    )
    assert client.get("/pub/eve@other.example").status_code == 200
    r = client.request(
        "POST", f"{API}/keys/{eve}/attest", json={"email": "eve@other.example"}, headers=h
    )
    assert r.status_code == 200 and not r.json()["changed"]
    r = client.request(
        "POST", f"{API}/keys/{eve}/attest", json={"email": "nobody@other.example"}, headers=h
    )
    assert r.status_code == 400
    r = client.request(
        "POST", f"{API}/keys/{'AB' * 20}/attest", json={"email": "a@b.example"}, headers=h
    )
    assert r.status_code == 404 and r.json()["code"] == "not-found"
    # Remove the address: 201; again: 200 and nothing changes; the lookup is gone.
    body = {"email": "eve@other.example", "reason": "left the company"}
    r = client.request("POST", f"{API}/removals", json=body, headers=h)
    assert r.status_code == 201 and r.json()["certificates"] == 1
    assert client.request("POST", f"{API}/removals", json=body, headers=h).status_code == 200
    assert client.get("/pub/eve@other.example").status_code == 404
    # A removed address cannot be attested again, by anyone.
    r = client.request(
        "POST", f"{API}/keys/{eve}/attest", json={"email": "eve@other.example"}, headers=h
    )
    assert r.status_code == 403 and "removed from distribution" in r.json()["error"]
    listed = client.get(f"{API}/removals", headers=h).json()["removals"]
    assert [(x["kind"], x["value"], x["reason"], x["actor"]) for x in listed] == [
        ("email", "eve@other.example", "left the company", "ops")
    ]
    r = client.get(f"{API}/keys", params={"removed": "true"}, headers=h).json()["keys"]
    assert [k["removed_addresses"] for k in r] == [["eve@other.example"]]
    r = client.request(
        "DELETE", f"{API}/removals/email/eve@other.example", params={"reason": "back"}, headers=h
    )
    assert r.status_code == 200
    assert (
        client.request("DELETE", f"{API}/removals/email/eve@other.example", headers=h).status_code
        == 404
    )
    assert client.get("/pub/eve@other.example").status_code == 200
    r = client.request(
        "POST", f"{API}/keys/{eve}/unattest", json={"email": "eve@other.example"}, headers=h
    )
    assert r.status_code == 200 and r.json()["attested"] == []
    assert client.get("/pub/eve@other.example").status_code == 404
    # The key's history says who did what, from where, and why.
    detail = client.get(f"{API}/keys/{eve}", headers=h).json()
    trail = [
        (e["action"], e["actor_kind"], e["actor"], e["client_address"], e["reason"])
        for e in detail["history"]
    ]
    assert trail == [
        ("attest", "token", "ops", "192.0.2.10", "HR"),
        ("unattest", "token", "ops", "192.0.2.10", None),
    ]
    entries = client.get(f"{API}/audit", params={"email": "eve@other.example"}, headers=h).json()[
        "entries"
    ]
    assert [e["action"] for e in entries] == ["attest", "remove", "restore", "unattest"]
    assert entries[1]["reason"] == "left the company" and entries[2]["reason"] == "back"
    # No token is ever in the log, in any column.
    with core.db.read() as conn:
        everything = json.dumps([list(map(str, r)) for r in conn.execute(select(audit_log))])
    assert tokens["all"] not in everything and tokens["read"] not in everything
    assert tokens["all"][4:20] not in everything


def test_resend_mails_a_fresh_link(
    client: InProcess, tokens: dict[str, str], keys: dict[str, TestKey], settings: Settings
) -> None:
    eve = keys["eve"].fingerprint
    h = _as(tokens["all"])
    for _ in range(2):  # the operator is not held to the rate window
        r = client.request(
            "POST", f"{API}/keys/{eve}/resend", json={"email": "eve@other.example"}, headers=h
        )
        assert r.status_code == 200, r.text
    alice = keys["alice"].fingerprint
    r = client.request(
        "POST", f"{API}/keys/{alice}/resend", json={"email": "alice@example.com"}, headers=h
    )
    assert r.status_code == 400 and "published" in r.json()["error"]
    entries = client.get(f"{API}/audit", params={"action": "verify-mail"}, headers=h).json()[
        "entries"
    ]
    assert [(e["actor"], e["email"]) for e in entries] == [("ops", "eve@other.example")] * 2


def test_audit_exports_json_lines_and_filters(
    client: InProcess, tokens: dict[str, str], keys: dict[str, TestKey]
) -> None:
    h = _as(tokens["read"])
    r = client.get(f"{API}/audit", params={"format": "jsonl"}, headers=h)
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/x-ndjson")
    lines = [json.loads(line) for line in r.text.splitlines()]
    assert [e["action"] for e in lines].count("attest") == 3
    assert {e["actor_kind"] for e in lines if e["action"] == "attest"} == {"import"}
    assert [e["id"] for e in lines] == sorted(e["id"] for e in lines)
    r = client.get(f"{API}/audit", params={"action": "token-create"}, headers=h).json()
    assert r["entries"][0]["detail"].startswith('{"scopes"')
    r = client.get(f"{API}/audit", params={"since": "2999-01-01"}, headers=h).json()
    assert r["entries"] == []
    r = client.get(f"{API}/audit", params={"since": "yesterday"}, headers=h)
    assert r.status_code == 400 and "ISO 8601" in r.json()["error"]


def test_policy_reload_takes_a_valid_file_and_refuses_an_invalid_one(
    settings: Settings, tokens: dict[str, str], keys: dict[str, TestKey], tmp_path: Path
) -> None:
    cfg = tmp_path / "attester.toml"
    cfg.write_text("")

    def reread() -> Settings:
        return load_settings(cfg, database_url=settings.database_url, mail_url=settings.mail_url)

    h = _as(tokens["all"])
    with in_process(settings, client=CLIENT, reload=reread) as c:
        assert c.get("/pub/bob@example.com").status_code == 200
        cfg.write_text('[policy.modes]\nflowcrypt = "internal"\n')
        r = c.request("POST", f"{API}/policy/reload", headers=h)
        assert r.status_code == 200 and r.json()["policy"]["modes"]["flowcrypt"] == "internal"
        assert c.get("/pub/bob@example.com").status_code == 403  # in force at once
        cfg.write_text(
            '[policy.modes]\nflowcrypt = "public"\n'
            '[[policy.domains]]\ndomain = "*"\n[[policy.domains]]\ndomain = "example.com"\n'
        )
        r = c.request("POST", f"{API}/policy/reload", headers=h)
        assert r.status_code == 400
        assert "policy.domains[1] (example.com) can never apply" in r.json()["error"]
        assert c.get("/pub/bob@example.com").status_code == 403  # the old policy stays
        assert c.get(f"{API}/policy", headers=h).json()["modes"]["flowcrypt"] == "internal"
        entries = c.get(f"{API}/audit", params={"actor": "ops"}, headers=h).json()["entries"]
        assert [e["action"] for e in entries][-2:] == ["policy-reload", "policy-refused"]
        assert "can never apply" in entries[-1]["detail"]
    with in_process(settings, client=CLIENT) as c:  # no file to reload from
        r = c.request("POST", f"{API}/policy/reload", headers=h)
        assert r.status_code == 400 and "without a configuration" in r.json()["error"]


def test_stats_count_what_is_served_and_what_is_stored(
    client: InProcess, tokens: dict[str, str], keys: dict[str, TestKey], attestation: Attestation
) -> None:
    h = _as(tokens["read"])
    s = client.get(f"{API}/stats", headers=h).json()
    assert s["served"] == {"keys": 3, "published_addresses": 3}
    assert s["stored"]["keys"] == 3 and s["stored"]["removals"] == 0
    from attester.service.removals import Target

    attestation.admin.removals.remove(Target.parse(fingerprint=keys["bob"].fingerprint), "x", CLI)
    s = client.get(f"{API}/stats", headers=h).json()
    assert s["served"] == {"keys": 2, "published_addresses": 2}
    assert s["stored"]["keys"] == 3 and s["stored"]["keys_removed"] == 1


def test_the_openapi_schema_lists_exactly_the_routes(client: InProcess) -> None:
    r = client.get(f"{API}/openapi.json")
    assert r.status_code == 200
    doc = r.json()
    assert doc["openapi"].startswith("3.1") and doc["servers"][0]["url"].endswith(API)
    documented = {(path, method.upper()) for path, ops in doc["paths"].items() for method in ops}
    served = {
        (route.path.removeprefix(API).replace("{value:path}", "{value}"), method)
        for route in routes()
        for method in (route.methods or ())
        if method != "HEAD"
    }
    assert documented == served
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            if path != "/openapi.json":
                assert op["x-scope"] in ("read", "write", "policy"), (path, method)
