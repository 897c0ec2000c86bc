"""Which recipient domains may be looked up upstream when no policy rule says: the old
settings ``upstream_allow_domains`` / ``upstream_deny_domains``, kept as the rules'
defaults (service/policy.py), match as they always did."""

from __future__ import annotations

import pytest

from attester.config import load_settings
from attester.openpgp.types import Email


@pytest.mark.parametrize(
    ("allow", "deny", "address", "allowed"),
    [
        (["*"], [], "a@example.org", True),
        ([], [], "a@example.org", False),
        (["example.org"], [], "a@example.org", True),
        (["example.org"], [], "a@sub.example.org", False),
        (["*.example.org"], [], "a@sub.example.org", True),
        (["*.example.org"], [], "a@example.org", False),
        (["*"], ["corp.example"], "colleague@corp.example", False),
        (["*"], ["*.corp.example"], "a@eu.corp.example", False),
        (["corp.example"], ["corp.example"], "a@corp.example", False),  # deny wins
        ([" Example.ORG. "], [], "a@example.org", True),  # written as operators write it
    ],
)
def test_patterns(allow: list[str], deny: list[str], address: str, allowed: bool) -> None:
    settings = load_settings(None, upstream_allow_domains=allow, upstream_deny_domains=deny)
    assert settings.make_policy().for_email(Email.parse(address)).upstream is allowed
