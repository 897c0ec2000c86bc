"""Which recipient domains may be looked up upstream."""

from __future__ import annotations

import pytest

from attester.federation import DomainPolicy
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
    assert DomainPolicy(allow, deny).allows(Email.parse(address)) is allowed
