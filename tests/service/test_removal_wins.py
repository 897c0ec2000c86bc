"""A removal wins over every path that would bring the key or address back: uploads on
every protocol, confirmation links, OIDC id tokens, the operator's import, mirrors and
dumps, and upstream answers, until it is lifted. Runs on SQLite and PostgreSQL."""

from __future__ import annotations

import io
import re
from collections.abc import Iterator

import pytest
from sqlalchemy import select

from attester.config import Settings
from attester.federation import DumpImporter
from attester.openpgp.types import Fingerprint
from attester.service.attestation import Attestation
from attester.service.core import Core
from attester.service.removals import Target
from attester.store.admin import AdminStore
from attester.store.audit import Actor, ActorKind
from attester.store.schema import outbox
from tests.federation.peers import settings_with, stub_server
from tests.support.asgi import InProcess, in_process
from tests.support.keys import TestKey
from tests.support.oidc_issuer import LocalIssuer
from tests.web.forms import csrf_token

CLI = Actor(ActorKind.CLI, "tester")


@pytest.fixture
def client(settings: Settings) -> Iterator[InProcess]:
    with in_process(settings) as c:
        yield c


def _remove(attestation: Attestation, **target: str) -> None:
    assert attestation.admin.removals.remove(Target.parse(**target), "policy", CLI).changed


def _restore(attestation: Attestation, **target: str) -> None:
    attestation.admin.removals.restore(Target.parse(**target), CLI)


def _stored(core: Core, key: TestKey) -> bool:
    return AdminStore(core.db).key(Fingerprint(key.fingerprint)) is not None


def test_uploads_of_a_removed_key_are_refused_on_every_protocol(
    client: InProcess, attestation: Attestation, core: Core
) -> None:
    key = TestKey.generate("Mallory <mallory@example.com>")
    _remove(attestation, fingerprint=key.fingerprint)  # removed before it was ever seen
    r = client.request("POST", "/pub/mallory@example.com", content=key.armored)
    assert r.status_code == 403 and "removed from distribution" in r.json()["message"]
    r = client.request("POST", "/vks/v1/upload", json={"keytext": key.armored})
    assert r.status_code == 400 and "removed from distribution" in r.json()["error"]
    r = client.request("POST", "/pks/add", data={"keytext": key.armored})
    assert r.status_code == 400 and "removed from distribution" in r.text
    r = client.request(
        "POST",
        "/initial/legacy_submit",
        json={"email": "mallory@example.com", "pubkey": key.armored},
    )
    assert r.status_code == 403 and not r.json()["saved"]
    assert not _stored(core, key)
    # The web form says so too (it needs its form token first).
    r = client.request(
        "POST",
        "/upload",
        data={"csrf": csrf_token(client, "/upload"), "keytext": key.armored},
        headers={"Accept": "text/html", "Origin": "http://testserver"},
    )
    assert r.status_code == 403 and "removed from distribution" in r.text
    _restore(attestation, fingerprint=key.fingerprint)
    r = client.request("POST", "/vks/v1/upload", json={"keytext": key.armored})
    assert r.status_code == 200 and _stored(core, key)


def verify_link(core: Core, email: str) -> str:
    """The token of the latest verification mail queued for ``email`` (the outbox keeps
    the rendered mail)."""
    with core.db.read() as conn:
        text = conn.execute(
            select(outbox.c.body_text)
            .where(outbox.c.recipient == email, outbox.c.kind == "verify")
            .order_by(outbox.c.id.desc())
        ).scalar()
    link = re.search(r"/verify/([A-Za-z0-9_-]+)", text or "")
    assert link is not None, text
    return link.group(1)


def test_a_confirmation_link_does_not_publish_a_removed_address(
    client: InProcess, attestation: Attestation, core: Core
) -> None:
    key = TestKey.generate("Dan <dan@example.com>")
    r = client.request("POST", "/pub/dan@example.com", content=key.armored)
    assert r.status_code == 200
    token = verify_link(core, "dan@example.com")
    _remove(attestation, email="dan@example.com")
    r = client.request(
        "POST",
        f"/verify/{token}",
        headers={"Accept": "text/html", "Origin": "http://testserver"},
    )
    assert r.status_code == 403 and "removed from distribution" in r.text
    # A new submission for the address is refused outright, and nothing was published.
    r = client.request("POST", "/pub/dan@example.com", content=key.armored)
    assert r.status_code == 403
    _restore(attestation, email="dan@example.com")
    assert client.get("/pub/dan@example.com").status_code == 404  # the link was refused


