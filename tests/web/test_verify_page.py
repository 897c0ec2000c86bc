"""Only a person's click confirms an address, and the page says plainly when confirming
would replace a published key (issue 10, item 9)."""

from __future__ import annotations

from attester.openpgp import Fingerprint, parse_certificates
from attester.service.attestation import Attestation
from tests.support.flows import link_in, text_of
from tests.support.keys import TestKey
from tests.support.server import Server
from tests.support.smtp import LoopbackSMTPServer


def test_no_script_submits_a_form(live: Server) -> None:
    script = live.client.get("/static/app.js").text
    assert ".submit(" not in script and "requestSubmit" not in script
    assert "data-autosubmit" not in script


def test_replacing_page_names_both_keys_and_the_owner_is_told(
    live: Server, smtp_server: LoopbackSMTPServer, attestation: Attestation
) -> None:
    owner = TestKey.generate("Vic <vic@example.org>")
    assert attestation.imports.keyring(owner.public, attest_emails=True).attested == 1
    attacker = TestKey.generate("Vic <vic@example.org>")
    assert live.client.post("/pub/vic@example.org", content=attacker.armored).status_code == 200
    [mail] = smtp_server.wait_for(1)
    link = link_in(mail)
    page = live.client.get(link, headers={"accept": "text/html"}).text
    assert "data-autosubmit" not in page
    assert 'id="replaces"' in page and "This replaces the key published" in page
    created = {
        str(c.fingerprint): c.primary.created.strftime("%Y-%m-%d")
        for c in parse_certificates(owner.public + attacker.public)
    }
    for key in (owner, attacker):
        assert Fingerprint(key.fingerprint).grouped() in page
        assert created[key.fingerprint] in page
    # Opening the page (as any scanner does, scripts or not) changed nothing.
    got = live.client.get("/pub/vic@example.org")
    assert [str(c.fingerprint) for c in parse_certificates(got.content)] == [owner.fingerprint]
    # A click does, and the address is told which key went.
    assert live.client.post(link).status_code == 200
    got = live.client.get("/pub/vic@example.org")
    assert [str(c.fingerprint) for c in parse_certificates(got.content)] == [attacker.fingerprint]
    [replaced] = smtp_server.wait_for(2)[1:]
    assert "replaced" in replaced["Subject"].lower()
    assert owner.fingerprint in text_of(replaced).replace(" ", "")


def test_plain_confirmation_page_has_no_warning(
    live: Server, smtp_server: LoopbackSMTPServer
) -> None:
    key = TestKey.generate("New <new@example.org>")
    assert live.client.post("/pub/new@example.org", content=key.armored).status_code == 200
    page = live.client.get(link_in(smtp_server.wait_for(1)[0])).text
    assert 'id="replaces"' not in page and "Confirm and publish" in page
