"""Which recipient domains may be looked up upstream at all, by the two older settings
``upstream_allow_domains`` and ``upstream_deny_domains``.

An internal deployment must not tell the world which colleagues' addresses were asked
about: an address whose domain the policy refuses never leaves the server. Patterns:
``*`` (every domain), ``example.com`` (that domain only), ``*.example.com`` (its
subdomains, not itself). A domain matching the deny list is refused whatever the allow
list says.

The operator's policy (``service.policy``, ``[[policy.domains]]`` with ``upstream``) is
what the fallback asks; these lists are its default where no domain rule says, and this
class answers with exactly the same rules.
"""

from __future__ import annotations

from collections.abc import Iterable

from attester.openpgp.types import Email
from attester.service.policy import Policy, PolicySettings


class DomainPolicy:
    def __init__(self, allow: Iterable[str], deny: Iterable[str] = ()) -> None:
        self._policy = Policy(PolicySettings(), upstream_allow=allow, upstream_deny=deny)

    def allows(self, email: Email) -> bool:
        return self._policy.for_email(email).upstream
