"""Internal mode and ``serve_outside``, through the real app in process, with requests
coming from inside and outside the internal networks, with and without access tokens.
Every test runs on SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import html
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import pytest

from attester.config import Settings
from attester.openpgp.types import Fingerprint
from attester.openpgp.wkd import wkd_hash
from attester.service.access import Scope
from attester.service.attestation import Attestation
from attester.service.core import Core
from attester.store.audit import Actor, ActorKind
from attester.store.views import StoredCert
from tests.support import served
from tests.support.asgi import InProcess, in_process
from tests.support.keys import TestKey

INSIDE = ("10.1.2.3", 40000)
OUTSIDE = ("203.0.113.9", 40000)
CLI = Actor(ActorKind.CLI, "tester")

Start = Callable[..., AbstractContextManager[InProcess]]


@pytest.fixture
def alice(attestation: Attestation) -> TestKey:
    key = TestKey.generate("Alice <alice@example.com>")
    assert attestation.imports.keyring(key.public, attest_emails=True).attested == 1
    return key


@pytest.fixture
def start(settings: Settings) -> Start:
    def run(client: tuple[str, int], **policy: Any) -> AbstractContextManager[InProcess]:
        s = settings.model_copy(
            update={"policy": settings.policy.model_validate(policy), "sync_peers": ("*",)}
        )
        return in_process(s, client=client)

    return run


# What each protocol's clients send, and how they read a refusal.
REQUESTS: dict[str, list[tuple[str, str, dict[str, Any], str]]] = {
    "flowcrypt": [
        ("GET", "/pub/alice@example.com", {}, "json-error"),
        ("GET", "/", {"headers": {"Accept": "application/json"}}, "json-error"),
        ("POST", "/lookup/email", {"json": {"email": "alice@example.com"}}, "json-error"),
        ("GET", "/api/v1/client-configuration?domain=example.com", {}, "json-error"),
    ],
    "vks": [
        ("GET", "/vks/v1/by-email/alice@example.com", {}, "text"),
        ("POST", "/vks/v1/upload", {"json": {"keytext": "x"}}, "vks-json"),
    ],
    "hkp": [
        ("GET", "/pks/lookup?op=get&search=alice@example.com", {}, "text"),
        ("GET", "/pks/lookup?op=stats&options=mr", {}, "text"),
    ],
    "wkd": [
        ("GET", f"/.well-known/openpgpkey/example.com/hu/{wkd_hash('alice')}", {}, "text"),
        ("GET", "/.well-known/openpgpkey/example.com/policy", {}, "text"),
    ],
    "web": [
        ("GET", "/", {"headers": {"Accept": "text/html"}}, "page"),
        ("GET", "/search?q=alice@example.com", {"headers": {"Accept": "text/html"}}, "page"),
        ("GET", "/about", {"headers": {"Accept": "text/html"}}, "page"),
    ],
}


def _refused(r: Any, shape: str) -> None:
    assert r.status_code == 403, r.text
    if shape == "json-error":
        body = r.json()
        assert body["code"] == 403 and body["error"]["code"] == 403
        message = body["message"]
    elif shape == "vks-json":
        message = r.json()["error"]
    elif shape == "page":
        assert r.headers["content-type"].startswith("text/html")
        message = html.unescape(r.text)
    else:
        assert r.headers["content-type"].startswith("text/plain")
        message = r.text
    assert "inside the organisation's network" in message and "203.0.113.9" in message


@pytest.mark.parametrize("protocol", sorted(REQUESTS))
def test_internal_mode_answers_only_inside_networks(
    start: Start, alice: TestKey, protocol: str
) -> None:
    policy = {"internal_networks": ["10.0.0.0/8"], "modes": {protocol: "internal"}}
    with start(OUTSIDE, **policy) as outside:
        for method, path, kwargs, shape in REQUESTS[protocol]:
            _refused(outside.request(method, path, **kwargs), shape)
        # The other protocols stay public, and static files always are (the 403 page).
        for other, requests in REQUESTS.items():
            if other != protocol:
                method, path, kwargs, _ = requests[0]
                assert outside.request(method, path, **kwargs).status_code != 403, other
        assert outside.get("/static/style.css").status_code == 200
        assert outside.get("/admin/api/v1/openapi.json").status_code == 200
    with start(INSIDE, **policy) as inside:
        for method, path, kwargs, _ in REQUESTS[protocol]:
            assert inside.request(method, path, **kwargs).status_code != 403, path


def test_an_access_token_lets_outside_clients_in(
    start: Start, alice: TestKey, attestation: Attestation
) -> None:
    tokens = attestation.admin.tokens
    access = tokens.create("mail-gateway", frozenset({Scope.ACCESS}), CLI)
    admin_only = tokens.create("ops", frozenset({Scope.READ, Scope.WRITE}), CLI)
    policy = {"modes": {p: "internal" for p in REQUESTS}}  # no networks: tokens only
    basic = base64.b64encode(f"gpg:{access}".encode()).decode()
    with start(OUTSIDE, **policy) as c:
        path = "/vks/v1/by-email/alice@example.com"
        assert c.get(path).status_code == 403
        for headers in (
            {"Authorization": f"Bearer {access}"},
            {"X-Attester-Token": access},
            {"Authorization": f"Basic {basic}"},  # https://gpg:TOKEN@host, as dirmngr sends
        ):
            r = c.get(path, headers=headers)
            assert r.status_code == 200 and alice.fingerprint in _fprs(r.content), headers
        for headers in (
            {"Authorization": f"Bearer {admin_only}"},  # no "access" scope
            {"Authorization": "Bearer att_not-a-token-we-made-000000"},
            {"X-Attester-Token": "garbage"},
        ):
            assert c.get(path, headers=headers).status_code == 403, headers
        tokens.revoke("mail-gateway", CLI)
        assert c.get(path, headers={"X-Attester-Token": access}).status_code == 403
        # An id token in Authorization is not mistaken for an access token: the access
        # token rides in X-Attester-Token beside it.
        r = c.request(
            "POST",
            "/pub/alice@example.com",
            content=alice.armored,
            headers={"Authorization": "Bearer eyJhbGciOi.x.y"},
        )
        _refused(r, "json-error")


def _fprs(data: bytes) -> set[str]:
    return {f for f, _ in served.certs_in(data)}


@pytest.fixture
def corp(attestation: Attestation, core: Core) -> tuple[TestKey, StoredCert]:
    key = TestKey.generate("Carl <carl@corp.example>")
    assert attestation.imports.keyring(key.public, attest_emails=True).attested == 1
    [stored] = core.store.by_fingerprint(Fingerprint(key.fingerprint))
    return key, stored


def test_a_domain_kept_inside_is_served_only_to_internal_clients(
    start: Start, alice: TestKey, corp: tuple[TestKey, StoredCert], attestation: Attestation
) -> None:
    carl, stored = corp
    policy = {
        "internal_networks": ["10.0.0.0/8"],
        "domains": [{"domain": "corp.example", "serve_outside": False}],
    }
    access = attestation.admin.tokens.create("laptop", frozenset({Scope.ACCESS}), CLI)
    with start(OUTSIDE, **policy) as outside:
        hidden = served.lookups(outside, email="carl@corp.example", fingerprint=carl.fingerprint)
        for surface, answer in hidden.items():
            assert answer.status == 404 and not answer.keys, surface
        assert served.text_search(outside, "carl").status == 404
        assert served.hget(outside, stored.digest).status == 404
        assert served.hashquery_keys(outside, [stored.digest]) == frozenset()
        # Other domains are served as ever.
        public = served.lookups(outside, email="alice@example.com", fingerprint=alice.fingerprint)
        assert all(a.status == 200 for a in public.values()), public
        # An access token makes an outside client internal.
        r = outside.get("/pub/carl@corp.example", headers={"X-Attester-Token": access})
        assert r.status_code == 200
    with start(INSIDE, **policy) as inside:
        seen = served.lookups(inside, email="carl@corp.example", fingerprint=carl.fingerprint)
        for surface, answer in seen.items():
            assert answer.status == 200 and carl.fingerprint in answer.fingerprints, surface
        assert carl.fingerprint in {f for f, _ in served.hashquery_keys(inside, [stored.digest])}


def test_every_route_belongs_to_a_protocol_or_is_deliberately_open(settings: Settings) -> None:
    from starlette.routing import Route

    from attester.app import create_app
    from attester.http.access import protocol_of

    open_paths = ("/admin/", "/static/", "/brand/", "/metrics")
    for route in create_app(settings).routes:
        assert isinstance(route, Route)
        path = route.path.split("{")[0] or "/"
        found = protocol_of(path, wants_html=False)
        if found is None:
            assert path.startswith(open_paths), path
        elif path.startswith(("/pub", "/vks", "/pks", "/.well-known")):
            assert found.value in ("flowcrypt", "vks", "hkp", "wkd"), path
