"""The configuration examples of docs/federation.md are valid configurations."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from attester.config import load_settings

DOC = Path(__file__).parents[2] / "docs" / "federation.md"
EXAMPLES = re.findall(r"```toml\n(.*?)```", DOC.read_text(), re.S)


def test_there_are_examples() -> None:
    assert len(EXAMPLES) >= 3


@pytest.mark.parametrize("example", EXAMPLES)
def test_example_loads(example: str, tmp_path: Path) -> None:
    cfg = tmp_path / "attester.toml"
    cfg.write_text(example)
    settings = load_settings(cfg)
    assert settings.upstreams or settings.recon_peers
    for p in settings.recon_peers:
        assert p.host and p.port
    for u in settings.upstreams:
        assert u.url.startswith(("http", "ldap"))


def test_presets_and_overrides() -> None:
    s = load_settings(
        None, upstreams=["keys.openpgp.org", {"name": "keyserver.ubuntu.com", "timeout_seconds": 5}]
    )
    assert [(u.name, u.kind, u.url) for u in s.upstreams] == [
        ("keys.openpgp.org", "vks", "https://keys.openpgp.org"),
        ("keyserver.ubuntu.com", "hkp", "https://keyserver.ubuntu.com"),
    ]
    assert s.upstreams[1].timeout_seconds == 5
    assert load_settings().upstreams == ()  # nothing leaves the server by default


@pytest.mark.parametrize(
    ("upstreams", "fragment"),
    [
        (["keys.example"], "no upstream preset"),
        (["keys.openpgp.org", "keys.openpgp.org"], "same name"),
        ([{"name": "x", "kind": "smtp", "url": "http://h"}], "kind"),
        ([{"name": "x", "kind": "ldap", "url": "http://h"}], "ldap://"),
        ([{"name": "x", "kind": "hkp", "url": "http://h", "starttls": True}], "ldap upstreams"),
        ([{"name": "x", "kind": "ldap", "url": "ldaps://h", "starttls": True}], "starttls"),
        ([{"name": "x", "kind": "hkp", "url": "hkp://h"}], "http"),
        ([{"name": "a b", "kind": "hkp", "url": "http://h"}], "name"),
    ],
)
def test_bad_upstreams_are_refused(upstreams: list[object], fragment: str) -> None:
    from attester.config import ConfigError

    with pytest.raises(ConfigError, match=fragment):
        load_settings(None, upstreams=upstreams)
