"""The core every protocol adapter calls: lookups, and the shared write path
(``ingest``, ``publication``, ``mails``) that attestation, imports and federation use.

It takes parsed values (``Query``, ``Email``, ``Fingerprint``), returns stored views or
result objects, and raises ``ServiceError`` subclasses; it knows nothing of HTTP.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Protocol

from attester.config import Settings
from attester.service.errors import BadRequest, NotFound, Unsupported
from attester.service.ingest import Ingest
from attester.service.mails import Mails
from attester.service.publication import Publication
from attester.service.query import EmailQuery, FingerprintQuery, KeyIDQuery, Query, TextQuery
from attester.store.db import Database
from attester.store.keys import KeyStore
from attester.store.origins import OriginStore
from attester.store.secrets import server_secret
from attester.store.views import OriginKind, StoredCert, StoredUserID

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    return datetime.now(UTC)


class Upstreams(Protocol):
    """Other keyservers asked on a local miss (``attester.federation.Fallback``)."""

    def ask(self, query: EmailQuery | FingerprintQuery | KeyIDQuery) -> bool:
        """Ask about ``query`` unless a cached answer stands or the operator's policy
        forbids it, and store what the upstreams vouch for (never as attested). True when
        the store may now hold something new for the query."""
        ...


class Core:
    def __init__(
        self,
        settings: Settings,
        db: Database,
        clock: Clock = utcnow,
        upstreams: Upstreams | None = None,
    ) -> None:
        self.settings = settings
        self.db = db
        self.clock = clock
        self.store = KeyStore(db)
        self.origins = OriginStore(db)
        self.mails = Mails(settings)
        self.publication = Publication(settings, self.mails)
        self.ingest = Ingest(self.publication, settings.limits)
        # Set when the app is built (``attester.app``): federation writes through
        # ``ingest``, so it is made after the core.
        self.upstreams = upstreams

    # ---- lookups
    def lookup(self, query: Query) -> list[StoredCert]:
        """The one decision point for lookups: what a query finds, whichever protocol asked
        and whichever source supplies it. Sources, the first with a result wins:

        1. local: certificates on which the address is attested here; by fingerprint or key
           id, any stored certificate no peer supplied (identity-free unless attested);
        2. peers already stored (mirrors, earlier upstream answers): by email, certificates
           on which a peer published the address; by fingerprint or key id, the peer's copy
           of a certificate with nothing attested here. Marked with their ``origin``;
        3. upstreams, asked now when 1 has nothing, no mirror has the answer and no cached
           upstream answer stands; what they vouch for is stored, then read as in 2.
        """
        if isinstance(query, TextQuery):
            raise BadRequest("text search is not supported here")
        found, peers = self._stored(query)
        if not found:
            # A mirrored or reconciled copy answers: no upstream is asked.
            mirrored = any(c.origin.kind in (OriginKind.MIRROR, OriginKind.RECON) for c in peers)
            if self.upstreams is not None and not mirrored and self.upstreams.ask(query):
                found, peers = self._stored(query)
            found = found or peers
        if not found:
            raise NotFound(_not_found_message(query))
        if isinstance(query, EmailQuery) and not self.settings.multiple_keys_per_address:
            found = found[:1]
        return found

    def _stored(
        self, query: EmailQuery | FingerprintQuery | KeyIDQuery
    ) -> tuple[list[StoredCert], list[StoredCert]]:
        """Sources 1 and 2 of ``lookup`` as the store holds them now; peers are read only
        when nothing local answers."""
        match query:
            case EmailQuery(email):
                local = self.store.by_email(email)
                return local, [] if local else self.origins.by_email(email)
            case FingerprintQuery(fpr):
                hits = self.store.by_fingerprint(fpr)
            case KeyIDQuery(kid):
                hits = self.store.by_key_id(kid)
        # Attested here: local. Otherwise a peer's copy when one supplied it (the peer's
        # published user IDs, marked with its origin), else identity-free and local.
        forms = self.origins.forms([c.id for c in hits if c.armored_published is None])
        local = [c for c in hits if c.id not in forms]
        peers = [
            replace(c, armored_published=forms[c.id].armored, origin=forms[c.id].origin)
            for c in hits
            if c.id in forms
        ]
        return local, peers

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
        """The user IDs each found certificate is served with: those attested here, or for
        a peer's copy those the peer published (index listings)."""
        out = self.store.published_user_ids(
            [c.id for c in found if c.origin.kind is OriginKind.LOCAL]
        )
        out.update(
            self.origins.user_ids(
                {c.id: c.origin.label for c in found if c.origin.kind is not OriginKind.LOCAL}
            )
        )
        return out

    def by_digest(self, digest: str) -> StoredCert | None:
        return self.store.by_digest(digest)

    def certificates_by_digest(self, digests: Sequence[str], max_bytes: int) -> list[bytes]:
        """The full stored certificates with these SKS digests, in request order, unknown
        ones left out (HKP ``/pks/hashquery``). Stops once ``max_bytes`` are collected: a
        sync peer asks again for what it still misses, and one request must not make us
        hold gigabytes of key material in memory."""
        ordered = list(dict.fromkeys(d.lower() for d in digests))
        out: list[bytes] = []
        size = 0
        for start in range(0, len(ordered), 200):
            chunk = ordered[start : start + 200]
            found = self.store.data_by_digests(chunk)
            for d in chunk:
                if d not in found:
                    continue
                if out and size + len(found[d]) > max_bytes:
                    return out
                out.append(found[d])
                size += len(found[d])
        return out

    def server_secret(self, name: str) -> bytes:
        """An installation-wide secret (made on first use, shared by all app servers)."""
        return server_secret(self.db, name, self.clock())

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
