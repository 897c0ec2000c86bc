"""Attestation: how an address becomes findable, and how its owner takes it back.

One service, used by every protocol (FlowCrypt ``/pub``, VKS upload/request-verify, HKP
``/pks/add``, the web pages). Paths to publication:

- email confirmation: ``submit`` / ``request_verify`` queue one verification mail per
  address (rate-limited); ``confirm`` publishes when the certificate still carries a valid,
  unrevoked user ID with the address;
- OIDC: ``submit_with_id_token`` publishes at once for the address the token proves;
- operator: ``import_keyring(attest_emails=True)`` (the enterprise directory import).

Whatever the path, ``_publish`` applies the conflict rule: unless the operator allows
several keys per address, the newly attested key replaces the previous one and the address
is told so by mail. Every mail is queued in the same transaction as the change behind it.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from anyio import to_thread

from attester.attestation.mail import MailSettings, render
from attester.attestation.oidc import IssuerUnavailable, OIDCError, OIDCVerifier
from attester.config import Settings
from attester.openpgp import (
    CertificateError,
    ParsedCert,
    Rejected,
    parse_certificate,
    parse_certificates,
    parse_keyring,
)
from attester.openpgp.types import Email, Fingerprint, KeyID
from attester.service.core import Core, ImportSummary, input_error
from attester.service.errors import BadRequest, Gone, NotFound, Unauthorized, Unavailable
from attester.store.keys import AttestedBy, ImportResult, WriteTx
from attester.store.tokens import Purpose, TokenInfo, TokenState


class AddressState(enum.StrEnum):
    """The states VKS reports per address (``vks-api.md``)."""

    PUBLISHED = "published"
    PENDING = "pending"  # a verification mail is out
    UNPUBLISHED = "unpublished"
    REVOKED = "revoked"


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
    mailed: tuple[Email, ...]  # verification mails this upload queued


@dataclass(frozen=True)
class KeyringUpload:
    added: tuple[Added, ...]
    rejected: tuple[Rejected, ...]


class ConfirmState(enum.Enum):
    CONFIRMED = "confirmed"
    ALREADY = "already"  # the link was used before
    EXPIRED = "expired"
    INVALID = "invalid"  # unknown token
    NOT_ON_KEY = "not_on_key"  # the key no longer carries a valid user ID with the address


@dataclass(frozen=True)
class TokenView:
    state: ConfirmState
    fingerprint: Fingerprint | None = None
    email: Email | None = None


@dataclass(frozen=True)
class ManageView:
    valid: bool
    fingerprint: Fingerprint | None = None
    published: tuple[Email, ...] = ()
    token: str | None = None  # the token to use for the next action (tokens are single use)
    expired: bool = False


def mail_settings(settings: Settings) -> MailSettings:
    """What mails need to know of the configuration."""
    return MailSettings(
        base_url=settings.public_url,
        sender_name=settings.mail_sender_name,
        sender_address=settings.mail_sender_address,
        service_name=settings.service_name,
    )


class Attestation:
    def __init__(self, core: Core, mail: MailSettings, oidc: OIDCVerifier | None = None) -> None:
        self.core = core
        self.mail = mail
        self.oidc = oidc
        s = core.settings
        self.verify_ttl = timedelta(seconds=s.verify_token_seconds)
        self.manage_ttl = timedelta(seconds=s.manage_token_seconds)
        self.upload_ttl = timedelta(seconds=s.upload_token_seconds)
        self.window = timedelta(seconds=s.mail_rate_window_seconds)

    @property
    def store(self):  # type: ignore[no-untyped-def]
        return self.core.store

    def _parse(self, data: bytes) -> ParsedCert:
        try:
            return parse_certificate(data, self.core.settings.limits)
        except CertificateError as e:
            raise input_error(e) from e

    def _parse_for(self, email: Email, data: bytes) -> ParsedCert:
        """A submitted key that must carry a valid, unrevoked user ID with ``email``."""
        cert = self._parse(data)
        if email not in _valid_emails(cert):
            raise BadRequest(
                f"The key {cert.fingerprint} has no valid, unrevoked user ID with {email}"
            )
        return cert

    def _link(self, path: str) -> str:
        return f"{self.core.settings.public_url}{path}"

    # ---- submission and verification mails
    def submit(self, data: bytes, source: str = "upload") -> Submission:
        """Merge an uploaded certificate and report each address's state; sends nothing."""
        return self._submit_parsed(self._parse(data), source)

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
            return self._submit_parsed(certs[0], source)
        now = self.core.clock()
        with self.store.write() as tx:
            return [tx.merge_cert(c, source, now).cert.fingerprint for c in certs]

    def _submit_parsed(self, cert: ParsedCert, source: str) -> Submission:
        now = self.core.clock()
        with self.store.write() as tx:
            outcome = tx.merge_cert(cert, source, now)
            token = tx.tokens.issue(Purpose.UPLOAD, cert.fingerprint, None, now, self.upload_ttl)
            states = self._states(tx, outcome.cert_id, outcome.cert, now)
        return Submission(
            outcome.cert.fingerprint, outcome.cert.revoked, states, token, outcome.cert
        )

    def _states(
        self, tx: WriteTx, cert_id: int, cert: ParsedCert, now: datetime
    ) -> dict[Email, AddressState]:
        published = tx.published_emails(cert_id)
        states: dict[Email, AddressState] = {}
        for email in cert.emails:
            uids = [u for u in cert.user_ids if u.email == email]
            if cert.revoked or all(u.revoked for u in uids):
                states[email] = AddressState.REVOKED
            elif email in published:
                states[email] = AddressState.PUBLISHED
            elif tx.tokens.outstanding(Purpose.VERIFY, cert.fingerprint, email, now):
                states[email] = AddressState.PENDING
            else:
                states[email] = AddressState.UNPUBLISHED
        return states

    def request_verify(
        self, fingerprint: Fingerprint, emails: Collection[Email], *, skip_unknown: bool = False
    ) -> dict[Email, AddressState]:
        """Queue one verification mail per address that the key carries and that is not yet
        published, at most one per address per rate-limit window (an address inside the
        window is reported ``pending``: a mail is out). Returns every address's state
        afterwards. An address the key does not carry is refused, or with ``skip_unknown``
        ignored (VKS clients send whatever the user ticked; Hagrid ignores the rest)."""
        now = self.core.clock()
        with self.store.write() as tx:
            return self._request_verify(tx, fingerprint, emails, skip_unknown, now)

    def request_verify_with_token(
        self, token: str, emails: Collection[Email]
    ) -> tuple[Fingerprint, dict[Email, AddressState]]:
        """VKS ``/vks/v1/request-verify``: ``request_verify`` for the key an upload token
        names, skipping addresses it does not carry. The token is only inspected, never
        used up, so the uploader may ask again (other addresses, a lost mail) while it
        lives."""
        now = self.core.clock()
        with self.store.write() as tx:
            info = tx.tokens.inspect(token, Purpose.UPLOAD, now)
            if info.state is not TokenState.VALID or info.fingerprint is None:
                raise Gone("Upload session expired. Please try again.")
            states = self._request_verify(tx, info.fingerprint, emails, True, now)
        return info.fingerprint, states

    def _request_verify(
        self,
        tx: WriteTx,
        fingerprint: Fingerprint,
        emails: Collection[Email],
        skip_unknown: bool,
        now: datetime,
    ) -> dict[Email, AddressState]:
        locked = tx.lock_cert(fingerprint)
        if locked is None:
            raise NotFound(f"No key found for fingerprint {fingerprint}")
        cert_id, cert = locked
        states = self._states(tx, cert_id, cert, now)
        for email in emails:
            if states.get(email) in (AddressState.UNPUBLISHED, AddressState.PENDING):
                self._send_verification(tx, cert, email, now)
                states[email] = AddressState.PENDING
            elif email not in states and not skip_unknown:
                raise BadRequest(f"The key {fingerprint} has no valid user ID with {email}")
        return states

    def _send_verification(
        self, tx: WriteTx, cert: ParsedCert, email: Email, now: datetime
    ) -> bool:
        tx.lock_address(email)
        if tx.outbox.sent_recently("verify", email, now - self.window):
            return False
        token = tx.tokens.issue(Purpose.VERIFY, cert.fingerprint, email, now, self.verify_ttl)
        rendered = render(
            "verify",
            {
                "address": email,
                "fingerprint": cert.fingerprint.hex,
                "link": self._link(f"/verify/{token}"),
                "expires_at": now + self.verify_ttl,
            },
            self.mail,
        )
        tx.outbox.enqueue("verify", email, rendered.subject, rendered.text, rendered.html, now)
        tx.audit(now, "system", "verify-mail", cert.fingerprint, email)
        return True

    def submit_for_address(self, email: Email, data: bytes) -> SubmitOutcome:
        """FlowCrypt ``POST /pub/{email}`` without a token: the key must carry the address;
        if this very key is already attested for it the update takes effect at once,
        otherwise a confirmation mail goes out (rate-limited)."""
        cert = self._parse_for(email, data)
        now = self.core.clock()
        with self.store.write() as tx:
            outcome = tx.merge_cert(cert, "upload", now)
            if email in tx.published_emails(outcome.cert_id):
                return SubmitOutcome.PUBLISHED
            sent = self._send_verification(tx, outcome.cert, email, now)
        return SubmitOutcome.MAIL_SENT if sent else SubmitOutcome.MAIL_PENDING

    def update_key(self, kid: KeyID, data: bytes) -> None:
        """A newer version of a stored key (legacy ``PUT /pub/{longid}``): merged, no mail."""
        cert = self._parse(data)
        if cert.primary.key_id != kid:
            raise BadRequest(f"The key's primary key id is {cert.primary.key_id}, not {kid}.")
        now = self.core.clock()
        with self.store.write() as tx:
            if tx.cert_id(cert.fingerprint) is None:
                raise NotFound(
                    f"No key with key id {kid} is stored; submit it for an address first."
                )
            tx.merge_cert(cert, "upload", now)

    # ---- confirmation
    def inspect_verification(self, token: str) -> TokenView:
        """What a verification link would do, without doing it (for the GET page)."""
        with self.store.write() as tx:
            info = tx.tokens.inspect(token, Purpose.VERIFY, self.core.clock())
            return self._view(tx, info)

    def _view(self, tx: WriteTx, info: TokenInfo) -> TokenView:
        state = {
            TokenState.VALID: ConfirmState.CONFIRMED,
            TokenState.USED: ConfirmState.ALREADY,
            TokenState.EXPIRED: ConfirmState.EXPIRED,
            TokenState.UNKNOWN: ConfirmState.INVALID,
        }[info.state]
        return TokenView(state, info.fingerprint, info.email)

    def confirm(self, token: str) -> TokenView:
        """Use a verification token: publish its address on its key (one transaction)."""
        now = self.core.clock()
        with self.store.write() as tx:
            info = tx.tokens.use(token, Purpose.VERIFY, now)
            if info.state is not TokenState.VALID:
                return self._view(tx, info)
            assert info.fingerprint is not None and info.email is not None
            locked = tx.lock_cert(info.fingerprint)
            if locked is None or info.email not in _valid_emails(locked[1]):
                return TokenView(ConfirmState.NOT_ON_KEY, info.fingerprint, info.email)
            cert_id, cert = locked
            self._publish(tx, cert_id, cert, [info.email], AttestedBy.EMAIL, "email", now)
            return TokenView(ConfirmState.CONFIRMED, info.fingerprint, info.email)

    def resend(self, token: str) -> dict[Email, AddressState] | None:
        """For an expired link: send a fresh verification mail for the same key and address."""
        now = self.core.clock()
        with self.store.write() as tx:
            info = tx.tokens.inspect(token, Purpose.VERIFY, now)
        if info.state is not TokenState.EXPIRED or not info.fingerprint or not info.email:
            return None
        return self.request_verify(info.fingerprint, [info.email])

    def _publish(
        self,
        tx: WriteTx,
        cert_id: int,
        cert: ParsedCert,
        emails: Collection[Email],
        by: AttestedBy,
        actor: str,
        now: datetime,
    ) -> set[Email]:
        for email in emails:
            tx.lock_address(email)
            if self.core.settings.multiple_keys_per_address:
                continue
            for other_id, other_fpr in tx.attested_certs(email):
                if other_id == cert_id:
                    continue
                tx.unpublish(other_id, tx.load(other_id), email, now)
                rendered = render(
                    "replaced",
                    {
                        "address": email,
                        "old_fingerprint": other_fpr.hex,
                        "new_fingerprint": cert.fingerprint.hex,
                        "link": self._link("/manage"),
                    },
                    self.mail,
                )
                tx.outbox.enqueue(
                    "replaced", email, rendered.subject, rendered.text, rendered.html, now
                )
                tx.audit(
                    now, actor, "replaced", other_fpr, email, f"replaced by {cert.fingerprint}"
                )
        done = tx.attest(cert_id, cert, emails, by, now)
        for email in done:
            tx.audit(now, actor, "attest", cert.fingerprint, email, by.value)
        return done

    # ---- OIDC
    async def submit_with_id_token(
        self, authorization: str | None, email: Email, data: bytes
    ) -> Fingerprint:
        """Publish the key for the address an OIDC id token proves, replacing a conflicting
        key; no mail round trip."""
        if self.oidc is None:
            raise Unauthorized(
                "This server does not accept id tokens (no OIDC issuer is configured)."
            )
        try:
            identity = await self.oidc.verify(authorization, email)
        except IssuerUnavailable as e:
            raise Unavailable(str(e)) from e
        except OIDCError as e:
            raise Unauthorized(str(e)) from e
        return await to_thread.run_sync(self._attest_oidc, identity.email, identity.issuer, data)

    def _attest_oidc(self, email: Email, issuer: str, data: bytes) -> Fingerprint:
        cert = self._parse_for(email, data)
        now = self.core.clock()
        with self.store.write() as tx:
            outcome = tx.merge_cert(cert, "upload", now)
            self._publish(
                tx,
                outcome.cert_id,
                outcome.cert,
                [email],
                AttestedBy.OIDC,
                f"oidc:{issuer}"[:64],
                now,
            )
        return cert.fingerprint

    # ---- keyring uploads (HKP /pks/add)
    def submit_keyring(
        self, data: bytes, source: str = "upload", *, request_verify: bool = False
    ) -> KeyringUpload:
        """Merge every certificate of an upload, one transaction each so one bad key does
        not cost the others. Updates of published keys take effect at once; no address is
        published here. With ``request_verify``, every address not yet published gets a
        verification mail (rate-limited as in ``request_verify``)."""
        try:
            items = parse_keyring(data, self.core.settings.limits)
        except CertificateError as e:
            raise input_error(e) from e
        added: list[Added] = []
        rejected: list[Rejected] = []
        for item in items:
            if isinstance(item, Rejected):
                rejected.append(item)
                continue
            try:
                added.append(self._add_one(item, source, request_verify))
            except CertificateError as e:
                # The merged certificate would exceed a limit; the stored one stays as it is.
                rejected.append(Rejected(str(e), item.fingerprint))
        return KeyringUpload(tuple(added), tuple(rejected))

    def _add_one(self, cert: ParsedCert, source: str, request_verify: bool) -> Added:
        now = self.core.clock()
        with self.store.write() as tx:
            outcome = tx.merge_cert(cert, source, now)
            states = self._states(tx, outcome.cert_id, outcome.cert, now)
            mailed: list[Email] = []
            for email, state in states.items():
                if not request_verify or state not in (
                    AddressState.UNPUBLISHED,
                    AddressState.PENDING,
                ):
                    continue
                if self._send_verification(tx, outcome.cert, email, now):
                    states[email] = AddressState.PENDING
                    mailed.append(email)
        return Added(
            outcome.cert.fingerprint, outcome.result, outcome.cert.revoked, states, tuple(mailed)
        )

    # ---- operator import (the enterprise directory path)
    def import_keyring(
        self,
        data: bytes,
        *,
        source: str = "import",
        attest_emails: bool = False,
        domains: Iterable[str] | None = None,
        summary: ImportSummary | None = None,
        progress: Callable[[int, int], None] | None = None,
        batch_size: int = 200,
    ) -> ImportSummary:
        """Merge every certificate of a keyring into the store, ``batch_size`` per
        transaction. With ``attest_emails`` the operator vouches for the addresses (the
        enterprise directory path), optionally only those in ``domains``."""
        summary = summary or ImportSummary()
        try:
            items = parse_keyring(data, self.core.settings.limits)
        except CertificateError as e:
            raise input_error(e) from e
        allowed = {d.lower().strip() for d in domains} if domains else None
        for start in range(0, len(items), batch_size):
            batch = items[start : start + batch_size]
            now = self.core.clock()
            with self.store.write() as tx:
                for item in batch:
                    if isinstance(item, Rejected):
                        summary.rejected += 1
                        summary.reasons[item.reason] += 1
                        continue
                    outcome = tx.merge_cert(item, source, now)
                    summary.count(outcome.result)
                    if attest_emails:
                        emails = _emails_in(outcome.cert, allowed)
                        done = self._publish(
                            tx,
                            outcome.cert_id,
                            outcome.cert,
                            emails,
                            AttestedBy.OPERATOR,
                            "operator",
                            now,
                        )
                        summary.attested += len(done)
            if progress:
                progress(len(batch), len(items))
        return summary

    # ---- management
    def request_manage(self, email: Email) -> None:
        """Mail a management link when a key is published for the address. The caller
        answers the same either way, so this reveals nothing about who has a key."""
        now = self.core.clock()
        with self.store.write() as tx:
            found = tx.attested_certs(email)
            if not found:
                return
            tx.lock_address(email)
            if tx.outbox.sent_recently("manage", email, now - self.window):
                return
            fpr = found[-1][1]
            token = tx.tokens.issue(Purpose.MANAGE, fpr, email, now, self.manage_ttl)
            rendered = render(
                "manage",
                {
                    "link": self._link(f"/manage/{token}"),
                    "expires_at": now + self.manage_ttl,
                    "fingerprint": fpr.hex,
                },
                self.mail,
            )
            tx.outbox.enqueue("manage", email, rendered.subject, rendered.text, rendered.html, now)

    def manage_view(self, token: str) -> ManageView:
        now = self.core.clock()
        with self.store.write() as tx:
            info = tx.tokens.inspect(token, Purpose.MANAGE, now)
            if info.state is not TokenState.VALID or info.fingerprint is None:
                return ManageView(False, expired=info.state is TokenState.EXPIRED)
            return self._manage(tx, info.fingerprint, token)

    def _manage(self, tx: WriteTx, fpr: Fingerprint, token: str) -> ManageView:
        stored = tx.cert_id(fpr)
        published = tuple(sorted(tx.published_emails(stored))) if stored is not None else ()
        return ManageView(True, fpr, published, token)

    def unpublish(self, token: str, email: Email) -> ManageView:
        """Take an address off the key at once. The token is used up and a fresh one with the
        same expiry returned, so the page keeps working without links living longer."""
        now = self.core.clock()
        with self.store.write() as tx:
            info = tx.tokens.use(token, Purpose.MANAGE, now)
            if info.state is not TokenState.VALID or info.fingerprint is None:
                return ManageView(False, expired=info.state is TokenState.EXPIRED)
            locked = tx.lock_cert(info.fingerprint)
            assert info.expires is not None
            nxt = tx.tokens.issue(
                Purpose.MANAGE,
                info.fingerprint,
                info.email,
                now,
                self.manage_ttl,
                expires=info.expires,
            )
            if locked is not None and tx.unpublish(locked[0], locked[1], email, now):
                tx.audit(now, "owner", "unpublish", info.fingerprint, email)
            return self._manage(tx, info.fingerprint, nxt)

    # ---- FlowCrypt welcome mail
    def welcome(self, email: Email, data: bytes) -> bool:
        """Send a welcome mail to the address of a key that can encrypt; False when one was
        sent within the rate-limit window."""
        try:
            cert = parse_certificate(data, self.core.settings.limits)
        except CertificateError as e:
            raise BadRequest("This key does not appear valid") from e
        now = self.core.clock()
        if email not in _valid_emails(cert) or not cert.can_encrypt(now):
            raise BadRequest("This key does not appear valid")
        with self.store.write() as tx:
            tx.lock_address(email)
            if tx.outbox.sent_recently("welcome", email, now - self.window):
                return False
            rendered = render("welcome", {"address": email, "link": self._link("/")}, self.mail)
            tx.outbox.enqueue("welcome", email, rendered.subject, rendered.text, rendered.html, now)
        return True


def _emails_in(cert: ParsedCert, domains: set[str] | None) -> list[Email]:
    return [e for e in cert.emails if domains is None or e.domain in domains]


def _valid_emails(cert: ParsedCert) -> set[Email]:
    """Addresses of valid, unrevoked user IDs of an unrevoked certificate."""
    if cert.revoked:
        return set()
    return {u.email for u in cert.user_ids if u.email is not None and not u.revoked}
