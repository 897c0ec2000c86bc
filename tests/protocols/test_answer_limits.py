"""One key answer carries at most ``max_answer_bytes``, streamed in one armor block; a text
``op=get`` beyond it is refused (issue 10, item 16)."""

from __future__ import annotations

import pytest

from attester.config import Settings
from attester.openpgp import parse_certificates
from attester.service.attestation import Attestation
from tests.support.asgi import in_process
from tests.support.keys import TestKey


@pytest.fixture
def small(settings: Settings) -> Settings:
    return settings.model_copy(update={"max_answer_bytes": 64 * 1024})


def test_text_get_beyond_the_cap_is_refused(small: Settings, attestation: Attestation) -> None:
    keys = [TestKey.generate(f"Flood{i} {'pad' * 150} <flood{i}@example.org>") for i in range(30)]
    for k in keys:
        assert attestation.imports.keyring(k.public, attest_emails=True).attested == 1
    assert sum(len(k.armored) for k in keys) > 64 * 1024
    with in_process(small) as client:
        r = client.get("/pks/lookup", params={"op": "get", "search": "flood0 pad"})
        assert r.status_code == 200  # one key fits
        r = client.get("/pks/lookup", params={"op": "get", "search": "pad"})
        assert r.status_code == 413 and "more words" in r.text
        # The index lists them; a key is still served by fingerprint.
        r = client.get("/pks/lookup", params={"op": "index", "options": "mr", "search": "pad"})
        assert r.status_code == 200 and r.text.startswith("info:1:30")
        r = client.get("/pks/lookup", params={"op": "get", "search": "0x" + keys[3].fingerprint})
        assert r.status_code == 200
        assert r.text.count("BEGIN PGP PUBLIC KEY BLOCK") == 1
        assert int(r.headers["content-length"]) == len(r.content)  # dirmngr needs it
        assert [str(c.fingerprint) for c in parse_certificates(r.content)] == [keys[3].fingerprint]
