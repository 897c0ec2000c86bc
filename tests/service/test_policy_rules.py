"""The rules per domain on every protocol that takes keys or looks them up: which methods
may publish an address, OIDC issuers and when their tokens publish, upstream lookups, and
several keys per address. Runs on SQLite and PostgreSQL, through the real app in process."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select

from attester.config import Settings
from attester.openpgp import parse_certificates
from attester.openpgp.types import Email, Fingerprint
from attester.openpgp.wkd import wkd_hash
from attester.service.attestation import Attestation
from attester.service.core import Core
from attester.service.errors import RefusedByPolicy
from attester.service.verification import ConfirmState
from attester.store.admin import AdminStore
from attester.store.audit import Actor, ActorKind, AuditFilter, AuditStore
from attester.store.schema import outbox
from tests.federation.peers import settings_with, stub_server
from tests.service.test_removal_wins import verify_link
from tests.support.asgi import InProcess, in_process
from tests.support.keys import TestKey
from tests.support.oidc_issuer import LocalIssuer
from tests.web.forms import csrf_token

CLI = Actor(ActorKind.CLI, "tester")

RULES: list[dict[str, Any]] = [
    {"domain": "ops.example", "submit": ["operator"]},
    {"domain": "closed.example", "submit": []},
    {"domain": "mail.example", "submit": ["email"]},
]


def _with(settings: Settings, **update: Any) -> Settings:
    return settings_with(settings, **update)


def _follow(attestation: Attestation, settings: Settings) -> None:
    """The tests' own service (imports, admin calls) under the app's policy too."""
    attestation.core.policy.source = settings.make_policy
    attestation.core.policy.reload()


@pytest.fixture
def client(settings: Settings, attestation: Attestation) -> Iterator[InProcess]:
    s = _with(settings, policy={"domains": RULES})
    _follow(attestation, s)
    with in_process(s) as c:
        yield c


def _stored(core: Core, key: TestKey) -> bool:
    return AdminStore(core.db).key(Fingerprint(key.fingerprint)) is not None


def _mails(core: Core, email: str) -> int:
    with core.db.read() as conn:
        return len(conn.execute(select(outbox.c.id).where(outbox.c.recipient == email)).all())


def test_operator_only_domains_refuse_uploads_on_every_protocol(
    client: InProcess, core: Core, attestation: Attestation
) -> None:
    key = TestKey.generate("Otto <otto@ops.example>")
    r = client.request("POST", "/pub/otto@ops.example", content=key.armored)
    assert r.status_code == 403
    assert "published only by the operator" in r.json()["message"]
    r = client.request("POST", "/vks/v1/upload", json={"keytext": key.armored})
    assert r.status_code == 400 and "only by the operator" in r.json()["error"]
    r = client.request("POST", "/pks/add", data={"keytext": key.armored})
    assert r.status_code == 400 and "only by the operator" in r.text
    assert not _stored(core, key)
    # The operator publishes it; the owner's apps may then submit the same key again
    # (FlowCrypt does on every setup) and updates are taken.
    assert attestation.imports.keyring(key.public, attest_emails=True).attested == 1
    assert client.get("/pub/otto@ops.example").status_code == 200
    r = client.request("POST", "/pub/otto@ops.example", content=key.armored)
    assert r.status_code == 200 and "updated" in r.text
    r = client.request("POST", "/vks/v1/upload", json={"keytext": key.armored})
    assert r.status_code == 200 and r.json()["status"] == {"otto@ops.example": "published"}
    assert _mails(core, "otto@ops.example") == 0


def test_closed_domains_publish_nothing_not_even_by_the_operator(
    client: InProcess, attestation: Attestation
) -> None:
    key = TestKey.generate("Cleo <cleo@closed.example>")
    s = attestation.imports.keyring(key.public, attest_emails=True)
    assert (s.attested, s.refused) == (0, 1)
    with pytest.raises(RefusedByPolicy, match="publishes no keys for addresses at closed"):
        attestation.admin.attest(Fingerprint(key.fingerprint), Email("cleo@closed.example"), CLI)
    assert client.get("/pub/cleo@closed.example").status_code == 404
    assert client.get(f"/pub/{key.fingerprint}").status_code == 200  # identity-free


def test_a_key_with_addresses_of_several_domains_is_mailed_only_where_allowed(
    client: InProcess, core: Core
) -> None:
    key = TestKey.generate("Mia <mia@ops.example>").with_user_id("Mia <mia@mail.example>")
    r = client.request("POST", "/vks/v1/upload", json={"keytext": key.armored})
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == {"mia@mail.example": "unpublished", "mia@ops.example": "unpublished"}
    r = client.request(
        "POST",
        "/vks/v1/request-verify",
        json={"token": body["token"], "addresses": ["mia@mail.example", "mia@ops.example"]},
    )
    assert r.json()["status"] == {"mia@mail.example": "pending", "mia@ops.example": "unpublished"}
    assert (_mails(core, "mia@mail.example"), _mails(core, "mia@ops.example")) == (1, 0)
    r = client.request("POST", "/pks/add", data={"keytext": key.armored})
    assert r.status_code == 200
    assert "mia@ops.example: not published: Keys for addresses at ops.example" in r.text
    # The web upload page shows why, and offers no button for it.
    r = client.request(
        "POST",
        "/upload",
        data={"csrf": csrf_token(client, "/upload"), "keytext": key.armored},
        headers={"Accept": "text/html", "Origin": "http://testserver"},
    )
    assert r.status_code == 200 and "published only by the operator" in r.text
    assert 'name="email" value="mia@ops.example"' not in r.text


def test_id_tokens_follow_the_domain_rules(settings: Settings, core: Core) -> None:
    with (
        LocalIssuer.start(email="sam@sso.example") as corporate,
        LocalIssuer.start(email="sam@sso.example") as other,
    ):
        rules = [
            {
                "domain": "sso.example",
                "submit": ["oidc", "operator"],
                "oidc_issuers": [corporate.url],
            },
            {"domain": "slow.example", "oidc_publish": "after_email"},
        ]
        s = _with(
            settings,
            oidc_issuers=[corporate.url, other.url],
            oidc_audiences=[corporate.audience],
            policy={"domains": rules},
        )
        sam = TestKey.generate("Sam <sam@sso.example>")
        with in_process(s) as c:
            r = c.request("POST", "/pub/sam@sso.example", content=sam.armored)
            assert r.status_code == 403 and "identity provider" in r.json()["message"]
            r = c.request(
                "POST",
                "/pub/sam@sso.example",
                content=sam.armored,
                headers={"Authorization": other.bearer(aud=corporate.audience)},
            )
            assert r.status_code == 403 and f"Id tokens from {other.url}" in r.json()["message"]
            r = c.request(
                "POST",
                "/pub/sam@sso.example",
                content=sam.armored,
                headers={"Authorization": corporate.bearer()},
            )
            assert r.status_code == 200 and r.text == "Saved"
            assert c.get("/pub/sam@sso.example").status_code == 200
            # Elsewhere an id token still needs the mailed link.
            slow = TestKey.generate("Sid <sid@slow.example>")
            r = c.request(
                "POST",
                "/pub/sid@slow.example",
                content=slow.armored,
                headers={"Authorization": corporate.bearer(email="sid@slow.example")},
            )
            assert r.status_code == 200 and "confirmation email was sent" in r.text
            assert c.get("/pub/sid@slow.example").status_code == 404
            assert _mails(core, "sid@slow.example") == 1
    # The audit log names the id token's issuer and subject, and where it came from.
    [entry] = [
        e
        for e in AuditStore(core.db).all(AuditFilter(action="attest"))
        if e.email == "sam@sso.example"
    ]
    assert entry.actor_kind == "oidc" and entry.actor.startswith(corporate.url + " ")
    assert entry.client_address == "127.0.0.1"


def test_a_confirmation_follows_the_policy_in_force_when_it_is_used(
    client: InProcess, core: Core, attestation: Attestation
) -> None:
    key = TestKey.generate("Ida <ida@mail.example>")
    assert client.request("POST", "/pub/ida@mail.example", content=key.armored).status_code == 200
    token = verify_link(core, "ida@mail.example")
    stricter = _with(
        core.settings, policy={"domains": [{"domain": "mail.example", "submit": ["operator"]}]}
    )
    _follow(attestation, stricter)  # the operator reloaded a stricter policy meanwhile
    view = attestation.verify.confirm(token, "198.51.100.7")
    assert view.state is ConfirmState.REFUSED and "only by the operator" in view.message
    assert client.get("/pub/ida@mail.example").status_code == 404


def test_the_upstream_rule_decides_which_addresses_leave_the_server(settings: Settings) -> None:
    with (
        stub_server(lambda path: (404, b"")) as upstream,
        stub_server(lambda path: (404, b"")) as directory,
    ):
        s = _with(
            settings,
            upstreams=[
                {"name": "up", "kind": "vks", "url": upstream.url},
                {"name": "directory", "kind": "hkp", "url": directory.url},
            ],
            upstream_deny_domains=["corp.example", "*.partner.example", "partner.example"],
            policy={
                "domains": [
                    {"domain": "corp.example", "upstream": ["directory"]},
                    {"domain": "secret.example", "upstream": False},
                    {"domain": "partner.example", "upstream": True},  # the rule wins
                    {"domain": "*.partner.example", "serve_outside": True},  # no say: lists
                ]
            },
        )
        with in_process(s) as c:
            for address in (
                "a@corp.example",
                "b@partner.example",
                "c@eu.partner.example",
                "d@secret.example",
            ):
                assert c.get(f"/pub/{address}").status_code == 404
                assert c.get(f"/vks/v1/by-email/{address}").status_code == 404
            asked = " ".join(upstream.requests)
            assert "partner.example" in asked  # the rule allows it, over the old deny list
            assert "corp.example" not in asked  # the rule names only the directory
            assert "eu.partner.example" not in asked  # no rule says: the deny list does
            assert "secret.example" not in asked
            # The directory is asked about its own domain, and about partner.example.
            inside = " ".join(directory.requests)
            assert "corp.example" in inside and "secret.example" not in inside


def test_several_keys_per_address_for_one_domain(
    settings: Settings, attestation: Attestation
) -> None:
    s = _with(
        settings,
        policy={"domains": [{"domain": "team.example", "multiple_keys_per_address": True}]},
    )
    _follow(attestation, s)
    first = TestKey.generate("Tom <tom@team.example>").with_user_id("Tom <tom@solo.example>")
    second = TestKey.generate("Tom <tom@team.example>").with_user_id("Tom <tom@solo.example>")
    for key in (first, second):
        attestation.imports.keyring(key.public, attest_emails=True)
    both = {first.fingerprint, second.fingerprint}
    with in_process(s) as c:
        for path in (
            "/pub/tom@team.example",
            "/vks/v1/by-email/tom@team.example",
            "/pks/lookup?op=get&search=tom@team.example",
            f"/.well-known/openpgpkey/team.example/hu/{wkd_hash('tom')}",
        ):
            r = c.get(path)
            assert {c.fingerprint.hex for c in parse_certificates(r.content)} == both, path
        # The conflict rule still applies elsewhere: the second key replaced the first.
        for path in (
            "/pub/tom@solo.example",
            "/vks/v1/by-email/tom@solo.example",
            f"/.well-known/openpgpkey/solo.example/hu/{wkd_hash('tom')}",
        ):
            r = c.get(path)
            assert [c.fingerprint.hex for c in parse_certificates(r.content)] == [
                second.fingerprint
            ], path