def test_an_id_token_does_not_publish_a_removed_address(
    settings: Settings, attestation: Attestation
) -> None:
    with LocalIssuer.start(email="olga@example.com") as issuer:
        s = settings.model_copy(
            update={"oidc_issuers": (issuer.url,), "oidc_audiences": (issuer.audience,)}
        )
        key = TestKey.generate("Olga <olga@example.com>")
        _remove(attestation, domain="example.com")
        with in_process(s) as c:
            r = c.request(
                "POST",
                "/pub/olga@example.com",
                content=key.armored,
                headers={"Authorization": issuer.bearer()},
            )
            assert r.status_code == 403 and "removed from distribution" in r.json()["message"]
            _restore(attestation, domain="example.com")
            r = c.request(
                "POST",
                "/pub/olga@example.com",
                content=key.armored,
                headers={"Authorization": issuer.bearer()},
            )
            assert r.status_code == 200 and r.text == "Saved"
            assert c.get("/pub/olga@example.com").status_code == 200


def test_imports_mirrors_and_dumps_store_but_never_serve_what_is_removed(
    client: InProcess, attestation: Attestation, core: Core
) -> None:
    a = TestKey.generate("Ann <ann@example.com>")
    b = TestKey.generate("Ben <ben@mirror.example>")
    _remove(attestation, email="ann@example.com")
    _remove(attestation, fingerprint=b.fingerprint)
    s = attestation.imports.keyring(a.public, attest_emails=True)
    assert (s.attested, s.refused) == (0, 1)
    assert _stored(core, a) and client.get("/pub/ann@example.com").status_code == 404
    mirror = DumpImporter(core, mirror="keyserver.example")
    summary = mirror.load(io.BytesIO(b.public))
    assert summary.new == 1 and _stored(core, b)
    for path in (
        f"/pub/{b.fingerprint}",
        "/pub/ben@mirror.example",
        f"/vks/v1/by-keyid/{b.key_id}",
    ):
        assert client.get(path).status_code == 404, path
    # The mirror sends it again (a dump reread, a refresh): still hidden.
    DumpImporter(core, mirror="keyserver.example").load(io.BytesIO(b.public))
    assert client.get(f"/pub/{b.fingerprint}").status_code == 404
    _restore(attestation, fingerprint=b.fingerprint)
    r = client.get("/pub/ben@mirror.example")
    assert r.status_code == 200 and r.headers["X-Attester-Origin"].startswith("mirror:")
    # The import was refused while the address was removed: lifting restores what was
    # there (nothing attested), and the operator can attest now.
    _restore(attestation, email="ann@example.com")
    assert client.get("/pub/ann@example.com").status_code == 404
    assert attestation.imports.keyring(a.public, attest_emails=True).attested == 1
    assert client.get("/pub/ann@example.com").status_code == 200


def test_upstreams_are_not_asked_about_what_is_removed_and_their_answers_stay_hidden(
    settings: Settings, attestation: Attestation
) -> None:
    key = TestKey.generate("Uma <uma@partner.example>")
    with stub_server(lambda path: (200, key.armored.encode())) as upstream:
        s = settings_with(settings, upstreams=[{"name": "up", "kind": "vks", "url": upstream.url}])
        _remove(attestation, fingerprint=key.fingerprint)
        _remove(attestation, domain="partner.example")
        with in_process(s) as c:
            assert c.get(f"/pub/{key.fingerprint}").status_code == 404
            assert c.get("/pub/uma@partner.example").status_code == 404
            assert upstream.requests == []  # nothing about it left the server
            # A key id names no removal: the upstream is asked, its answer stored, and
            # still not served.
            assert c.get(f"/pub/{key.key_id}").status_code == 404
            assert len(upstream.requests) == 1
            _restore(attestation, fingerprint=key.fingerprint)
            r = c.get(f"/pub/{key.fingerprint}")
            assert r.status_code == 200 and r.headers["X-Attester-Origin"].startswith("upstream:up")
            assert c.get("/pub/uma@partner.example").status_code == 404  # domain still removed
            _restore(attestation, domain="partner.example")
            assert c.get("/pub/uma@partner.example").status_code == 200
