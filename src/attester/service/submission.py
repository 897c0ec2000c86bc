"""Keys arriving from their owners: uploads (FlowCrypt ``/pub``, VKS, HKP ``/pks/add``,
the web form), legacy updates, and submissions proven by an OIDC id token.

An upload is merged through ``Ingest`` and publishes nothing by itself, except where the
address is already attested on this very key (an update of a published key takes effect
at once). Publication needs proof: the emailed link (``Verification``), or an id token for
the address (``with_id_token``), which publishes at once under the conflict rule.

The operator's rules come first (docs/enterprise.md): a key removed from distribution is
not accepted; a new key is not accepted when every address on it is of a domain whose
policy lets no owner publish (operator only, or nobody); an address is mailed a link, or
published by an id token, only when its domain's policy allows that method (and an id
token only from the issuers it lists); and some domains want the email link even after an
id token (``oidc_publish = "after_email"``). An update of a key already published for the
address is always taken, whatever the method: FlowCrypt's apps submit the user's key
again on every setup.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from anyio import to_thread

from attester.attestation.oidc import OIDCVerifier
from attester.openpgp import (
    CertificateError,
    ParsedCert,
    Rejected,
    parse_certificates,
    parse_keyring,
)
from attester.openpgp.types import Email, Fingerprint, KeyID
from attester.service._parsing import parse_for_address, parse_upload, valid_emails
from attester.service.core import Core
from attester.service.errors import (
    BadRequest,
    Forbidden,
    NotFound,
    RateLimited,
    RefusedByPolicy,
    Removed,
    input_error,
)
from attester.service.ingest import ImportResult, Merged
from attester.service.policy import Method
from attester.service.proof import prove_address
from attester.service.publication import policy_sentence
from attester.service.verification import AddressState, Verification
from attester.store.audit import Actor, ActorKind
from attester.store.tokens import Purpose
from attester.store.views import AttestedBy
from attester.store.writes import WriteTx


@dataclass(frozen=True)
class Submission:
    fingerprint: Fingerprint
    revoked: bool
    addresses: dict[Email, AddressState]
    upload_token: str  # lets the uploader ask for verification mails later (VKS)
    cert: ParsedCert = field(repr=False)
    # Addresses no verification mail can publish (the operator's policy, a removal), and why.
    refused: dict[Email, str] = field(default_factory=dict)


class SubmitOutcome(enum.Enum):
    PUBLISHED = "published"  # already attested for this address: update took effect
    MAIL_SENT = "mail_sent"
    MAIL_PENDING = "mail_pending"  # one was sent within the rate-limit window


@dataclass(frozen=True)
class Added:
    """One certificate of a keyring upload (HKP ``/pks/add``) after its merge."""

    fingerprint: Fingerprint
    result: ImportResult
    revoked: bool
    addresses: dict[Email, AddressState]
    mailed: tuple[Email, ...]  # verification mails this upload queued (or that are out)
    refused: dict[Email, str] = field(default_factory=dict)  # not publishable here, and why
    limited: dict[Email, str] = field(default_factory=dict)  # addresses a limit held back


@dataclass(frozen=True)
class KeyringUpload:
    added: tuple[Added, ...]
    rejected: tuple[Rejected, ...]


class Submissions:
    def __init__(
        self, core: Core, verification: Verification, oidc: OIDCVerifier | None = None
    ) -> None:
        self.core = core
        self.verification = verification
        self.oidc = oidc
        self.upload_ttl = timedelta(seconds=core.settings.upload_token_seconds)

    def submit(self, data: bytes, source: str = "upload") -> Submission:
        """Merge an uploaded certificate and report each address's state; sends nothing."""
        return self._submit(
            parse_upload(self.core.parsing, data, self.core.settings.limits), source
        )

    def upload(self, data: bytes, source: str = "upload") -> Submission | list[Fingerprint]:
        """VKS ``/vks/v1/upload``: one certificate is a ``submit``. Several (a keyring) are
        merged in one transaction and only their fingerprints returned, with no upload
        token: verification is asked per key, so a keyring upload publishes nothing and
        mails nobody (Hagrid answers such an upload with the bare list of fingerprints)."""
        try:
            certs = self.core.parsing.call(parse_certificates, data, self.core.settings.limits)
        except CertificateError as e:
            raise input_error(e) from e
        if len(certs) == 1:
            return self._submit(certs[0], source)
        now = self.core.clock()
        with self.core.store.write() as tx:
            for c in certs:
                if (refused := self.refusal(tx, c)) is not None:
                    raise refused
            return [self._merge(tx, c, source, now).cert.fingerprint for c in certs]

    def _merge(self, tx: WriteTx, cert: ParsedCert, source: str, now: datetime) -> Merged:
        """``Ingest.merge``, its refusal (the merged key would exceed a limit) as the
        upload's error: a 400 with the limit's sentence, never a 500."""
        try:
            return self.core.ingest.merge(tx, cert, source, now)
        except CertificateError as e:
            raise input_error(e) from e

    def refusal(self, tx: WriteTx, cert: ParsedCert) -> Forbidden | None:
        """Why an upload of ``cert`` is not accepted at all, or None: the key is removed
        from distribution, or it is new and every address on it is of a domain whose
        policy lets no owner publish. Updates of a stored key (revocations, new subkeys)
        are always taken otherwise."""
        cert_removed, _ = tx.removals.flags_for(cert.fingerprint, ())
        if cert_removed:
            return Removed(
                f"The key {cert.fingerprint} was removed from distribution by the operator of "
                "this server and is not accepted."
            )
        if tx.cert_id(cert.fingerprint) is not None:
            return None
        emails = list(valid_emails(cert))
        policy = self.core.policy.current
        if emails and not any(policy.for_email(e).accepts_uploads for e in emails):
            rule = policy.for_email(emails[0])
            return RefusedByPolicy(policy_sentence(emails[0], Method.EMAIL, rule.submit))
        return None

    def _submit(self, cert: ParsedCert, source: str) -> Submission:
        now = self.core.clock()
        with self.core.store.write() as tx:
            if (refused := self.refusal(tx, cert)) is not None:
                raise refused
            merged = self._merge(tx, cert, source, now)
            token = tx.tokens.issue(Purpose.UPLOAD, cert.fingerprint, None, now, self.upload_ttl)
            states = self.verification.states(tx, merged.cert_id, merged.cert, now)
            refusals = self._refusals(tx, merged.cert, states)
        return Submission(
            merged.cert.fingerprint, merged.cert.revoked, states, token, merged.cert, refusals
        )

    def _refusals(
        self, tx: WriteTx, cert: ParsedCert, states: dict[Email, AddressState]
    ) -> dict[Email, str]:
        waiting = [
            e for e, st in states.items() if st in (AddressState.UNPUBLISHED, AddressState.PENDING)
        ]
        return self.verification.refusals(tx, cert, waiting)

    def for_address(self, email: Email, data: bytes) -> SubmitOutcome:
        """FlowCrypt ``POST /pub/{email}`` without a token: the key must carry the address;
        if this very key is already attested for it the update takes effect at once,
        otherwise a confirmation mail goes out (rate-limited)."""
        cert = parse_for_address(self.core.parsing, email, data, self.core.settings.limits)
        now = self.core.clock()
        with self.core.store.write() as tx:
            if (published := self._update_of_published(tx, cert, email, now)) is not None:
                return published
            refused = self.core.publication.refusal(tx, cert.fingerprint, email, Method.EMAIL)
            if refused is not None:
                raise refused
            merged = self._merge(tx, cert, "upload", now)
            sent = self.verification.send(tx, merged.cert, email, now)
        return SubmitOutcome.MAIL_SENT if sent else SubmitOutcome.MAIL_PENDING

    def _update_of_published(
        self, tx: WriteTx, cert: ParsedCert, email: Email, now: datetime
    ) -> SubmitOutcome | None:
        """A key already published for the address, submitted again: merged, and the
        update takes effect (unless removed, which no submission changes). None otherwise."""
        cert_id = tx.cert_id(cert.fingerprint)
        if cert_id is None or email not in tx.published_emails(cert_id):
            return None
        removed = self.core.publication.removal(tx, cert.fingerprint, email)
        if removed is not None:
            raise removed
        self._merge(tx, cert, "upload", now)
        return SubmitOutcome.PUBLISHED

    def update_key(self, kid: KeyID, data: bytes) -> None:
        """A newer version of a stored key (legacy ``PUT /pub/{longid}``): merged, no mail."""
        cert = parse_upload(self.core.parsing, data, self.core.settings.limits)
        if cert.primary.key_id != kid:
            raise BadRequest(f"The key's primary key id is {cert.primary.key_id}, not {kid}.")
        now = self.core.clock()
        with self.core.store.write() as tx:
            if tx.cert_id(cert.fingerprint) is None:
                raise NotFound(
                    f"No key with key id {kid} is stored; submit it for an address first."
                )
            if (refused := self.refusal(tx, cert)) is not None:
                raise refused
            self._merge(tx, cert, "upload", now)

    # ---- keyring uploads (HKP /pks/add)
    def keyring(
        self, data: bytes, source: str = "upload", *, request_verify: bool = False
    ) -> KeyringUpload:
        """Merge every certificate of an upload, one transaction each so one bad key does
        not cost the others. Updates of published keys take effect at once; no address is
        published here. With ``request_verify``, every address not yet published gets a
        verification mail (rate-limited as in ``Verification.request``)."""
        try:
            items = self.core.parsing.call(parse_keyring, data, self.core.settings.limits)
        except CertificateError as e:
            raise input_error(e) from e
        added: list[Added] = []
        rejected: list[Rejected] = []
        budget = [self.core.settings.mail_per_request_limit]  # mails this request may queue
        for item in items:
            if isinstance(item, Rejected):
                rejected.append(item)
                continue
            try:
                added.append(self._add_one(item, source, request_verify, budget))
            except BadRequest as e:
                # The merged certificate would exceed a limit; the stored one stays as it is.
                rejected.append(Rejected(e.message, item.fingerprint))
            except Forbidden as e:
                rejected.append(Rejected(e.message, item.fingerprint))
        return KeyringUpload(tuple(added), tuple(rejected))

    def _add_one(
        self, cert: ParsedCert, source: str, request_verify: bool, budget: list[int]
    ) -> Added:
        now = self.core.clock()
        with self.core.store.write() as tx:
            if (refused := self.refusal(tx, cert)) is not None:
                raise refused
            merged = self._merge(tx, cert, source, now)
            states = self.verification.states(tx, merged.cert_id, merged.cert, now)
            refusals = self._refusals(tx, merged.cert, states)
            mailed: list[Email] = []
            limited: dict[Email, str] = {}
            for email, state in states.items():
                if (
                    not request_verify
                    or email in refusals
                    or state
                    not in (
                        AddressState.UNPUBLISHED,
                        AddressState.PENDING,
                    )
                ):
                    continue
                if budget[0] <= 0:
                    limited[email] = (
                        f"one upload sends at most {self.core.settings.mail_per_request_limit} "
                        "verification emails; upload this key again on its own."
                    )
                    continue
                try:
                    if self.verification.send(tx, merged.cert, email, now):
                        budget[0] -= 1
                except RateLimited as e:
                    limited[email] = e.message
                    continue
                states[email] = AddressState.PENDING
                mailed.append(email)
        return Added(
            merged.cert.fingerprint,
            merged.result,
            merged.cert.revoked,
            states,
            tuple(mailed),
            refusals,
            limited,
        )

    # ---- OIDC
    async def with_id_token(
        self,
        authorization: str | None,
        email: Email,
        data: bytes,
        client_address: str | None = None,
    ) -> SubmitOutcome:
        """Publish the key for the address an OIDC id token proves, replacing a conflicting
        key; no mail round trip, unless the domain's policy still wants the email link
        (then a confirmation mail goes out, as without a token)."""
        identity = await prove_address(self.oidc, authorization, email)
        actor = Actor(ActorKind.OIDC, f"{identity.issuer} {identity.subject}", client_address)
        return await to_thread.run_sync(
            self._attest_oidc, identity.email, identity.issuer, data, actor
        )

    def _attest_oidc(self, email: Email, issuer: str, data: bytes, actor: Actor) -> SubmitOutcome:
        cert = parse_for_address(self.core.parsing, email, data, self.core.settings.limits)
        rule = self.core.policy.current.for_email(email)
        now = self.core.clock()
        with self.core.store.write() as tx:
            if (published := self._update_of_published(tx, cert, email, now)) is not None:
                return published
            refused = self.core.publication.refusal(tx, cert.fingerprint, email, Method.OIDC)
            if refused is not None:
                raise refused
            if not rule.accepts_oidc_issuer(issuer):
                raise RefusedByPolicy(
                    f"Id tokens from {issuer} do not publish keys for addresses at "
                    f"{email.domain} here."
                )
            merged = self._merge(tx, cert, "upload", now)
            if not rule.oidc_at_once:
                sent = self.verification.send(tx, merged.cert, email, now)
                return SubmitOutcome.MAIL_SENT if sent else SubmitOutcome.MAIL_PENDING
            self.core.publication.publish(
                tx, merged.cert_id, merged.cert, [email], AttestedBy.OIDC, actor, now
            )
        return SubmitOutcome.PUBLISHED
