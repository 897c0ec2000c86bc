"""FlowCrypt's enterprise server probe and client configuration, through the real app in
process (``flowcrypt-attester-api.md``, "Enterprise client configuration"; the answers are
read here the way flowcrypt-browser's ``external-service.ts`` and
``client-configuration.ts`` read them)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from attester.config import Settings, load_settings
from tests.support.asgi import in_process

RULES: dict[str, Any] = {
    "Example.COM": {
        "flags": ["NO_PRV_BACKUP", "ENFORCE_ATTESTER_SUBMIT", "HIDE_ARMOR_META"],
        "custom_keyserver_url": "self",
        "disallow_attester_search_for_domains": ["example.com", "Corp.Example.com"],
        "allow_keys_openpgp_org_search_only_for_domains": [],
        "enforce_keygen_algo": "curve25519",
        "enforce_keygen_expire_months": 24,
        "in_memory_pass_phrase_session_length": 3600,
    },
    "bücher.example": {"flags": ["NO_ATTESTER_SUBMIT"]},
}


def _settings(tmp_path: Path, **update: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": f"sqlite:///{tmp_path / 'attester.db'}",
        "mail_url": f"file:{tmp_path / 'outbox'}",
        "base_url": "https://keys.example.com/attester",
        "path_prefix": "/attester",
    }
    return load_settings(None, **{**values, **update})


def _error(r: Any, status: int) -> None:
    assert r.status_code == status, r.text
    body = r.json()
    assert body["code"] == status and body["error"]["code"] == status
    assert isinstance(body["message"], str) and body["message"] == body["error"]["message"]


def test_without_configuration_there_is_no_enterprise_server(tmp_path: Path) -> None:
    # The apps read a 404 from /api/ as "no enterprise server here" and carry on without.
    with in_process(_settings(tmp_path)) as client:
        for path in (
            "/attester/api/",
            "/attester/api/v1/client-configuration?domain=example.com",
            "/attester/api/v1/client-configuration/authentication?domain=example.com",
        ):
            _error(client.get(path), 404)


def test_the_probe_names_an_enterprise_server(tmp_path: Path) -> None:
    with in_process(_settings(tmp_path, client_configuration=RULES)) as client:
        r = client.get("/attester/api/")
        assert r.status_code == 200
        info = r.json()
        # The browser and iOS accept "enterprise-server" (or "external-service") here.
        assert info["service"] == "enterprise-server"
        assert set(info) == {"vendor", "service", "orgId", "version", "apiVersion"}
        assert info["apiVersion"] == "v1"
        r = client.get("/attester/api", follow_redirects=True)  # without the slash too
        assert r.json() == info


def test_the_probe_answers_per_domain_when_reached_as_fes_host(tmp_path: Path) -> None:
    # Clients probe https://fes.<their domain>/api/: a domain without rules (and no "*"
    # default) is told there is no enterprise server, so its users are not steered by us.
    settings = _settings(tmp_path, client_configuration=RULES, path_prefix="")
    with in_process(settings, host="fes.example.com") as client:
        r = client.get("/api/")
        assert r.status_code == 200 and r.json()["orgId"] == "example.com"
    with in_process(settings, host="fes.elsewhere.example") as client:
        _error(client.get("/api/"), 404)
    with_default = {**RULES, "*": {"flags": ["NO_PRV_CREATE"]}}
    with in_process(
        _settings(tmp_path, client_configuration=with_default, path_prefix=""),
        host="fes.elsewhere.example",
    ) as client:
        assert client.get("/api/").json()["orgId"] == "elsewhere.example"


def test_client_configuration_of_a_configured_domain(tmp_path: Path) -> None:
    with in_process(_settings(tmp_path, client_configuration=RULES)) as client:
        r = client.get("/attester/api/v1/client-configuration", params={"domain": "EXAMPLE.com"})
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("application/json")
        assert r.json() == {
            "clientConfiguration": {
                "flags": ["NO_PRV_BACKUP", "ENFORCE_ATTESTER_SUBMIT", "HIDE_ARMOR_META"],
                # "self": where this server's HKP is (FlowCrypt appends /pks/lookup).
                "custom_keyserver_url": "https://keys.example.com/attester",
                "disallow_attester_search_for_domains": ["example.com", "corp.example.com"],
                # An empty allow list is a rule ("no domain"), so it is sent.
                "allow_keys_openpgp_org_search_only_for_domains": [],
                "enforce_keygen_algo": "curve25519",
                "enforce_keygen_expire_months": 24,
                "in_memory_pass_phrase_session_length": 3600,
            }
        }
        # Domains are matched as clients send them: any case, Unicode or IDNA form.
        for domain in ("bücher.example", "xn--bcher-kva.example", "BÜCHER.example."):
            r = client.get("/attester/api/v1/client-configuration", params={"domain": domain})
            assert r.json() == {"clientConfiguration": {"flags": ["NO_ATTESTER_SUBMIT"]}}, domain


def test_a_domain_without_rules_gets_what_flowcrypt_answers(tmp_path: Path) -> None:
    # The browser stops the user's setup on any error from this request; FlowCrypt's own
    # server answers an organisation without rules with empty flags.
    with in_process(_settings(tmp_path, client_configuration=RULES)) as client:
        r = client.get("/attester/api/v1/client-configuration?domain=other.example")
        assert r.status_code == 200 and r.json() == {"clientConfiguration": {"flags": []}}
    rules = {**RULES, "*": {"flags": ["NO_PRV_CREATE"], "key_manager_url": "https://ekm.example"}}
    with in_process(_settings(tmp_path, client_configuration=rules)) as client:
        r = client.get("/attester/api/v1/client-configuration?domain=other.example")
        assert r.json() == {
            "clientConfiguration": {
                "flags": ["NO_PRV_CREATE"],
                "key_manager_url": "https://ekm.example",
            }
        }
        # A domain with its own table gets only its own, never merged with the default.
        r = client.get("/attester/api/v1/client-configuration?domain=bücher.example")
        assert r.json() == {"clientConfiguration": {"flags": ["NO_ATTESTER_SUBMIT"]}}


def test_authentication_configuration_is_empty(tmp_path: Path) -> None:
    # Asked by the browser before the client configuration; {} means "no identity provider
    # of the organisation's own", as FlowCrypt's server answers.
    with in_process(_settings(tmp_path, client_configuration=RULES)) as client:
        r = client.get("/attester/api/v1/client-configuration/authentication?domain=example.com")
        assert r.status_code == 200 and r.json() == {}


@pytest.mark.parametrize("query", ["", "?domain=", "?domain=%20", "?domain=not%20a%20domain"])
def test_a_missing_or_bad_domain_is_a_400(tmp_path: Path, query: str) -> None:
    with in_process(_settings(tmp_path, client_configuration=RULES)) as client:
        for path in ("client-configuration", "client-configuration/authentication"):
            r = client.get(f"/attester/api/v1/{path}{query}")
            _error(r, 400)
            assert "domain" in r.json()["message"]


def test_cors_as_the_other_flowcrypt_routes(tmp_path: Path) -> None:
    origin = "chrome-extension://bnjglocicdkmhmoohhfkfkbbkejdhdgc"
    with in_process(_settings(tmp_path, client_configuration=RULES)) as client:
        r = client.get(
            "/attester/api/v1/client-configuration?domain=example.com", headers={"Origin": origin}
        )
        assert r.headers["access-control-allow-origin"] == "*"
        r = client.options(
            "/attester/api/v1/client-configuration?domain=example.com",
            headers={
                "Origin": origin,
                "Access-Control-Request-Method": "GET",
                "Access-Control-Request-Headers": "authorization, api-version",
            },
        )
        assert r.status_code == 200
        assert r.headers["access-control-allow-origin"] == "*"
        allowed = r.headers["access-control-allow-headers"].lower()
        assert "authorization" in allowed and "api-version" in allowed
