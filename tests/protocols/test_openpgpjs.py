"""OpenPGP.js (npm ``openpgp``, the library of ``@openpgp/hkp-client``, ``@openpgp/wkd-client``
and FlowCrypt's browser) reading our answers over loopback (issue 10, item 3).

``readKeys`` reads only the **first** armor block of an answer and drops the rest without
a word, so HKP and VKS answers with several keys are one block. FlowCrypt's ``/pub`` is
the exception its browser needs: it splits the answer into blocks itself and refuses a
block holding more than one key, so there every key has a block of its own.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from attester.config import Settings
from attester.service.attestation import Attestation
from tests.support.keys import TestKey
from tests.support.server import LiveServer

JS = Path(__file__).parent.parent / "js"

pytestmark = pytest.mark.skipif(
    shutil.which("node") is None, reason="node is not installed (scripts/test installs it)"
)


def read_keys(url: str, mode: str = "whole") -> dict[str, list[str]]:
    if not (JS / "node_modules" / "openpgp").is_dir():
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=JS, check=True)
    out = subprocess.run(
        ["node", str(JS / "read-keys.mjs"), url, mode], capture_output=True, check=True, timeout=60
    )
    result: dict[str, list[str]] = json.loads(out.stdout)
    return result


@pytest.fixture
def several(settings: Settings) -> Iterator[LiveServer]:
    s = settings.model_copy(update={"multiple_keys_per_address": True})
    with LiveServer.start(s) as server:
        yield server


@pytest.fixture
def two_keys(several: LiveServer) -> list[str]:
    attestation: Attestation = several.app.state.attestation
    keys = [TestKey.generate("Ann <ann@example.org>") for _ in range(2)]
    for k in keys:
        assert attestation.imports.keyring(k.public, attest_emails=True).attested == 1
    # Newest attestation first, as every surface serves them.
    return [k.fingerprint for k in reversed(keys)]


def test_hkp_and_vks_answers_are_read_whole(several: LiveServer, two_keys: list[str]) -> None:
    base = several.base_url
    for url in (
        f"{base}/pks/lookup?op=get&options=mr&search=ann@example.org",
        f"{base}/vks/v1/by-email/ann%40example.org",
    ):
        got = read_keys(url)
        assert got["status"] == 200 and got["fingerprints"] == two_keys, url


def test_text_search_answer_is_read_whole(several: LiveServer, two_keys: list[str]) -> None:
    got = read_keys(f"{several.base_url}/pks/lookup?op=get&search=ann")
    assert sorted(got["fingerprints"]) == sorted(two_keys)


def test_flowcrypt_browser_reads_every_key_of_pub(several: LiveServer, two_keys: list[str]) -> None:
    got = read_keys(f"{several.base_url}/pub/ann@example.org", "blocks")
    assert got == {"status": 200, "fingerprints": two_keys, "errors": []}
