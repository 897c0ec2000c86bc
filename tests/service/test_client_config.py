"""``[client_configuration]``: validated when the configuration is loaded, so a rule
FlowCrypt's clients would ignore or trip over never reaches them."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from attester.config import ConfigError, load_settings
from attester.service.client_config import FLAGS, ClientConfigurations
from tests.support.keys import TestKey

DOC = Path(__file__).parents[2] / "docs" / "configuration.md"


def test_toml_shape(tmp_path: Path) -> None:
    cfg = tmp_path / "attester.toml"
    cfg.write_text(
        'base_url = "https://keys.example.com"\n'
        "\n"
        '[client_configuration."example.com"]\n'
        'flags = ["NO_PRV_BACKUP", "NO_ATTESTER_SUBMIT"]\n'
        'custom_keyserver_url = "self"\n'
        'disallow_attester_search_for_domains = ["*"]\n'
        'enforce_keygen_algo = "rsa4096"\n'
        "\n"
        '[client_configuration."*"]\n'
        "flags = []\n"
    )
    s = load_settings(cfg)
    assert set(s.client_configuration) == {"example.com", "*"}
    rules = ClientConfigurations(s.client_configuration, s.public_url)
    assert rules.for_domain("example.com") == {
        "flags": ["NO_PRV_BACKUP", "NO_ATTESTER_SUBMIT"],
        "custom_keyserver_url": "https://keys.example.com",
        "disallow_attester_search_for_domains": ["*"],
        "enforce_keygen_algo": "rsa4096",
    }
    assert rules.for_domain("other.example") == {"flags": []}
    assert rules.enabled and rules.serves("other.example")


def test_environment_takes_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "ATTESTER_CLIENT_CONFIGURATION", '{"example.com": {"flags": ["HIDE_ARMOR_META"]}}'
    )
    s = load_settings()
    assert s.client_configuration["example.com"].flags == ("HIDE_ARMOR_META",)


def test_nothing_configured_means_no_enterprise_server() -> None:
    rules = ClientConfigurations(load_settings().client_configuration, "https://k.example")
    assert not rules.enabled and not rules.serves("example.com")


def test_every_flag_is_accepted_alone_or_with_what_it_needs() -> None:
    for flag in FLAGS:
        load_settings(
            None,
            client_configuration={
                "example.com": {"flags": [flag], "key_manager_url": "https://ekm.example.com"}
            },
        )


def test_a_designated_backup_mailbox_must_be_a_key_that_encrypts() -> None:
    key = TestKey.generate("Backups <backups@example.com>")
    s = load_settings(
        None,
        client_configuration={"example.com": {"prv_backup_to_designated_mailbox": key.armored}},
    )
    served = ClientConfigurations(s.client_configuration, "").for_domain("example.com")
    assert "BEGIN PGP PUBLIC KEY BLOCK" in served["prv_backup_to_designated_mailbox"]
    revoked = TestKey.generate("Old <old@example.com>")
    from attester.openpgp import armor

    with pytest.raises(ConfigError, match="cannot encrypt"):
        load_settings(
            None,
            client_configuration={
                "example.com": {"prv_backup_to_designated_mailbox": armor(revoked.revoked_public())}
            },
        )


@pytest.mark.parametrize(
    ("rules", "fragment"),
    [
        # Contradictions: the sentence names both flags and the rule.
        (
            {"flags": ["NO_ATTESTER_SUBMIT", "ENFORCE_ATTESTER_SUBMIT"]},
            "NO_ATTESTER_SUBMIT and ENFORCE_ATTESTER_SUBMIT contradict each other: one forbids",
        ),
        (
            {"flags": ["FORBID_STORING_PASS_PHRASE", "DEFAULT_REMEMBER_PASS_PHRASE"]},
            "contradict each other: one forbids storing the pass phrase",
        ),
        (
            {
                "flags": ["FORBID_STORING_PASS_PHRASE", "PASS_PHRASE_QUIET_AUTOGEN"],
                "key_manager_url": "https://ekm.example.com",
            },
            "FORBID_STORING_PASS_PHRASE and PASS_PHRASE_QUIET_AUTOGEN contradict",
        ),
        (
            {"flags": ["PRV_AUTOIMPORT_OR_AUTOGEN"]},
            "PRV_AUTOIMPORT_OR_AUTOGEN needs key_manager_url",
        ),
        ({"flags": ["PASS_PHRASE_QUIET_AUTOGEN"]}, "needs key_manager_url"),
        (
            {
                "allow_attester_search_only_for_domains": ["example.com"],
                "disallow_attester_search_for_domains": ["other.example"],
            },
            "clients ignore the disallow list when the allow list is present",
        ),
        (
            {
                "allow_keys_openpgp_org_search_only_for_domains": [],
                "disallow_keys_openpgp_org_search_for_domains": ["*"],
            },
            "disallow_keys_openpgp_org_search_for_domains has no effect",
        ),
        # Names and types the clients know.
        ({"flags": ["NO_PRV_BACKUPS"]}, "'NO_PRV_BACKUPS' is no flag FlowCrypt's clients know"),
        ({"flags": "NO_PRV_BACKUP"}, "flags"),
        ({"flag": ["NO_PRV_BACKUP"]}, "flag: Extra inputs are not permitted"),
        ({"enforce_keygen_algo": "rsa1024"}, "enforce_keygen_algo"),
        ({"enforce_keygen_expire_months": 0}, "enforce_keygen_expire_months"),
        ({"in_memory_pass_phrase_session_length": -5}, "in_memory_pass_phrase_session_length"),
        ({"custom_keyserver_url": "hkp://keys.example.com"}, "custom_keyserver_url must be an"),
        ({"key_manager_url": "ekm.example.com"}, "key_manager_url must be an"),
        ({"allow_attester_search_only_for_domains": ["*"]}, "does not understand '\\*'"),
        ({"disallow_attester_search_for_domains": ["not a domain"]}, "is not a domain name"),
        ({"disallow_attester_search_for_domains": "example.com"}, "tuple"),
        ({"disallow_password_messages_for_terms": ["secret", " "]}, "empty term"),
        ({"prv_backup_to_designated_mailbox": "not a key"}, "not an armored OpenPGP public key"),
    ],
)
def test_refused_with_a_sentence(rules: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ConfigError) as e:
        load_settings(None, client_configuration={"example.com": rules})
    assert re.search(fragment, str(e.value)), str(e.value)
    assert "client_configuration" in str(e.value)


def test_domains_are_normalised_and_unique() -> None:
    s = load_settings(None, client_configuration={"Example.COM.": {}, "bücher.example": {}})
    assert set(s.client_configuration) == {"example.com", "xn--bcher-kva.example"}
    with pytest.raises(ConfigError, match=r"two entries name the domain example\.com"):
        load_settings(None, client_configuration={"example.com": {}, "EXAMPLE.com": {}})
    with pytest.raises(ConfigError, match="is not a domain name"):
        load_settings(None, client_configuration={"not a domain": {}})


def test_self_needs_the_public_url() -> None:
    with pytest.raises(ConfigError, match='custom_keyserver_url = "self" needs base_url'):
        load_settings(None, client_configuration={"example.com": {"custom_keyserver_url": "self"}})


def test_the_documented_examples_load(tmp_path: Path) -> None:
    section = DOC.read_text().split("## Enterprise: FlowCrypt client configuration", 1)[1]
    examples = re.findall(r"```toml\n(.*?)```", section.split("\n## ", 1)[0], re.S)
    assert examples
    for example in examples:
        cfg = tmp_path / "example.toml"
        cfg.write_text(example)
        assert load_settings(cfg).client_configuration
