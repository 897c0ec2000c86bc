"""Value types that are normalised once, at the edge, and trusted everywhere below.

Nothing below the protocol adapters takes a raw ``str`` for an email address, a
fingerprint or a key id: it takes one of these frozen types, built by ``parse``.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import ClassVar

import idna

from attester.openpgp.errors import InvalidEmail, InvalidIdentifier

_HEX = re.compile(r"^[0-9A-F]+$")


def _clean_hex(text: str) -> str:
    """Uppercase hex with an optional ``0x`` prefix and spaces removed (leniency on purpose:
    clients paste grouped fingerprints and lowercase ids, and strictness only breaks them)."""
    t = text.strip().replace(" ", "")
    if t[:2] in ("0x", "0X"):
        t = t[2:]
    return t.upper()


@dataclass(frozen=True, order=True)
class Fingerprint:
    """A primary or subkey fingerprint: 40 hex digits (v4) or 64 (v6), stored uppercase."""

    hex: str

    def __post_init__(self) -> None:
        if len(self.hex) not in (40, 64) or not _HEX.match(self.hex):
            raise InvalidIdentifier(f"not a fingerprint: {self.hex!r}")

    @classmethod
    def parse(cls, text: str) -> Fingerprint:
        t = _clean_hex(text)
        if len(t) not in (40, 64) or not _HEX.match(t):
            raise InvalidIdentifier("a fingerprint is 40 (v4) or 64 (v6) hexadecimal digits")
        return cls(t)

    @property
    def version(self) -> int:
        return 4 if len(self.hex) == 40 else 6

    @property
    def key_id(self) -> KeyID:
        # v4 key ids are the low 64 bits of the fingerprint, v6 the high 64 bits (RFC 9580 5.5.4).
        return KeyID(self.hex[-16:] if self.version == 4 else self.hex[:16])

    def grouped(self) -> str:
        """Groups of four, as people read fingerprints aloud."""
        return " ".join(self.hex[i : i + 4] for i in range(0, len(self.hex), 4))

    def __str__(self) -> str:
        return self.hex


@dataclass(frozen=True, order=True)
class KeyID:
    """A 64-bit key id, 16 hex digits, uppercase. Short (32-bit) ids are refused: they collide."""

    hex: str

    def __post_init__(self) -> None:
        if len(self.hex) != 16 or not _HEX.match(self.hex):
            raise InvalidIdentifier(f"not a key id: {self.hex!r}")

    @classmethod
    def parse(cls, text: str) -> KeyID:
        t = _clean_hex(text)
        if len(t) != 16 or not _HEX.match(t):
            raise InvalidIdentifier("a key id is 16 hexadecimal digits")
        return cls(t)

    def __str__(self) -> str:
        return self.hex


_LOCAL_OK = re.compile(r"^[^\s@<>()\[\]\\,;:\"]+$")
# Control, format (zero-width, bidi), separator, surrogate and private-use characters:
# never part of an address a person reads, and a control character would reach the mail's
# ``To:`` header and the log.
_HIDDEN = frozenset({"Cc", "Cf", "Cs", "Co", "Zl", "Zp", "Zs"})


def _has_hidden(text: str) -> bool:
    """Whether ``text`` holds a control, invisible or separator character."""
    return any(unicodedata.category(ch) in _HIDDEN for ch in text)


@dataclass(frozen=True, order=True)
class Email:
    """A normalised email address.

    Steps, applied once by ``parse``: trim surrounding white space, lowercase the whole
    address (FlowCrypt and Hagrid both match case-insensitively), and write the domain in
    its IDNA ASCII form so ``bücher.example`` and ``xn--bcher-kva.example`` are one address.
    ``+`` is an ordinary character and is kept. Percent-decoding belongs to the HTTP
    adapters, which know whether the value came from a URL.
    """

    address: str
    MAX_LENGTH: ClassVar[int] = 254

    @classmethod
    def parse(cls, text: str) -> Email:
        t = text.strip()
        if t.startswith("<") and t.endswith(">"):
            t = t[1:-1].strip()
        if len(t) > cls.MAX_LENGTH:
            raise InvalidEmail("the email address is longer than 254 characters")
        if _has_hidden(t):
            raise InvalidEmail("the email address contains a control, invisible or space character")
        local, sep, domain = t.rpartition("@")
        if not sep or not local or not domain:
            raise InvalidEmail(f"not an email address: {text.strip()[:100]!r}")
        if not _LOCAL_OK.match(local):
            raise InvalidEmail(f"the part before @ is not valid in {text.strip()[:100]!r}")
        domain = domain.rstrip(".").lower()
        try:
            ascii_domain = idna.encode(domain, uts46=True).decode("ascii")
        except idna.IDNAError as e:
            raise InvalidEmail(f"the domain of {text.strip()[:100]!r} is not valid") from e
        if "." not in ascii_domain and ascii_domain != "localhost":
            raise InvalidEmail(f"the domain of {text.strip()[:100]!r} is not valid")
        return cls(f"{local.lower()}@{ascii_domain}")

    @property
    def local_part(self) -> str:
        return self.address.rpartition("@")[0]

    @property
    def domain(self) -> str:
        return self.address.rpartition("@")[2]

    def __str__(self) -> str:
        return self.address


def email_from_user_id(uid: str) -> Email | None:
    """The address a user ID carries: its one ``<...>`` part, or the whole string when it is
    a bare address (``alice@example.org``). ``None`` when there is none or it is not valid.

    A user ID with more than one address-like part carries **no** address: clients do not
    agree on which one counts (GnuPG reads the first ``<...>``, others the last), so
    ``<victim@x> <mallory@y>`` would be attested by Mallory's mailbox and read by GnuPG as
    the victim's. Hence exactly one ``<`` and one ``>``, and no ``@`` outside them.
    """
    if uid.count("<") + uid.count(">") == 0:
        candidate = uid
    elif uid.count("<") == 1 and uid.count(">") == 1 and uid.index("<") < uid.index(">"):
        before, _, rest = uid.partition("<")
        candidate, _, after = rest.partition(">")
        if "@" in before or "@" in after:
            return None
    else:
        return None
    if candidate.count("@") != 1:
        return None
    try:
        return Email.parse(candidate)
    except InvalidEmail:
        return None
