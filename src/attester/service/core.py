"""The core every protocol adapter calls: lookups and imports (attestation builds on it).

It takes parsed values (``Query``, ``Email``, ``Fingerprint``), returns stored views or
result objects, and raises ``ServiceError`` subclasses; it knows nothing of HTTP.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from attester.config import Settings
from attester.openpgp import (
    CertificateError,
)
from attester.service.errors import BadRequest, NotFound, PayloadTooLarge, Unsupported
from attester.service.query import EmailQuery, FingerprintQuery, KeyIDQuery, Query, TextQuery
from attester.store.db import Database
from attester.store.keys import ImportResult, KeyStore, StoredCert, StoredUserID

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class ImportSummary:
    new: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0
    attested: int = 0  # addresses newly attested by the operator
    reasons: Counter[str] = field(default_factory=Counter)

    @property
    def total(self) -> int:
        return self.new + self.updated + self.unchanged + self.rejected

    def count(self, result: ImportResult) -> None:
        setattr(self, result.value, getattr(self, result.value) + 1)


def input_error(e: CertificateError) -> BadRequest:
    """One place that turns an input problem of the OpenPGP core into a service error."""
    from attester.openpgp import InputTooLarge

    if isinstance(e, InputTooLarge):
        return PayloadTooLarge(str(e))
    return BadRequest(str(e))


class Core:
    def __init__(self, settings: Settings, db: Database, clock: Clock = utcnow) -> None:
        self.settings = settings
        self.db = db
        self.clock = clock
        self.store = KeyStore(db, settings.limits)

    # ---- lookups
    def lookup(self, query: Query) -> list[StoredCert]:
        """The one decision point for lookups: what a query finds, whichever protocol asked.
        An email query finds only attested addresses; fingerprint and key-id queries find the
        certificate whatever is attested (served identity-free when nothing is)."""
        match query:
            case EmailQuery(email):
                found = self.store.by_email(email)
                if not self.settings.multiple_keys_per_address:
                    found = found[:1]
            case FingerprintQuery(fpr):
                hit = self.store.by_fingerprint(fpr)
                found = [hit] if hit else []
            case KeyIDQuery(kid):
                found = self.store.by_key_id(kid)
            case TextQuery():
                raise BadRequest("text search is not supported here")
        if not found:
            raise NotFound(_not_found_message(query))
        return found

    def search(self, query: Query) -> list[StoredCert]:
        """Like ``lookup``, and free text too (HKP, the web search box): every word must
        occur in a published user ID."""
        if not isinstance(query, TextQuery):
            return self.lookup(query)
        if not self.settings.hkp_text_search:
            raise Unsupported("Text search is switched off on this server.")
        words = [w for w in query.words if w]
        if not words or all(len(w) < 2 for w in words):
            raise BadRequest("The search text is too short.")
        found = self.store.search_text(words, self.settings.search_result_limit)
        if not found:
            raise NotFound("No published key matches the search text")
        return found

    def published_user_ids(self, found: list[StoredCert]) -> dict[int, list[StoredUserID]]:
        return self.store.published_user_ids([c.id for c in found])

    def by_digest(self, digest: str) -> StoredCert | None:
        return self.store.by_digest(digest)

    def stats(self) -> dict[str, int]:
        return self.store.stats()

    def serves_wkd_domain(self, domain: str) -> bool:
        domains = {d.lower().rstrip(".") for d in self.settings.wkd_domains}
        return "*" in domains or domain.lower().rstrip(".") in domains

    def wkd(self, domain: str, hash_: str) -> bytes:
        """The WKD answer: binary certificate(s) with only the requested address's user IDs."""
        if not self.serves_wkd_domain(domain):
            raise NotFound(f"This server does not serve WKD for {domain}")
        found = self.store.wkd(domain.lower().rstrip("."), hash_.lower())
        if not self.settings.multiple_keys_per_address:
            found = found[:1]
        if not found:
            raise NotFound("No key is published for this address")
        return b"".join(found)


def _not_found_message(query: Query) -> str:
    match query:
        case EmailQuery(email):
            return f"No key is published for {email}"
        case FingerprintQuery(fpr):
            return f"No key found for fingerprint {fpr}"
        case KeyIDQuery(kid):
            return f"No key found for key id {kid}"
    return "No key found"
