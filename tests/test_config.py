"""Configuration: defaults, TOML, environment, errors, and the reference document."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from attester.config import ConfigError, Settings, load_settings

DOC = Path(__file__).parent.parent / "docs" / "configuration.md"


def test_defaults_are_the_embedded_ones() -> None:
    s = load_settings()
    assert (s.host, s.port) == ("127.0.0.1", 8080)
    assert s.database_url == "sqlite:///var/attester.db"
    assert s.mail_url == "file:var/outbox"
    assert s.public_url == "http://127.0.0.1:8080"
    assert s.limits.max_input_bytes == 1024 * 1024


def test_toml_then_environment_then_overrides(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = tmp_path / "attester.toml"
    cfg.write_text(
        'port = 9001\nbase_url = "https://keys.example/"\npath_prefix = "attester/"\n'
        'oidc_issuers = ["https://accounts.google.com"]\n'
    )
    s = load_settings(cfg)
    assert s.port == 9001 and s.base_url == "https://keys.example"
    assert s.path_prefix == "/attester" and s.oidc_issuers == ("https://accounts.google.com",)
    monkeypatch.setenv("ATTESTER_CONFIG", str(cfg))
    monkeypatch.setenv("ATTESTER_PORT", "9002")
    monkeypatch.setenv("ATTESTER_DATABASE_URL", "postgresql://u@db/attester")
    monkeypatch.setenv("ATTESTER_MAIL_URL", "smtp://u:p@mail:587?starttls=true")
    s = load_settings()
    assert s.port == 9002 and s.database_url == "postgresql://u@db/attester"
    assert s.mail_url.startswith("smtp://") and s.public_url == "https://keys.example"
    assert load_settings(port=0).port == 0


@pytest.mark.parametrize(
    ("text", "fragment"),
    [("port = 'x'", "port"), ("no_such_setting = 1", "no_such_setting"), ("port = [", "TOML")],
)
def test_bad_configuration_says_what_is_wrong(tmp_path: Path, text: str, fragment: str) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text(text)
    with pytest.raises(ConfigError, match=fragment):
        load_settings(cfg)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "nope.toml")


def test_every_setting_is_documented() -> None:
    doc = DOC.read_text()
    for name in Settings.model_fields:
        assert re.search(rf"`{name}`", doc), f"{name} is missing from docs/configuration.md"
        assert f"ATTESTER_{name.upper()}" in doc, f"ATTESTER_{name.upper()} is not documented"
