"""What every mail needs to know about the service, checked once."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

# Characters that must never reach a header: C0/C1 controls (CR and LF above all), Unicode
# line and paragraph separators, and lone surrogates (they cannot be encoded as UTF-8).
UNSAFE_CHARS = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
_ADDR_SPEC = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+@[A-Za-z0-9.-]+$")
_DOMAIN = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?$")


@dataclass(frozen=True, kw_only=True)
class MailSettings:
    """What every mail needs to know about the service. ``base_url`` only appears in the
    footer; links to act on come in each mail's context. ``message_id_domain`` defaults to
    the sender's domain (``None``), read through ``resolved_message_id_domain``."""

    base_url: str
    sender_name: str = "Attester"
    sender_address: str = "attester@localhost"
    service_name: str = "Attester"
    message_id_domain: str | None = None

    def __post_init__(self) -> None:
        # Settings come from the operator, not from users: refuse bad values loudly instead
        # of quietly cleaning them as build_message does for user data.
        for name in ("sender_name", "service_name"):
            if UNSAFE_CHARS.search(getattr(self, name)):
                raise ValueError(f"mail {name} must not contain control characters")
        if not _ADDR_SPEC.match(self.sender_address):
            raise ValueError(
                f"mail sender_address {self.sender_address!r} is not a plain ASCII address "
                "like attester@example.org"
            )
        url = urlsplit(self.base_url)
        if url.scheme not in ("http", "https") or not url.netloc:
            raise ValueError(f"mail base_url {self.base_url!r} is not an http(s) URL")
        if self.message_id_domain is not None and not _DOMAIN.match(self.message_id_domain):
            raise ValueError(f"mail message_id_domain {self.message_id_domain!r} is not a domain")

    @property
    def resolved_message_id_domain(self) -> str:
        return self.message_id_domain or self.sender_address.rpartition("@")[2]


def one_line(text: str) -> str:
    """Unsafe characters become spaces, runs of white space one space: the result can sit in a
    header (or a greeting) without starting a new line."""
    return " ".join(UNSAFE_CHARS.sub(" ", text).split())
