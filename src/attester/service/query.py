"""Search terms, parsed once: every protocol (FlowCrypt ``/pub/``, VKS, HKP ``search=``, the
web search box) turns its input into one of these before calling the core."""

from __future__ import annotations

import re
from dataclasses import dataclass

from attester.openpgp.errors import InvalidEmail
from attester.openpgp.types import Email, Fingerprint, KeyID
from attester.service.errors import InvalidQuery, ShortKeyID

_HEXISH = re.compile(r"^(0x)?[0-9a-fA-F ]+$")


@dataclass(frozen=True)
class EmailQuery:
    email: Email


@dataclass(frozen=True)
class FingerprintQuery:
    fingerprint: Fingerprint


@dataclass(frozen=True)
class KeyIDQuery:
    key_id: KeyID


@dataclass(frozen=True)
class TextQuery:
    """Free text (HKP word search); only some protocols accept it."""

    words: tuple[str, ...]


Query = EmailQuery | FingerprintQuery | KeyIDQuery | TextQuery


def parse_query(term: str, allow_text: bool = False) -> Query:
    t = term.strip()
    if not t:
        raise InvalidQuery("the search term is empty")
    if any(ord(ch) < 0x20 or 0x7F <= ord(ch) < 0xA0 for ch in t):
        # No address, fingerprint, key id or published user ID contains one (and NUL
        # cannot even be compared with PostgreSQL's text columns).
        raise InvalidQuery("the search term contains a control character")
    if "@" in t:
        try:
            return EmailQuery(Email.parse(t))
        except InvalidEmail as e:
            if not allow_text:
                raise InvalidQuery(str(e)) from e
    elif _HEXISH.match(t) and (t[:2].lower() == "0x" or len(t.replace(" ", "")) in (8, 16, 40, 64)):
        digits = t.replace(" ", "")
        digits = digits[2:] if digits[:2].lower() == "0x" else digits
        if len(digits) == 16:
            return KeyIDQuery(KeyID(digits.upper()))
        if len(digits) in (40, 64):
            return FingerprintQuery(Fingerprint(digits.upper()))
        if len(digits) == 8:
            raise ShortKeyID(
                "short (8 hex digit) key ids are refused because they collide; "
                "use the 16-digit key id or the full fingerprint"
            )
        raise InvalidQuery(
            "a key is looked up by its 16-digit key id or its 40/64-digit fingerprint"
        )
    if allow_text:
        words = tuple(w for w in re.split(r"\s+", t.lower()) if w)
        return TextQuery(words)
    raise InvalidQuery(
        "not an email address, a fingerprint (40 or 64 hex digits) or a key id (16 hex digits)"
    )
