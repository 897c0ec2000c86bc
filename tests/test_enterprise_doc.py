"""The configuration examples of docs/enterprise.md are valid configurations, and what the
walk-through says its example answers is what it answers."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from attester.config import load_settings
from attester.service.client_config import ClientConfigurations
from attester.service.policy import Method, Mode, Protocol

DOC = Path(__file__).parent.parent / "docs" / "enterprise.md"
TEXT = DOC.read_text()
EXAMPLES = re.findall(r"```toml\n(.*?)```", TEXT, re.S)


@pytest.mark.parametrize("example", EXAMPLES)
def test_example_loads(example: str, tmp_path: Path) -> None:
    cfg = tmp_path / "attester.toml"
    cfg.write_text(example)
    load_settings(cfg)


def test_the_walk_through_says_what_its_configuration_does(tmp_path: Path) -> None:
    cfg = tmp_path / "attester.toml"
    cfg.write_text(EXAMPLES[0])
    s = load_settings(cfg)
    p = s.make_policy()
    assert p.mode(Protocol.WKD) is Mode.PUBLIC and p.mode(Protocol.HKP) is Mode.INTERNAL
    assert p.internal_address("10.20.30.40") and not p.internal_address("192.0.2.1")
    company = p.rule("example.com")
    assert company.submit == {Method.OIDC, Method.OPERATOR}
    assert company.asks("directory") and not company.asks("keys.openpgp.org")
    assert not p.rule("hr.example.com").serve_outside
    partner = p.rule("partner.example")
    assert partner.submit == frozenset() and partner.asks("keys.openpgp.org")
    assert not partner.asks("directory")
    assert not p.rule("gmail.com").upstream and p.rule("gmail.com").submit == {Method.EMAIL}
    answer = re.search(r'```json\n(\{"clientConfiguration".*?)\n```', TEXT, re.S)
    assert answer is not None
    configurations = ClientConfigurations(s.client_configuration, s.public_url)
    assert json.loads(answer.group(1)) == {
        "clientConfiguration": configurations.for_domain("example.com")
    }
