"""Attestation through the FlowCrypt API, over real HTTP and a real SMTP server:
submit → mail → GET link (publishes nothing) → POST confirm → GET /pub/{email}."""

from __future__ import annotations

import subprocess
import tempfile
from collections.abc import Iterator
from datetime import timedelta

import httpx
import pytest

from attester.config import Settings
from attester.openpgp import parse_certificates
from attester.service.attestation import Attestation
from attester.service.core import Core
from tests.support import daemons
from tests.support.clock import Clock
from tests.support.flows import link_in, text_of
from tests.support.keys import TestKey
from tests.support.oidc_issuer import LocalIssuer
from tests.support.server import AppServer, Server
from tests.support.smtp import LoopbackSMTPServer


def _served_uids(resp: httpx.Response) -> list[str]:
    [cert] = parse_certificates(resp.content)
    return [u.text for u in cert.user_ids]


def _confirm(live: Server, link: str) -> httpx.Response:
    return live.client.post(link)


def test_full_flow(live: Server, smtp_server: LoopbackSMTPServer) -> None:
    key = TestKey.generate("Alice <alice@example.org>").with_user_id("Alice <alice@work.example>")
    r = live.client.post(
        "/pub/alice@example.org",
        content=key.armored,
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert r.status_code == 200, r.text
    assert "confirmation email was sent to alice@example.org" in r.text
    [mail] = smtp_server.wait_for(1)
    assert mail["To"].addresses[0].addr_spec == "alice@example.org"
    assert mail["Auto-Submitted"] == "auto-generated"
    assert key.fingerprint in text_of(mail).replace(" ", "")
    assert "alice@work.example" not in text_of(mail)  # one mail per address, never a list
    link = link_in(mail)
    # A link scanner fetching the URL publishes nothing.
    assert live.client.get(link).status_code == 200
    assert live.client.head(link).status_code == 200
    assert live.client.get("/pub/alice@example.org").status_code == 404
    page = live.client.get(link).text
    assert "Confirm" in page and "alice@example.org" in page and 'method="post"' in page
    r = _confirm(live, link)
    assert r.status_code == 200 and "Verified" in r.text
    got = live.client.get("/pub/alice@example.org")
    assert got.status_code == 200
    assert _served_uids(got) == ["Alice <alice@example.org>"]
    assert live.client.get("/pub/alice@work.example").status_code == 404
    # Second use of the link.
    again = _confirm(live, link)
    assert "Already verified" in again.text
    assert "Already verified" in live.client.get(link).text
    # Nothing else was mailed.
    assert len(smtp_server.messages) == 1


def test_address_must_be_on_the_key(live: Server) -> None:
    key = TestKey.generate("Bob <bob@example.org>")
    r = live.client.post("/pub/someone@example.org", content=key.armored)
    assert r.status_code == 400
    assert "someone@example.org" in r.json()["message"]


@pytest.mark.parametrize(
    ("body", "fragment"),
    [("", "empty"), ("not a key", "")],
)
def test_bad_bodies(live: Server, body: str, fragment: str) -> None:
    r = live.client.post("/pub/bob@example.org", content=body)
    assert r.status_code == 400
    assert fragment in r.json()["message"]


def test_secret_key_refused(live: Server) -> None:
    key = TestKey.generate("Sec <sec@example.org>")
    secret = key.secret_armored
    assert "PRIVATE KEY" in secret
    r = live.client.post("/pub/sec@example.org", content=secret)
    assert r.status_code == 400
    assert "secret" in r.json()["message"].lower()


def test_too_large(live: Server, settings: Settings) -> None:
    r = live.client.post("/pub/big@example.org", content=b"x" * (settings.max_input_bytes + 1))
    assert r.status_code == 413
    assert r.json()["code"] == 413


def test_rate_limit_one_mail_per_window(live: Server, smtp_server: LoopbackSMTPServer) -> None:
    key = TestKey.generate("Carol <carol@example.org>")
    first = live.client.post("/pub/carol@example.org", content=key.armored).text
    assert "was sent" in first
    smtp_server.wait_for(1)
    # The same key again: no second mail, and the same answer (it reveals nothing).
    r = live.client.post("/pub/carol@example.org", content=key.armored)
    assert r.status_code == 200 and r.text == first
    with pytest.raises(AssertionError):
        smtp_server.wait_for(2, timeout=1.0)
    # Another key gets a link of its own (one mail per address and key).
    other = TestKey.generate("Carol <carol@example.org>")
    assert live.client.post("/pub/carol@example.org", content=other.armored).text == first
    smtp_server.wait_for(2)


def test_expired_link_offers_resend(
    live: Server, smtp_server: LoopbackSMTPServer, clock: Clock, settings: Settings
) -> None:
    key = TestKey.generate("Dan <dan@example.org>")
    live.client.post("/pub/dan@example.org", content=key.armored)
    link = link_in(smtp_server.wait_for(1)[0])
    clock.now += timedelta(seconds=settings.verify_token_seconds + 1)
    page = live.client.get(link)
    assert "expired" in page.text and "/resend" in page.text
    assert "expired" in _confirm(live, link).text
    assert live.client.get("/pub/dan@example.org").status_code == 404
    r = live.client.post(link + "/resend")
    assert r.status_code == 200
    fresh = link_in(smtp_server.wait_for(2)[1])
    assert fresh != link
    assert "Verified" in _confirm(live, fresh).text
    assert live.client.get("/pub/dan@example.org").status_code == 200


def test_invalid_token(live: Server) -> None:
    r = live.client.get("/verify/not-a-real-token")
    assert r.status_code == 404 and "not valid" in r.text
    assert live.client.post("/verify/not-a-real-token").status_code == 404


def _publish(live: Server, smtp: LoopbackSMTPServer, key: TestKey, email: str) -> None:
    before = len(smtp.messages)
    r = live.client.post(f"/pub/{email}", content=key.armored)
    assert "was sent" in r.text, r.text
    mail = smtp.wait_for(before + 1)[before]
    assert "Verified" in _confirm(live, link_in(mail)).text


def test_update_of_attested_key_takes_effect_at_once(
    live: Server, smtp_server: LoopbackSMTPServer
) -> None:
    key = TestKey.generate("Erin <erin@example.org>")
    _publish(live, smtp_server, key, "erin@example.org")
    newer = key.with_user_id("Erin (laptop) <erin@example.org>")
    r = live.client.post("/pub/erin@example.org", content=newer.armored)
    assert r.status_code == 200 and "updated" in r.text
    assert sorted(_served_uids(live.client.get("/pub/erin@example.org"))) == [
        "Erin (laptop) <erin@example.org>",
        "Erin <erin@example.org>",
    ]
    assert len(smtp_server.messages) == 1


def test_conflict_replaces_previous_key_and_tells_the_address(
    live: Server, smtp_server: LoopbackSMTPServer, clock: Clock
) -> None:
    old = TestKey.generate("Finn <finn@example.org>")
    new = TestKey.generate("Finn <finn@example.org>")
    _publish(live, smtp_server, old, "finn@example.org")
    clock.now += timedelta(hours=1, seconds=1)  # past the per-address mail rate limit
    _publish(live, smtp_server, new, "finn@example.org")
    replaced = smtp_server.wait_for(3)[2]
    assert "replaced" in replaced["Subject"].lower()
    body = text_of(replaced).replace(" ", "")
    assert old.fingerprint in body and new.fingerprint in body
    got = live.client.get("/pub/finn@example.org")
    assert got.text.count("BEGIN PGP PUBLIC KEY BLOCK") == 1
    assert str(parse_certificates(got.content)[0].fingerprint) == new.fingerprint
    # The old key is still there by fingerprint, without the address.
    assert _served_uids(live.client.get(f"/pub/{old.fingerprint}")) == []


def test_several_keys_per_address_when_configured(
    mail_settings: Settings, clock: Clock, smtp_server: LoopbackSMTPServer
) -> None:
    s = mail_settings.model_copy(
        update={"multiple_keys_per_address": True, "mail_rate_window_seconds": 0}
    )
    with AppServer.start(s, clock=clock) as live:
        a, b = TestKey.generate("G <g@example.org>"), TestKey.generate("G <g@example.org>")
        _publish(live, smtp_server, a, "g@example.org")
        _publish(live, smtp_server, b, "g@example.org")
        got = live.client.get("/pub/g@example.org")
        found = {str(c.fingerprint) for c in parse_certificates(got.content)}
        assert found == {a.fingerprint, b.fingerprint}
        assert got.text.count("BEGIN PGP PUBLIC KEY BLOCK") == 2
        assert all("replaced" not in m["Subject"].lower() for m in smtp_server.messages)


def test_revocation_unpublishes_but_stays_retrievable(
    live: Server, smtp_server: LoopbackSMTPServer
) -> None:
    key = TestKey.generate("Hal <hal@example.org>").with_user_id("Hal <hal@old.example>")
    _publish(live, smtp_server, key, "hal@example.org")
    _publish(live, smtp_server, key, "hal@old.example")
    # A revoked user ID unpublishes that address only (legacy PUT /pub/{longid} update).
    r = live.client.put(
        f"/pub/{key.key_id}",
        content=_armor(key.public + key.user_id_revocation("Hal <hal@old.example>")),
    )
    assert r.status_code == 200, r.text
    assert live.client.get("/pub/hal@old.example").status_code == 404
    assert _served_uids(live.client.get("/pub/hal@example.org")) == ["Hal <hal@example.org>"]
    # A revoked primary key unpublishes every address; by fingerprint it is still served.
    r = live.client.put(f"/pub/{key.key_id}", content=_armor(key.revoked_public()))
    assert r.status_code == 200
    assert live.client.get("/pub/hal@example.org").status_code == 404
    [cert] = parse_certificates(live.client.get(f"/pub/{key.fingerprint}").content)
    assert cert.revoked


def _armor(data: bytes) -> str:
    from attester.openpgp import armor

    return armor(data)


def test_put_pub_refuses_other_keys(live: Server) -> None:
    key = TestKey.generate("Ida <ida@example.org>")
    other = TestKey.generate("Ida <ida@example.org>")
    assert live.client.put(f"/pub/{key.key_id}", content=key.armored).status_code == 404
    assert live.client.put(f"/pub/{key.key_id}", content=other.armored).status_code == 400
    assert live.client.put("/pub/ida@example.org", content=key.armored).status_code == 400


# ---- OIDC id tokens


@pytest.fixture
def issuer() -> Iterator[LocalIssuer]:
    with LocalIssuer.start(email="jo@example.org") as iss:
        yield iss


@pytest.fixture
def oidc_live(mail_settings: Settings, clock: Clock, issuer: LocalIssuer) -> Iterator[Server]:
    s = mail_settings.model_copy(
        update={"oidc_issuers": (issuer.url,), "oidc_audiences": (issuer.audience,)}
    )
    with AppServer.start(s, clock=clock) as server:
        yield server


def test_oidc_publishes_at_once_and_replaces(
    oidc_live: Server, issuer: LocalIssuer, smtp_server: LoopbackSMTPServer
) -> None:
    first = TestKey.generate("Jo <jo@example.org>")
    r = oidc_live.client.post(
        "/pub/jo@example.org", content=first.armored, headers={"Authorization": issuer.bearer()}
    )
    assert r.status_code == 200 and r.text == "Saved"
    assert (
        str(parse_certificates(oidc_live.client.get("/pub/jo@example.org").content)[0].fingerprint)
        == first.fingerprint
    )
    second = TestKey.generate("Jo <JO@example.org>")
    r = oidc_live.client.post(
        "/pub/Jo%40Example.org",
        content=second.armored,
        headers={"Authorization": issuer.bearer(alg="ES256")},
    )
    assert r.status_code == 200 and r.text == "Saved"
    got = oidc_live.client.get("/pub/jo@example.org")
    assert str(parse_certificates(got.content)[0].fingerprint) == second.fingerprint
    [replaced] = smtp_server.wait_for(1)
    assert "replaced" in replaced["Subject"].lower()


@pytest.mark.parametrize(
    "make_header",
    [
        lambda i: "Bearer",  # h11 will not send the trailing space of "Bearer "
        lambda i: "Bearer undefined",
        lambda i: i.bearer(signing_kid="other"),
        lambda i: i.bearer(alg="none"),
        lambda i: i.bearer(exp=int(i.clock()) - 3600, iat=int(i.clock()) - 7200),
        lambda i: i.bearer(iss="https://evil.example"),
        lambda i: i.bearer(aud="someone-else"),
        lambda i: i.bearer(email="other@example.org"),
    ],
    ids=[
        "empty",
        "undefined",
        "bad-signature",
        "alg-none",
        "expired",
        "wrong-issuer",
        "wrong-audience",
        "email-mismatch",
    ],
)
def test_oidc_refusals_are_401(oidc_live: Server, issuer: LocalIssuer, make_header) -> None:  # type: ignore[no-untyped-def]
    issuer.add_rsa_key("other", publish=False)
    key = TestKey.generate("Jo <jo@example.org>")
    r = oidc_live.client.post(
        "/pub/jo@example.org", content=key.armored, headers={"Authorization": make_header(issuer)}
    )
    assert r.status_code == 401, r.text
    body = r.json()
    assert body["code"] == 401 and body["error"]["code"] == 401 and body["message"]
    assert oidc_live.client.get("/pub/jo@example.org").status_code == 404


# ---- welcome, legacy endpoints


def _sign_only_key(uid: str) -> str:
    with tempfile.TemporaryDirectory() as home:
        daemons.watch(home)
        env = {"GNUPGHOME": home, "PATH": "/usr/bin:/bin"}
        subprocess.run(
            [
                "gpg",
                "--batch",
                "--passphrase",
                "",
                "--quick-gen-key",
                uid,
                "ed25519",
                "sign",
                "never",
            ],
            env=env,
            check=True,
            capture_output=True,
        )
        out = subprocess.run(
            ["gpg", "--armor", "--export", uid], env=env, check=True, capture_output=True
        )
        subprocess.run(["gpgconf", "--kill", "all"], env=env, check=False)
        return out.stdout.decode()


def test_welcome_message(
    oidc_live: Server, issuer: LocalIssuer, smtp_server: LoopbackSMTPServer
) -> None:
    key = TestKey.generate("Kim <kim@example.org>")
    auth = {"Authorization": issuer.bearer(email="kim@example.org")}
    body = {"email": "kim@example.org", "pubkey": key.armored}
    for path in ("/welcome-message", "/test/welcome"):
        r = oidc_live.client.post(path, json=body, headers=auth)
        assert r.status_code == 200
    [mail] = smtp_server.wait_for(1)
    assert mail["To"].addresses[0].addr_spec == "kim@example.org"
    r = oidc_live.client.post("/welcome-message", json=body, headers=auth)
    assert r.json() == {"sent": False}
    other = {"Authorization": issuer.bearer(email="x@example.org")}
    r = oidc_live.client.post(
        "/welcome-message", json={"email": "x@example.org", "pubkey": key.armored}, headers=other
    )
    assert r.status_code == 400 and r.json()["message"] == "This key does not appear valid"
    sign_only = _sign_only_key("Sig <sig@example.org>")
    r = oidc_live.client.post(
        "/welcome-message",
        json={"email": "sig@example.org", "pubkey": sign_only},
        headers={"Authorization": issuer.bearer(email="sig@example.org")},
    )
    assert r.status_code == 400 and r.json()["message"] == "This key does not appear valid"
    assert oidc_live.client.post("/welcome-message", content=b"{").status_code == 400


def test_welcome_first_answer_is_sent_true(oidc_live: Server, issuer: LocalIssuer) -> None:
    key = TestKey.generate("Lee <lee@example.org>")
    r = oidc_live.client.post(
        "/welcome-message",
        json={"email": "lee@example.org", "pubkey": key.armored},
        headers={"Authorization": issuer.bearer(email="lee@example.org")},
    )
    assert r.json() == {"sent": True}


def test_legacy_submit_and_lookup(live: Server, smtp_server: LoopbackSMTPServer) -> None:
    key = TestKey.generate("Max <max@example.org>")
    r = live.client.post(
        "/initial/legacy_submit", json={"email": "max@example.org", "pubkey": key.armored}
    )
    assert r.json() == {"saved": True, "attested": False}
    r = live.client.post("/lookup/email", json={"email": "max@example.org"})
    assert r.json() == {"pubkey": None, "has_cryptup": False}
    _confirm(live, link_in(smtp_server.wait_for(1)[0]))
    r = live.client.post(
        "/initial/legacy_submit", json={"email": "max@example.org", "pubkey": key.armored}
    )
    assert r.json() == {"saved": True, "attested": True}
    r = live.client.post("/lookup/email", json={"email": "MAX@example.org"})
    body = r.json()
    assert body["has_cryptup"] is True and "BEGIN PGP PUBLIC KEY BLOCK" in body["pubkey"]
    r = live.client.post(
        "/initial/legacy_submit", json={"email": "nope@example.org", "pubkey": key.armored}
    )
    assert r.status_code == 400 and r.json()["saved"] is False and r.json()["error"]


def test_confirming_after_the_user_id_was_revoked_publishes_nothing(
    live: Server, smtp_server: LoopbackSMTPServer, core: Core
) -> None:
    """The address is published only if the key still carries a valid, unrevoked user ID
    with it when the link is confirmed."""
    key = TestKey.generate("Quinn <quinn@example.org>").with_user_id("Quinn <q@old.example>")
    assert "was sent" in live.client.post("/pub/q@old.example", content=key.armored).text
    link = link_in(smtp_server.wait_for(1)[0])
    revoked = key.public + key.user_id_revocation("Quinn <q@old.example>")
    attestation = Attestation.build(core)
    attestation.submit.submit(revoked)  # the owner uploads the revocation meanwhile
    r = _confirm(live, link)
    assert r.status_code == 409
    assert live.client.get("/pub/q@old.example").status_code == 404
    assert _served_uids(live.client.get(f"/pub/{key.fingerprint}")) == []
