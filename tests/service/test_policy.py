"""The policy model: what the operator may write, the sentence an invalid rule gets, and
what the rules say for a domain or a client address."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from attester.config import ConfigError, load_settings
from attester.service.policy import Audience, Method, Mode, Policy, PolicySettings, Protocol


def _policy(**policy: Any) -> Policy:
    return load_settings(None, policy=policy).make_policy()


def test_no_policy_changes_nothing() -> None:
    p = load_settings().make_policy()
    assert all(p.mode(proto) is Mode.PUBLIC for proto in Protocol)
    rule = p.rule("example.com")
    assert rule.submit == {Method.EMAIL, Method.OIDC, Method.OPERATOR}
    assert rule.upstream and rule.serve_outside and rule.oidc_at_once
    assert not rule.multiple_keys_per_address
    assert not p.hides_domains and not p.internal_address("10.0.0.1")


def test_first_matching_rule_wins_and_the_default_goes_last() -> None:
    p = _policy(
        domains=[
            {"domain": "eu.example.com", "submit": ["operator"]},
            {"domain": "*.example.com", "submit": ["oidc"], "serve_outside": False},
            {"domain": "example.com", "submit": ["email"]},
            {"domain": "*", "submit": []},
        ]
    )
    assert p.rule("eu.example.com").submit == {Method.OPERATOR}
    assert p.rule("x.eu.example.com").submit == {Method.OIDC}  # only eu. itself is exact
    assert p.rule("EXAMPLE.COM.").submit == {Method.EMAIL}  # *.example.com is not example.com
    assert p.rule("other.example").submit == frozenset()
    assert p.hides_domains and not p.served_to("a.example.com", Audience.OUTSIDE)
    assert p.served_to("a.example.com", Audience.INTERNAL)


def test_old_settings_are_the_defaults_of_the_rules() -> None:
    s = load_settings(
        None,
        upstream_allow_domains=["partner.example", "*.partner.example"],
        upstream_deny_domains=["secret.partner.example"],
        multiple_keys_per_address=True,
        policy={"domains": [{"domain": "corp.example", "upstream": True}]},
    )
    p = s.make_policy()
    assert p.rule("partner.example").upstream and p.rule("eu.partner.example").upstream
    assert not p.rule("secret.partner.example").upstream  # deny wins, as before
    assert not p.rule("elsewhere.example").upstream
    assert p.rule("corp.example").upstream  # a rule says it: the lists do not decide
    assert p.rule("elsewhere.example").multiple_keys_per_address


def test_internal_networks_are_cidrs() -> None:
    p = _policy(internal_networks=["10.0.0.0/8", "fd00::/8", "192.0.2.7/32"])
    assert p.internal_address("10.1.2.3") and p.internal_address("fd00::1")
    assert p.internal_address("::ffff:10.9.9.9")  # an IPv4 client on a dual-stack socket
    assert p.internal_address("192.0.2.7") and not p.internal_address("192.0.2.8")
    assert not p.internal_address("203.0.113.1") and not p.internal_address("not an ip")


@pytest.mark.parametrize(
    ("policy", "sentence"),
    [
        ({"internal_networks": ["10.0.0.1/8"]}, "did you mean 10.0.0.0/8"),
        ({"internal_networks": ["intranet"]}, "not a network in CIDR form"),
        ({"modes": {"ldap": "internal"}}, "'ldap' is no protocol"),
        ({"modes": {"hkp": "private"}}, "modes.hkp"),
        ({"domains": [{"domain": "a.example", "submit": ["fax"]}]}, "submit"),
        ({"domains": [{"domain": "a.*.example"}]}, "a wildcard is"),
        ({"domains": [{"domain": "a.example", "colour": "red"}]}, "colour"),
        (
            {"domains": [{"domain": "*"}, {"domain": "a.example"}]},
            r"policy.domains\[1\] \(a.example\) can never apply: policy.domains\[0\] \(\*\)",
        ),
        (
            {"domains": [{"domain": "*.example.com"}, {"domain": "eu.example.com"}]},
            r"policy.domains\[1\] \(eu.example.com\) can never apply",
        ),
        (
            {"domains": [{"domain": "Example.com"}, {"domain": "example.com."}]},
            "can never apply",
        ),
        (
            {"domains": [{"domain": "a.example", "submit": ["email"], "oidc_issuers": ["x"]}]},
            "oidc_issuers is set but submit does not allow oidc",
        ),
        (
            {
                "domains": [
                    {"domain": "a.example", "submit": ["oidc"], "oidc_publish": "after_email"}
                ]
            },
            "needs email in submit",
        ),
        (
            {"domains": [{"domain": "a.example", "upstream": ["directory"]}]},
            r"policy.domains\[0\] \(a.example\): upstream 'directory' is not one of the "
            "configured upstreams",
        ),
        (
            {"domains": [{"domain": "a.example", "oidc_issuers": ["https://idp.example"]}]},
            r"policy.domains\[0\] \(a.example\): oidc issuer 'https://idp.example' is not in "
            "oidc_issuers",
        ),
    ],
)
def test_an_invalid_policy_is_refused_with_a_sentence_naming_the_rule(
    tmp_path: Path, policy: dict[str, Any], sentence: str
) -> None:
    with pytest.raises(ConfigError, match=sentence):
        load_settings(None, policy=policy)


def test_the_policy_is_a_section_of_the_toml_file(tmp_path: Path) -> None:
    cfg = tmp_path / "attester.toml"
    cfg.write_text(
        'oidc_issuers = ["https://login.example.com"]\n'
        "[policy]\n"
        'internal_networks = ["10.0.0.0/8"]\n'
        "[policy.modes]\n"
        'hkp = "internal"\n'
        'web = "internal"\n'
        "[[policy.domains]]\n"
        'domain = "example.com"\n'
        'submit = ["oidc", "operator"]\n'
        'oidc_issuers = ["https://login.example.com"]\n'
        "upstream = false\n"
        "serve_outside = false\n"
        "multiple_keys_per_address = true\n"
        "[[policy.domains]]\n"
        'domain = "*"\n'
        'oidc_publish = "after_email"\n'
    )
    p = load_settings(cfg).make_policy()
    assert p.mode(Protocol.HKP) is Mode.INTERNAL and p.mode(Protocol.VKS) is Mode.PUBLIC
    rule = p.rule("example.com")
    assert rule.submit == {Method.OIDC, Method.OPERATOR}
    assert rule.accepts_oidc_issuer("https://login.example.com")
    assert not rule.accepts_oidc_issuer("https://accounts.google.com")
    assert not rule.upstream and not rule.serve_outside and rule.multiple_keys_per_address
    assert not p.rule("gmail.com").oidc_at_once
    assert p.describe()["domains"][0]["domain"] == "example.com"


def test_rules_of_attacker_chosen_domains_stay_bounded() -> None:
    p = Policy(PolicySettings(domains=({"domain": "*.example.com"},)))  # type: ignore[arg-type]
    for i in range(20000):
        p.rule(f"d{i}.example.com")
    assert len(p._cache) <= 10001
