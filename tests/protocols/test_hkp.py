"""HKP over real HTTP on loopback (``hkp.md``): every lookup op and option, the index
formats and their escaping, /pks/add through the attestation service (with the mail round
trip), and /pks/hashquery framing. Each test runs on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import struct
import warnings
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

import httpx
import pytest
from pysequoia import Profile, Tsk

from attester import __version__
from attester.config import Settings
from attester.openpgp import armor, parse_certificates, sks_digest
from attester.openpgp.types import Fingerprint
from attester.protocols.hkp import escape_uid, parse_hashquery
from attester.service.attestation import Attestation
from attester.service.core import Core
from attester.service.errors import BadRequest
from tests.support import hashquery
from tests.support.clock import Clock
from tests.support.flows import link_in, text_of
from tests.support.keys import TestKey
from tests.support.server import AppServer, Server
from tests.support.smtp import LoopbackSMTPServer


def _lookup(live: Server, **params: str) -> httpx.Response:
    return live.client.get("/pks/lookup", params=params)


def _publish(attestation: Attestation, key: TestKey, *domains: str) -> None:
    summary = attestation.imports.keyring(
        key.public, attest_emails=True, domains=list(domains) or None
    )
    assert summary.rejected == 0 and summary.attested >= 1


def _uids(resp: httpx.Response) -> list[str]:
    [cert] = parse_certificates(resp.content)
    return sorted(u.text for u in cert.user_ids)


def _lines(resp: httpx.Response) -> list[str]:
    assert resp.text.endswith("\n") and "\r" not in resp.text
    return resp.text.splitlines()


@pytest.fixture
def alice(attestation: Attestation) -> TestKey:
    key = TestKey.generate("Alice Example <alice@example.org>").with_user_id(
        "Alice (private) <alice@hidden.example>"
    )
    _publish(attestation, key, "example.org")
    return key


# ---- op=get


def test_get_by_email_serves_only_attested_user_ids(server: Server, alice: TestKey) -> None:
    for search in ("alice@example.org", "<alice@example.org>", "ALICE@Example.ORG"):
        r = _lookup(server, op="get", search=search, options="mr")
        assert r.status_code == 200, r.text
        assert r.headers["content-type"] == "application/pgp-keys; charset=UTF-8"
        assert r.headers["access-control-allow-origin"] == "*"
        assert r.headers["x-hkp-results-count"] == "1"
        assert r.text.startswith("-----BEGIN PGP PUBLIC KEY BLOCK-----")
        assert _uids(r) == ["Alice Example <alice@example.org>"]
    # The unattested address finds nothing, and a HEAD answers like the GET.
    assert _lookup(server, op="get", search="alice@hidden.example").status_code == 404
    assert server.client.head("/pks/lookup?op=get&search=alice@example.org").status_code == 200


def _subkey_ids(key: TestKey) -> tuple[str, str]:
    [cert] = parse_certificates(key.public)
    sub = cert.subkeys[0].fingerprint
    return sub.hex, sub.key_id.hex


@pytest.mark.parametrize(
    "form",
    [
        "0x{fpr}",
        "0x{fpr_lower}",
        "{fpr}",
        "0x{kid}",
        "0x{kid_lower}",
        "0x{sub_fpr}",
        "0x{sub_kid}",
    ],
)
def test_get_by_fingerprint_and_key_id(server: Server, alice: TestKey, form: str) -> None:
    sub_fpr, sub_kid = _subkey_ids(alice)
    search = form.format(
        fpr=alice.fingerprint,
        fpr_lower=alice.fingerprint.lower(),
        kid=alice.key_id,
        kid_lower=alice.key_id.lower(),
        sub_fpr=sub_fpr,
        sub_kid=sub_kid,
    )
    r = _lookup(server, op="get", search=search, options="mr")
    assert r.status_code == 200, r.text
    [cert] = parse_certificates(r.content)
    assert str(cert.fingerprint) == alice.fingerprint
    assert [u.text for u in cert.user_ids] == ["Alice Example <alice@example.org>"]


def test_identity_free_when_nothing_is_attested(server: Server, core: Core) -> None:
    key = TestKey.generate("Nobody <nobody@example.org>")
    core_import(core, key)
    r = _lookup(server, op="get", search="0x" + key.fingerprint)
    assert r.status_code == 200
    [cert] = parse_certificates(r.content)
    assert cert.user_ids == () and len(cert.subkeys) == 2
    idx = _lookup(server, op="index", search="0x" + key.fingerprint, options="mr")
    assert _lines(idx)[0] == "info:1:1"
    assert [line.split(":")[0] for line in _lines(idx)] == ["info", "pub"]
    for op in ("get", "index"):
        assert _lookup(server, op=op, search="nobody@example.org").status_code == 404
        assert _lookup(server, op=op, search="nobody").status_code == 404


def core_import(core: Core, key: TestKey) -> None:
    """Store a key without attesting anything (as an HKP upload without verification)."""
    with core.store.write() as tx:
        [cert] = parse_certificates(key.public)
        core.ingest.merge(tx, cert, "test", datetime.now(UTC))


def test_v6_fingerprint(server: Server, attestation: Attestation) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        tsk = Tsk.generate(user_ids=["Six <six@example.org>"], profile=Profile.RFC9580)
    key = TestKey(tsk, tsk.extract_certificate())
    _publish(attestation, key)
    assert len(key.fingerprint) == 64
    r = _lookup(server, op="index", search="0x" + key.fingerprint, options="mr")
    assert r.status_code == 200, r.text
    assert _lines(r)[1].startswith(f"pub:{key.fingerprint}:27:")
    # A v6 key id is the first 64 bits of the fingerprint.
    r = _lookup(server, op="get", search="0x" + key.fingerprint[:16])
    assert r.status_code == 200
    assert str(parse_certificates(r.content)[0].fingerprint) == key.fingerprint


# ---- op=index / vindex


def test_machine_readable_index(server: Server, alice: TestKey, core: Core) -> None:
    [cert] = parse_certificates(alice.public)
    created = int(cert.primary.created.timestamp())
    [uid] = [u for u in cert.user_ids if u.text == "Alice Example <alice@example.org>"]
    uid_created = int(uid.created.timestamp())
    for op in ("index", "vindex"):
        r = _lookup(server, op=op, search="alice@example.org", options="mr")
        assert r.status_code == 200
        assert r.headers["content-type"] == "text/plain; charset=utf-8"
        assert r.headers["x-hkp-results-count"] == "1"
        assert r.headers["access-control-allow-origin"] == "*"
        assert _lines(r) == [
            "info:1:1",
            f"pub:{alice.fingerprint}:22:255:{created}::",
            f"uid:Alice Example <alice@example.org>:{uid_created}::",
        ]


def test_index_escaping(server: Server, attestation: Attestation) -> None:
    key = TestKey.generate("Zoë 100% (a:b) <zoe@esc.example>")
    _publish(attestation, key)
    r = _lookup(server, op="index", search="zoe@esc.example", options="mr")
    uid = _lines(r)[2]
    assert uid.startswith("uid:Zo%C3%AB 100%25 (a%3Ab) <zoe@esc.example>:")
    assert uid.count(":") == 4


def test_escape_uid_bytes() -> None:
    assert escape_uid(b"a:b%c") == "a%3Ab%25c"
    assert escape_uid("Zoë\t<z@x.example>".encode()) == "Zo%C3%AB%09<z@x.example>"
    assert escape_uid(b"\x7f\x80\xff ~") == "%7F%80%FF ~"  # DEL and 8-bit bytes too


def test_index_lists_only_attested_user_ids(
    server: Server, attestation: Attestation, alice: TestKey
) -> None:
    r = _lookup(server, op="index", search="0x" + alice.fingerprint, options="mr")
    assert [line for line in _lines(r) if line.startswith("uid:")] == [
        line for line in _lines(r) if "alice@example.org" in line
    ]
    assert "hidden" not in r.text and "private" not in r.text


def test_several_results_and_count(server: Server, attestation: Attestation) -> None:
    a = TestKey.generate("Team Member One <one@team.example>")
    b = TestKey.generate("Team Member Two <two@team.example>")
    _publish(attestation, a)
    _publish(attestation, b)
    r = _lookup(server, op="index", search="team member", options="mr")
    assert r.status_code == 200
    assert r.headers["x-hkp-results-count"] == "2"
    lines = _lines(r)
    assert lines[0] == "info:1:2"
    assert {line.split(":")[1] for line in lines if line.startswith("pub:")} == {
        a.fingerprint,
        b.fingerprint,
    }
    got = _lookup(server, op="get", search="team member")
    assert got.text.count("BEGIN PGP PUBLIC KEY BLOCK") == 1  # one block: OpenPGP.js reads only one
    assert {str(c.fingerprint) for c in parse_certificates(got.content)} == {
        a.fingerprint,
        b.fingerprint,
    }


def test_text_search_only_over_published_user_ids(server: Server, alice: TestKey) -> None:
    assert _lookup(server, op="index", search="alice", options="mr").status_code == 200
    assert _lookup(server, op="index", search="Example alice", options="mr").status_code == 200
    # "private" and the hidden address occur only in the unattested user ID.
    assert _lookup(server, op="index", search="private", options="mr").status_code == 404
    assert _lookup(server, op="get", search="hidden.example").status_code == 404


def test_text_search_minimum_length_is_a_setting(
    settings: Settings, attestation: Attestation, alice: TestKey
) -> None:
    """Issue 10 item 21: two-character words let anyone page through every published
    address; the minimum is ``search_min_chars`` (3)."""
    with AppServer.start(settings) as live:
        r = _lookup(live, op="index", search="al", options="mr")
        assert r.status_code == 400 and "at least 3 characters" in r.text
        assert _lookup(live, op="index", search="ali", options="mr").status_code == 200
    with AppServer.start(settings.model_copy(update={"search_min_chars": 2})) as live:
        assert _lookup(live, op="index", search="al", options="mr").status_code == 200
    with AppServer.start(settings.model_copy(update={"search_min_chars": 6})) as live:
        assert _lookup(live, op="index", search="alice", options="mr").status_code == 400


def test_exact(server: Server, alice: TestKey) -> None:
    whole = "Alice  example <alice@example.org>"
    r = _lookup(server, op="index", search=whole, options="mr", exact="on")
    assert r.status_code == 200 and alice.fingerprint in r.text
    r = _lookup(server, op="get", search=whole, exact="on")
    assert r.status_code == 200
    assert _lookup(server, op="index", search="Alice", options="mr", exact="on").status_code == 404
    assert _lookup(server, op="index", search="Alice", options="mr", exact="off").status_code == 200


def test_text_search_switched_off(settings: Settings, alice: TestKey) -> None:
    with AppServer.start(settings.model_copy(update={"hkp_text_search": False})) as live:
        r = _lookup(live, op="index", search="alice", options="mr")
        assert r.status_code == 501
        assert r.headers["content-type"].startswith("text/plain")
        assert "switched off" in r.text
        # Addresses and fingerprints still work.
        assert _lookup(live, op="index", search="alice@example.org", options="mr").is_success


def test_flags_revoked_and_expired(
    settings: Settings, attestation: Attestation, core: Core
) -> None:
    revoked = TestKey.generate("Rev <rev@example.org>")
    core_import(core, revoked)
    with core.store.write() as tx:
        [cert] = parse_certificates(revoked.revoked_public())
        core.ingest.merge(tx, cert, "test", datetime.now(UTC))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        tsk = Tsk.generate(user_ids=["Exp <exp@example.org>"], validity_seconds=3600)
    expiring = TestKey(tsk, tsk.extract_certificate())
    _publish(attestation, expiring)
    [exp_cert] = parse_certificates(expiring.public)
    assert exp_cert.expires is not None
    clock = Clock()
    with AppServer.start(settings, clock=clock) as live:
        r = _lookup(live, op="index", search="0x" + revoked.fingerprint, options="mr")
        [pub] = [line for line in _lines(r) if line.startswith("pub:")]
        assert pub.endswith(":r")
        assert "uid:" not in r.text  # a revoked key publishes no address
        r = _lookup(live, op="index", search="exp@example.org", options="mr")
        pub = _lines(r)[1]
        assert pub.endswith(f":{int(exp_cert.expires.timestamp())}:")
        clock.now += timedelta(hours=2)
        r = _lookup(live, op="index", search="exp@example.org", options="mr")
        assert _lines(r)[1].endswith(f":{int(exp_cert.expires.timestamp())}:e")
        r = _lookup(live, op="index", search="0x" + expiring.fingerprint, options="json")
        assert r.json()["keys"][0]["expired"] is True


def test_json_index(server: Server, alice: TestKey) -> None:
    r = _lookup(server, op="index", search="alice@example.org", options="json")
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    body = r.json()
    assert body["count"] == 1
    [k] = body["keys"]
    assert k["fingerprint"] == alice.fingerprint
    assert (k["algorithm"], k["algorithm_name"], k["revoked"]) == (22, "eddsa", False)
    assert [u["uid"] for u in k["user_ids"]] == ["Alice Example <alice@example.org>"]


def test_nm_option_is_accepted(server: Server, alice: TestKey) -> None:
    r = _lookup(server, op="index", search="alice@example.org", options="mr,nm")
    assert r.status_code == 200 and _lines(r)[0] == "info:1:1"
    r = _lookup(server, op="get", search="alice@example.org", options="nm")
    assert r.status_code == 200 and "BEGIN PGP" in r.text


def test_human_readable_index_escapes_markup(server: Server, attestation: Attestation) -> None:
    # (A user ID with more angle brackets than its address carries no address at all.)
    key = TestKey.generate('Tom "x" & Jerry\'s Co <mark@markup.example>')
    _publish(attestation, key)
    r = _lookup(server, op="index", search="mark@markup.example")
    assert r.status_code == 200
    assert r.headers["content-type"] == "text/html; charset=utf-8"
    assert r.headers["access-control-allow-origin"] == "*"
    assert "Tom &#34;x&#34; &amp; Jerry&#39;s Co" in r.text
    assert f">{key.key_id}</a>" in r.text  # the key id as the link text
    assert f"/pks/lookup?op=get&amp;search=0x{key.fingerprint}" in r.text
    # fingerprint=on shows the whole fingerprint; the search term is escaped too.
    r = _lookup(server, op="vindex", search="<b>mark@markup.example</b>", fingerprint="on")
    assert r.status_code == 404  # not an address, and no user ID holds "<b>"
    r = _lookup(server, op="index", search="<mark@markup.example>", fingerprint="on")
    assert f">{Fingerprint(key.fingerprint).grouped()}</a>" in r.text
    assert "&lt;mark@markup.example&gt;" in r.text


# ---- errors


@pytest.mark.parametrize(
    ("params", "status", "fragment"),
    [
        ({"op": "get", "search": "0x12345678"}, 400, "short"),
        ({"op": "index", "search": "0xDEADBEEF", "options": "mr"}, 400, "collide"),
        ({"op": "get"}, 400, "search"),
        ({"op": "get", "search": "   "}, 400, "search"),
        ({"op": "get", "search": "0x123"}, 400, "16-digit"),
        ({"search": "alice@example.org"}, 400, "op"),
        ({"op": "x-frobnicate", "search": "alice@example.org"}, 501, "not supported"),
        ({"op": "get", "search": "a"}, 400, "too short"),
        ({"op": "index", "search": "al ex", "options": "mr"}, 400, "at least 3 characters"),
        ({"op": "get", "search": "0x" + "AB" * 20}, 404, "No key"),
        ({"op": "get", "search": "0x" + "AB" * 32}, 404, "No key"),
        ({"op": "get", "search": "0x" + "AB" * 8}, 404, "No key"),
        ({"op": "get", "search": "nobody@example.org"}, 404, "No key"),
    ],
)
def test_error_codes(
    server: Server, alice: TestKey, params: dict[str, str], status: int, fragment: str
) -> None:
    r = _lookup(server, **params)
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("text/plain")
    assert r.headers["access-control-allow-origin"] == "*"
    assert fragment.lower() in r.text.lower()


# ---- op=stats, op=hget


def test_stats(server: Server, alice: TestKey, core: Core) -> None:
    core_import(core, TestKey.generate("Other <other@example.org>"))
    r = _lookup(server, op="stats", options="mr")
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    body = r.json()
    assert body["software"] == "Attester" and body["version"] == __version__
    assert body["total"] == 2 and body["published_addresses"] == 1
    assert body["peers"] == []
    r = _lookup(server, op="stats")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert f"Attester {__version__}: 2 keys, 1 published address." in r.text


def test_hget(server: Server, alice: TestKey, core: Core) -> None:
    data = core.store.stored_data(Fingerprint(alice.fingerprint))
    assert data is not None
    digest = sks_digest(data)
    for search in (digest, digest.upper()):
        r = _lookup(server, op="hget", search=search, options="mr")
        assert r.status_code == 200, r.text
        assert r.headers["content-type"] == "application/pgp-keys; charset=UTF-8"
        assert _uids(r) == ["Alice Example <alice@example.org>"]
    assert _lookup(server, op="hget", search="0" * 32).status_code == 404
    r = _lookup(server, op="hget", search="xyz")
    assert r.status_code == 400 and "32 hexadecimal" in r.text


# ---- POST /pks/add


def _add(live: Server, keytext: str, *, first: str = "") -> httpx.Response:
    return live.client.post(
        "/pks/add",
        content=f"{first}keytext={quote(keytext, safe='')}",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )


def test_add_sends_verification_and_publishes_after_confirmation(
    live: Server, smtp_server: LoopbackSMTPServer
) -> None:
    key = TestKey.generate("Bob <bob@example.org>").with_user_id("Bob <bob@work.example>")
    r = _add(live, key.armored)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    assert f"Key {key.fingerprint}: new." in r.text
    assert "bob@example.org: a verification email was sent" in r.text
    assert "bob@work.example: a verification email was sent" in r.text
    mails = smtp_server.wait_for(2)
    by_address = {m["To"].addresses[0].addr_spec: m for m in mails}
    assert set(by_address) == {"bob@example.org", "bob@work.example"}
    # Stored, but nothing published before the link is followed.
    assert _lookup(live, op="get", search="bob@example.org").status_code == 404
    [stored] = parse_certificates(_lookup(live, op="get", search="0x" + key.fingerprint).content)
    assert stored.user_ids == ()
    assert key.fingerprint in text_of(by_address["bob@example.org"]).replace(" ", "")
    r = live.client.post(link_in(by_address["bob@example.org"]))
    assert r.status_code == 200
    idx = _lookup(live, op="index", search="bob@example.org", options="mr")
    assert [line for line in _lines(idx) if line.startswith("uid:")] == [
        line for line in _lines(idx) if line.startswith("uid:Bob <bob@example.org>:")
    ]
    assert len([line for line in _lines(idx) if line.startswith("uid:")]) == 1
    # A second upload within the rate-limit window mails nobody again.
    r = _add(live, key.armored)
    assert "bob@example.org: published." in r.text
    assert "bob@work.example: a verification email was sent for this key" in r.text
    assert f"Key {key.fingerprint}: unchanged." in r.text
    with pytest.raises(AssertionError):
        smtp_server.wait_for(3, timeout=1.0)


def test_add_without_mail(
    mail_settings: Settings, clock: Clock, smtp_server: LoopbackSMTPServer
) -> None:
    s = mail_settings.model_copy(update={"hkp_add_sends_mail": False})
    with AppServer.start(s, clock=clock) as live:
        key = TestKey.generate("Carl <carl@example.org>")
        r = _add(live, key.armored)
        assert r.status_code == 200
        assert "carl@example.org: not published" in r.text
        assert "sends no verification email" in r.text
        assert _lookup(live, op="get", search="carl@example.org").status_code == 404
        assert _lookup(live, op="get", search="0x" + key.fingerprint).status_code == 200
    with pytest.raises(AssertionError):
        smtp_server.wait_for(1, timeout=1.0)


def test_add_updates_published_key_at_once(
    live: Server, attestation: Attestation, smtp_server: LoopbackSMTPServer
) -> None:
    key = TestKey.generate("Dora <dora@example.org>")
    _publish(attestation, key)
    newer = key.with_user_id("Dora (laptop) <dora@example.org>").with_user_id(
        "Dora <dora@new.example>"
    )
    r = _add(live, newer.armored)
    assert r.status_code == 200
    assert f"Key {key.fingerprint}: updated." in r.text
    assert "dora@example.org: published." in r.text
    # The new spelling of the attested address is published with it; the new address is not.
    assert _uids(_lookup(live, op="get", search="dora@example.org")) == [
        "Dora (laptop) <dora@example.org>",
        "Dora <dora@example.org>",
    ]
    assert _lookup(live, op="get", search="dora@new.example").status_code == 404
    [mail] = smtp_server.wait_for(1)
    assert mail["To"].addresses[0].addr_spec == "dora@new.example"


def test_add_revocation_takes_effect(live: Server, attestation: Attestation) -> None:
    key = TestKey.generate("Emil <emil@example.org>")
    _publish(attestation, key)
    r = _add(live, armor(key.revoked_public()))
    assert r.status_code == 200 and "updated, revoked" in r.text
    assert _lookup(live, op="get", search="emil@example.org").status_code == 404
    idx = _lookup(live, op="index", search="0x" + key.fingerprint, options="mr")
    assert _lines(idx)[1].endswith(":r")
    [cert] = parse_certificates(_lookup(live, op="get", search="0x" + key.key_id).content)
    assert cert.revoked


def test_add_several_keys_and_keytext_not_first(
    live: Server, smtp_server: LoopbackSMTPServer
) -> None:
    a = TestKey.generate("Fay <fay@example.org>")
    b = TestKey.generate("Gus <gus@example.org>")
    r = _add(live, a.armored + "\n" + b.armored, first="options=mr&")
    assert r.status_code == 200, r.text
    assert f"Key {a.fingerprint}: new." in r.text and f"Key {b.fingerprint}: new." in r.text
    for k in (a, b):
        assert _lookup(live, op="get", search="0x" + k.fingerprint).status_code == 200
    assert len(smtp_server.wait_for(2)) == 2


def test_add_keeps_good_keys_of_a_partly_bad_keyring(live: Server) -> None:
    good = TestKey.generate("Hal <hal@example.org>")
    # A primary key with nothing validly bound to it is rejected on its own.
    bad_packets = _primary_only(TestKey.generate("Bad <bad@example.org>"))
    r = _add(live, good.armored + armor(bad_packets))
    assert r.status_code == 200, r.text
    assert f"Key {good.fingerprint}: new." in r.text and "Rejected" in r.text
    r = _add(live, armor(bad_packets))
    assert r.status_code == 400 and "Rejected" in r.text


def _primary_only(key: TestKey) -> bytes:
    from attester.openpgp._packets import encode_packets, split_packets

    return encode_packets(split_packets(key.public)[:1])


@pytest.mark.parametrize(
    ("body", "content_type", "status", "fragment"),
    [
        ("keytext=not+a+key", "application/x-www-form-urlencoded", 400, ""),
        ("keytext=", "application/x-www-form-urlencoded", 400, "keytext"),
        ("other=1", "application/x-www-form-urlencoded", 400, "keytext"),
        ("", "application/x-www-form-urlencoded", 400, "keytext"),
        ("--b\r\n", "multipart/form-data; boundary=b", 400, "x-www-form-urlencoded"),
    ],
)
def test_add_bad_input(
    live: Server, body: str, content_type: str, status: int, fragment: str
) -> None:
    r = live.client.post("/pks/add", content=body, headers={"content-type": content_type})
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("text/plain")
    assert fragment in r.text


def test_add_refuses_secret_keys(live: Server) -> None:
    key = TestKey.generate("Ivy <ivy@example.org>")
    r = _add(live, key.secret_armored)
    assert r.status_code == 400 and "secret" in r.text.lower()
    assert _lookup(live, op="get", search="0x" + key.fingerprint).status_code == 404


def test_add_too_large(live: Server, settings: Settings) -> None:
    r = live.client.post(
        "/pks/add",
        content=b"keytext=" + b"x" * settings.max_input_bytes,
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert r.status_code == 413


# ---- POST /pks/hashquery


def test_hashquery(server: Server, attestation: Attestation, core: Core) -> None:
    a = TestKey.generate("Jan <jan@example.org>").with_user_id("Jan <jan@unverified.example>")
    b = TestKey.generate("Kim <kim@example.org>")
    _publish(attestation, a, "example.org")
    core_import(core, b)
    stored = {k.fingerprint: core.store.stored_data(Fingerprint(k.fingerprint)) for k in (a, b)}
    digests = [sks_digest(d) for d in stored.values() if d is not None]
    unknown = "00" * 16
    r = server.client.post(
        "/pks/hashquery",
        content=hashquery.request([digests[1], unknown, digests[0], digests[1]]),
    )
    assert r.status_code == 200
    assert r.headers["content-type"] == "pgp/keys"
    keys = hashquery.response_keys(r.content)
    # Request order, unknown left out, duplicates once; the full stored bytes (sync peers
    # need every packet to arrive at the same digest).
    assert keys == [stored[b.fingerprint], stored[a.fingerprint]]
    assert [sks_digest(k) for k in keys] == [digests[1], digests[0]]
    assert "jan@unverified.example" in {
        u.email.address for u in parse_certificates(keys[1])[0].user_ids if u.email
    }
    empty = server.client.post("/pks/hashquery", content=hashquery.request([]))
    assert empty.content == b"\x00\x00\x00\x00\r\n"


def test_hashquery_only_for_sync_peers(settings: Settings) -> None:
    """Full certificates carry unverified addresses: a client that is not a configured sync
    peer gets 403, whatever it asks."""
    s = settings.model_copy(update={"sync_peers": ("192.0.2.1",)})
    with AppServer.start(s) as live:
        r = live.client.post("/pks/hashquery", content=hashquery.request(["00" * 16]))
        assert r.status_code == 403 and "sync peers" in r.text
    s = settings.model_copy(update={"sync_peers": ("*",)})
    with AppServer.start(s) as live:
        r = live.client.post("/pks/hashquery", content=hashquery.request([]))
        assert r.status_code == 200


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"\x00\x00",
        struct.pack(">I", 2) + struct.pack(">I", 16) + b"x" * 16,
        struct.pack(">I", 1) + struct.pack(">I", 15) + b"x" * 16,
        struct.pack(">I", 0xFFFFFFFF),
    ],
    ids=["empty", "short-count", "missing-hash", "wrong-length", "huge-count"],
)
def test_hashquery_malformed(server: Server, body: bytes) -> None:
    r = server.client.post("/pks/hashquery", content=body)
    assert r.status_code == 400, r.text
    assert r.headers["content-type"].startswith("text/plain")


def test_parse_hashquery_ignores_trailing_bytes() -> None:
    body = hashquery.request(["ab" * 16]) + b"\r\n"
    assert parse_hashquery(body) == ["ab" * 16]
    with pytest.raises(BadRequest):
        parse_hashquery(struct.pack(">I", 1) + struct.pack(">I", 16))


def test_cors_preflight(server: Server) -> None:
    r = server.client.options(
        "/pks/lookup",
        headers={"Origin": "https://app.example", "Access-Control-Request-Method": "GET"},
    )
    assert r.status_code == 200
    assert r.headers["access-control-allow-origin"] in ("*", "https://app.example")


def test_stats_json_option(server: Server) -> None:
    r = _lookup(server, op="stats", options="json")
    assert json.loads(r.text)["total"] == 0
