"""Which recipient domains may be looked up upstream at all.

An internal deployment must not tell the world which colleagues' addresses were asked
about: an address whose domain the policy refuses never leaves the server. Patterns:
``*`` (every domain), ``example.com`` (that domain only), ``*.example.com`` (its
subdomains, not itself). A domain matching the deny list is refused whatever the allow
list says.
"""

from __future__ import annotations

from collections.abc import Iterable

from attester.openpgp.types import Email


def _normalise(pattern: str) -> str:
    return pattern.strip().lower().rstrip(".")


def _matches(pattern: str, domain: str) -> bool:
    if pattern == "*":
        return True
    if pattern.startswith("*."):
        return domain.endswith(pattern[1:])
    return domain == pattern


class DomainPolicy:
    def __init__(self, allow: Iterable[str], deny: Iterable[str] = ()) -> None:
        self.allow = tuple(p for p in (_normalise(a) for a in allow) if p)
        self.deny = tuple(p for p in (_normalise(d) for d in deny) if p)

    def allows(self, email: Email) -> bool:
        domain = email.domain
        if any(_matches(p, domain) for p in self.deny):
            return False
        return any(_matches(p, domain) for p in self.allow)
