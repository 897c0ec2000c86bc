"""The core every protocol adapter calls: lookups, and the shared write path
(``ingest``, ``publication``, ``mails``) that attestation, imports and federation use.

It takes parsed values (``Query``, ``Email``, ``Fingerprint``), returns stored views or
result objects, and raises ``ServiceError`` subclasses; it knows nothing of HTTP.

Every lookup names its ``Audience``: a client inside the organisation's networks (or with
an access token) or anyone else. The operator's policy may keep a domain's keys from the
latter (``serve_outside = false``); what is removed from distribution is never served to
anyone (the store leaves it out of every query).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Protocol

from anyio import to_thread

from attester.config import Settings
from attester.openpgp import ParsedCert
from attester.openpgp.types import Email
from attester.service.client_limits import ClientLimits
from attester.service.errors import BadRequest, NotFound, Unsupported
from attester.service.ingest import Ingest
from attester.service.mails import Mails
from attester.service.parsing import InProcess, Parser
from attester.service.policy import Audience, PolicyHolder
from attester.service.publication import Publication
from attester.service.query import EmailQuery, FingerprintQuery, KeyIDQuery, Query, TextQuery
from attester.store.db import Database
from attester.store.keys import KeyStore
from attester.store.origins import OriginStore
from attester.store.removals import RemovalStore
from attester.store.secrets import server_secret
from attester.store.views import OriginKind, StoredCert, StoredUserID

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    return datetime.now(UTC)


class Upstreams(Protocol):
    """Other keyservers asked on a local miss (``attester.federation.Fallback``)."""

    async def ask(self, query: EmailQuery | FingerprintQuery | KeyIDQuery) -> bool:
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
        self.removals = RemovalStore(db)
        # The policy in force; the app gives it a source to reload from (SIGHUP, admin API).
        # A reload changes what lookups answer, as a write does: kept answers go.
        self.policy = PolicyHolder(settings.make_policy(), changed=db.changes.bump)
        self.mails = Mails(settings)
        self.publication = Publication(settings, self.mails, self.policy)
        self.ingest = Ingest(self.publication, settings.limits)
        # Set when the app is built (``attester.app``): federation writes through
        # ``ingest``, so it is made after the core.
        self.upstreams = upstreams
        self.parsing: Parser = InProcess()
        self.client_limits = ClientLimits(
            settings.rate_limit_storage_url,
            settings.rate_limit_mail_requests,
            settings.rate_limit_text_search,
            settings.rate_limit_key_prefix,
        )

    def use_parser(self, parser: Parser) -> None:
        """Parse uploads and merges with ``parser`` (the app's process pool) from now on."""
        self.parsing = parser
        self.ingest.parsing = parser

    # ---- lookups
    async def lookup(self, query: Query, audience: Audience = Audience.OUTSIDE) -> list[StoredCert]:
        """What ``query`` finds for ``audience`` (``_lookup`` says from where, and how)."""
        found, _ = await self._lookup(query, audience, listed=False)
        return found

    async def listing(
        self, query: Query, audience: Audience = Audience.OUTSIDE, client: str | None = None
    ) -> tuple[list[StoredCert], dict[int, list[StoredUserID]]]:
        """``search`` with the user IDs each found certificate is listed with
        (``published_user_ids``): what index answers show. For an address, fingerprint or
        key id, both are read in the same trip to a thread."""
        if isinstance(query, TextQuery):
            found = await self.search(query, audience, client)
            return found, await to_thread.run_sync(self.published_user_ids, found)
        return await self._lookup(query, audience, listed=True)

    async def _lookup(
        self, query: Query, audience: Audience, *, listed: bool
    ) -> tuple[list[StoredCert], dict[int, list[StoredUserID]]]:
        """The one decision point for lookups: what a query finds, whichever protocol asked
        and whichever source supplies it. Sources, the first with a result wins:

        1. local: certificates on which the address is attested here; by fingerprint or key
           id, any stored certificate no peer supplied (identity-free unless attested);
        2. peers already stored (mirrors, earlier upstream answers): by email, certificates
           on which a peer published the address; by fingerprint or key id, the peer's copy
           of a certificate with nothing attested here. Marked with their ``origin``;
        3. upstreams, asked now when 1 has nothing, no mirror has the answer, no cached
           upstream answer stands and no removal names what is asked for; what they vouch
           for is stored, then read as in 2.

        Then what the audience may see (``visible``), and one key per address unless the
        address's domain allows several. The store is read in a thread; upstreams are asked
        on the event loop, so a slow upstream holds no thread that local lookups need.
        """
        if isinstance(query, TextQuery):
            raise BadRequest("text search is not supported here")
        policy = self.policy.current
        if isinstance(query, EmailQuery) and not policy.served_to(query.email.domain, audience):
            # Not even asked upstream: an outsider learns nothing about the domain's people.
            raise NotFound(_not_found_message(query))
        found, peers, uids = await to_thread.run_sync(self._stored, query, listed)
        if not found:
            # A mirrored or reconciled copy answers: no upstream is asked.
            mirrored = any(c.origin.kind in (OriginKind.MIRROR, OriginKind.RECON) for c in peers)
            if (
                self.upstreams is not None
                and not mirrored
                and not await to_thread.run_sync(self._removed, query)
                and await self.upstreams.ask(query)
            ):
                found, peers, uids = await to_thread.run_sync(self._stored, query, listed)
            found = found or peers
        found = await self._visible(found, audience)
        if not found:
            raise NotFound(_not_found_message(query))
        if (
            isinstance(query, EmailQuery)
            and not policy.for_email(query.email).multiple_keys_per_address
        ):
            found = found[:1]
        return found, uids

    def _removed(self, query: EmailQuery | FingerprintQuery | KeyIDQuery) -> bool:
        """Whether a removal names what is asked for: then no upstream is asked either (a
        removed key fetched upstream must not come back, and nobody outside needs to learn
        that someone looked for it)."""
        match query:
            case EmailQuery(email):
                return self.removals.blocks(email=email)
            case FingerprintQuery(fpr):
                return self.removals.blocks(fingerprint=fpr)
            case KeyIDQuery(kid):
                return self.removals.blocks(key_id=kid)

    def _stored(
        self, query: EmailQuery | FingerprintQuery | KeyIDQuery, listed: bool
    ) -> tuple[list[StoredCert], list[StoredCert], dict[int, list[StoredUserID]]]:
        """Sources 1 and 2 of ``lookup`` as the store holds them now, and when ``listed``
        the user IDs the certificates of the first source that has any are listed with."""
        local, peers = self._sources(query)
        uids = self.published_user_ids(local or peers) if listed else {}
        return local, peers, uids

    def _sources(
        self, query: EmailQuery | FingerprintQuery | KeyIDQuery
    ) -> tuple[list[StoredCert], list[StoredCert]]:
        """Sources 1 and 2 of ``lookup``; peers are read only when nothing local answers."""
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

    def visible(self, found: list[StoredCert], audience: Audience) -> list[StoredCert]:
        """The certificates ``audience`` may be served: all of them for internal clients;
        for others, none that is served with an address of a domain the policy keeps
        inside (``serve_outside = false``)."""
        policy = self.policy.current
        if audience is Audience.INTERNAL or not policy.hides_domains or not found:
            return found
        uids = self.published_user_ids(found)
        return [
            c
            for c in found
            if all(
                policy.served_to(u.email.domain, audience)
                for u in uids.get(c.id, [])
                if u.email is not None
            )
        ]

    def relayable(
        self, found: list[ParsedCert], email: Email, audience: Audience
    ) -> list[ParsedCert]:
        """Of the keys a directory answered a relayed lookup with (``/ldap-relay``; not
        stored), those this server may pass on: none for an address or domain that is
        removed or kept from this audience, and no removed key."""
        if not self.policy.current.served_to(email.domain, audience) or self.removals.blocks(
            email=email
        ):
            return []
        return [c for c in found if not self.removals.blocks(fingerprint=c.fingerprint)]

    async def _visible(self, found: list[StoredCert], audience: Audience) -> list[StoredCert]:
        """``visible``, reading the store in a thread only when the policy hides domains."""
        policy = self.policy.current
        if audience is Audience.INTERNAL or not policy.hides_domains or not found:
            return found
        return await to_thread.run_sync(self.visible, found, audience)

    async def search(
        self, query: Query, audience: Audience = Audience.OUTSIDE, client: str | None = None
    ) -> list[StoredCert]:
        """Like ``lookup``, and free text too (HKP, the web search box): every word must
        occur in a published user ID. A text search is counted against ``client`` (the
        address it came from; ``RateLimited`` beyond ``rate_limit_text_search``)."""
        if not isinstance(query, TextQuery):
            return await self.lookup(query, audience)
        if not self.settings.hkp_text_search:
            raise Unsupported("Text search is switched off on this server.")
        words = [w for w in query.words if w]
        # Short words would let anyone page through every published address.
        shortest = self.settings.search_min_chars
        if not words or all(len(w) < shortest for w in words):
            raise BadRequest(
                f"The search text is too short: search for a word of at least {shortest} "
                "characters."
            )
        found = await to_thread.run_sync(self._search_text, words, client)
        found = await self._visible(found, audience)
        if not found:
            raise NotFound("No published key matches the search text")
        return found

    def _search_text(self, words: list[str], client: str | None) -> list[StoredCert]:
        if client is not None:
            self.client_limits.search(client)  # per client (memory or Redis)
        return self.store.search_text(words, self.settings.search_result_limit)

    def published_user_ids(self, found: list[StoredCert]) -> dict[int, list[StoredUserID]]:
        """The user IDs each found certificate is served with: those attested here, or for
        a peer's copy those the peer published (index listings). Never removed ones."""
        out = self.store.published_user_ids(
            [c.id for c in found if c.origin.kind is OriginKind.LOCAL]
        )
        out.update(
            self.origins.user_ids(
                {c.id: c.origin.label for c in found if c.origin.kind is not OriginKind.LOCAL}
            )
        )
        return out

    def by_digest(self, digest: str, audience: Audience = Audience.OUTSIDE) -> StoredCert | None:
        found = self.store.by_digest(digest)
        return next(iter(self.visible([found], audience)), None) if found else None

    def certificates_by_digest(
        self, digests: Sequence[str], max_bytes: int, audience: Audience = Audience.OUTSIDE
    ) -> list[bytes]:
        """The full stored certificates with these SKS digests, in request order, unknown
        ones left out (HKP ``/pks/hashquery``). Stops once ``max_bytes`` are collected: a
        sync peer asks again for what it still misses, and one request must not make us
        hold gigabytes of key material in memory.

        What is removed from distribution is left out as unknown digests are: its digest
        stays in what this server holds (an SKS peer would send the key again and again
        if it vanished), but its content is never sent. So are certificates carrying any
        address of a domain kept inside, unless the peer is an internal client."""
        ordered = list(dict.fromkeys(d.lower() for d in digests))
        policy = self.policy.current
        hide = audience is Audience.OUTSIDE and policy.hides_domains
        out: list[bytes] = []
        size = 0
        for start in range(0, len(ordered), 200):
            chunk = ordered[start : start + 200]
            found = self.store.data_by_digests(chunk)
            if hide and found:
                emails = self.store.emails_by_digest(list(found))
                found = {
                    d: data
                    for d, data in found.items()
                    if all(policy.served_to(e.rpartition("@")[2], audience) for e in emails[d])
                }
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

    def wkd(self, domain: str, hash_: str, audience: Audience = Audience.OUTSIDE) -> bytes:
        """The WKD answer: binary certificate(s) with only the requested address's user IDs."""
        if not self.serves_wkd_domain(domain):
            raise NotFound(f"This server does not serve WKD for {domain}")
        domain = domain.lower().rstrip(".")
        policy = self.policy.current
        if not policy.served_to(domain, audience):
            raise NotFound("No key is published for this address")
        found = self.store.wkd(domain, hash_.lower())
        if not policy.rule(domain).multiple_keys_per_address:
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
