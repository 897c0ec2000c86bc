"""Keys arriving from their owners: uploads (FlowCrypt ``/pub``, VKS, HKP ``/pks/add``,
the web form), legacy updates, and submissions proven by an OIDC id token.

An upload is merged through ``Ingest`` and publishes nothing by itself, except where the
address is already attested on this very key (an update of a published key takes effect
at once). Publication needs proof: the emailed link (``Verification``), or an id token for
the address (``with_id_token``), which publishes at once under the conflict rule.
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
from attester.service._parsing import parse_for_address, parse_upload
from attester.service.core import Core
from attester.service.errors import BadRequest, NotFound, RateLimited, input_error
from attester.service.ingest import ImportResult, Merged
from attester.service.proof import prove_address
from attester.service.verification import AddressState, Verification
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

    def _merge(self, tx: WriteTx, cert: ParsedCert, source: str, now: datetime) -> Merged:
        """``Ingest.merge``, its refusal (the merged key would exceed a limit) as the
        upload's error: a 400 with the limit's sentence, never a 500."""
        try:
            return self.core.ingest.merge(tx, cert, source, now)
        except CertificateError as e:
            raise input_error(e) from e

    def submit(self, data: bytes, source: str = "upload") -> Submission:
        """Merge an uploaded certificate and report each address's state; sends nothing."""
        return self._submit(parse_upload(data, self.core.settings.limits), source)

    def upload(self, data: bytes, source: str = "upload") -> Submission | list[Fingerprint]:
        """VKS ``/vks/v1/upload``: one certificate is a ``submit``. Several (a keyring) are
        merged in one transaction and only their fingerprints returned, with no upload
        token: verification is asked per key, so a keyring upload publishes nothing and
        mails nobody (Hagrid answers such an upload with the bare list of fingerprints)."""
        try:
            certs = parse_certificates(data, self.core.settings.limits)
        except CertificateError as e:
            raise input_error(e) from e
        if len(certs) == 1:
            return self._submit(certs[0], source)
        now = self.core.clock()
        with self.core.store.write() as tx:
            return [self._merge(tx, c, source, now).cert.fingerprint for c in certs]

    def _submit(self, cert: ParsedCert, source: str) -> Submission:
        now = self.core.clock()
        with self.core.store.write() as tx:
            merged = self._merge(tx, cert, source, now)
            token = tx.tokens.issue(Purpose.UPLOAD, cert.fingerprint, None, now, self.upload_ttl)
            states = self.verification.states(tx, merged.cert_id, merged.cert, now)
        return Submission(merged.cert.fingerprint, merged.cert.revoked, states, token, merged.cert)

    def for_address(self, email: Email, data: bytes) -> SubmitOutcome:
        """FlowCrypt ``POST /pub/{email}`` without a token: the key must carry the address;
        if this very key is already attested for it the update takes effect at once,
        otherwise a confirmation mail goes out (rate-limited)."""
        cert = parse_for_address(email, data, self.core.settings.limits)
        now = self.core.clock()
        with self.core.store.write() as tx:
            merged = self._merge(tx, cert, "upload", now)
            if email in tx.published_emails(merged.cert_id):
                return SubmitOutcome.PUBLISHED
            sent = self.verification.send(tx, merged.cert, email, now)
        return SubmitOutcome.MAIL_SENT if sent else SubmitOutcome.MAIL_PENDING

    def update_key(self, kid: KeyID, data: bytes) -> None:
        """A newer version of a stored key (legacy ``PUT /pub/{longid}``): merged, no mail."""
        cert = parse_upload(data, self.core.settings.limits)
        if cert.primary.key_id != kid:
            raise BadRequest(f"The key's primary key id is {cert.primary.key_id}, not {kid}.")
        now = self.core.clock()
        with self.core.store.write() as tx:
            if tx.cert_id(cert.fingerprint) is None:
                raise NotFound(
                    f"No key with key id {kid} is stored; submit it for an address first."
                )
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
            items = parse_keyring(data, self.core.settings.limits)
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
        return KeyringUpload(tuple(added), tuple(rejected))

    def _add_one(
        self, cert: ParsedCert, source: str, request_verify: bool, budget: list[int]
    ) -> Added:
        now = self.core.clock()
        with self.core.store.write() as tx:
            merged = self._merge(tx, cert, source, now)
            states = self.verification.states(tx, merged.cert_id, merged.cert, now)
            mailed: list[Email] = []
            limited: dict[Email, str] = {}
            for email, state in states.items():
                if not request_verify or state not in (
                    AddressState.UNPUBLISHED,
                    AddressState.PENDING,
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
            limited,
        )

    # ---- OIDC
    async def with_id_token(
        self, authorization: str | None, email: Email, data: bytes
    ) -> Fingerprint:
        """Publish the key for the address an OIDC id token proves, replacing a conflicting
        key; no mail round trip."""
        identity = await prove_address(self.oidc, authorization, email)
        return await to_thread.run_sync(self._attest_oidc, identity.email, identity.issuer, data)

    def _attest_oidc(self, email: Email, issuer: str, data: bytes) -> Fingerprint:
        cert = parse_for_address(email, data, self.core.settings.limits)
        now = self.core.clock()
        with self.core.store.write() as tx:
            merged = self._merge(tx, cert, "upload", now)
            self.core.publication.publish(
                tx,
                merged.cert_id,
                merged.cert,
                [email],
                AttestedBy.OIDC,
                f"oidc:{issuer}"[:64],
                now,
            )
        return cert.fingerprint
