"""Email verification: a mail with a single-use link per key and address, and what
following the link does.

A verification mail goes out only for an address the key carries and that is not yet
published, at most one per address per rate-limit window. Confirming publishes the address
when the certificate still carries a valid, unrevoked user ID with it, under the conflict
rule (``Publication.publish``). Pages that only show what a link would do read; they never
take the write lock.
"""

from __future__ import annotations

import enum
from collections.abc import Collection
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from attester.openpgp import ParsedCert
from attester.openpgp.types import Email, Fingerprint
from attester.service._parsing import valid_emails
from attester.service.core import Core
from attester.service.errors import BadRequest, Gone, NotFound, RateLimited
from attester.store.tokens import Purpose, TokenInfo, TokenState
from attester.store.views import AttestedBy
from attester.store.writes import WriteTx


class AddressState(enum.StrEnum):
    """The states VKS reports per address (``vks-api.md``)."""

    PUBLISHED = "published"
    PENDING = "pending"  # a verification mail is out
    UNPUBLISHED = "unpublished"
    REVOKED = "revoked"


class ConfirmState(enum.Enum):
    CONFIRMED = "confirmed"
    ALREADY = "already"  # the link was used before
    EXPIRED = "expired"
    INVALID = "invalid"  # unknown token
    NOT_ON_KEY = "not_on_key"  # the key no longer carries a valid user ID with the address


@dataclass(frozen=True)
class KeySummary:
    fingerprint: Fingerprint
    created: datetime


@dataclass(frozen=True)
class TokenView:
    state: ConfirmState
    fingerprint: Fingerprint | None = None
    email: Email | None = None
    created: datetime | None = None  # of the key the link would publish
    # Keys confirming would take the address from (the conflict rule): the page says so.
    replaces: tuple[KeySummary, ...] = ()


_CONFIRM_STATES = {
    TokenState.VALID: ConfirmState.CONFIRMED,
    TokenState.USED: ConfirmState.ALREADY,
    TokenState.EXPIRED: ConfirmState.EXPIRED,
    TokenState.UNKNOWN: ConfirmState.INVALID,
}


def _minutes(d: timedelta) -> str:
    m = max(1, round(d.total_seconds() / 60))
    return f"{m} minute{'' if m == 1 else 's'}"


def _retry(oldest: datetime | None, window: timedelta, now: datetime) -> timedelta:
    """When the oldest mail counted leaves the window."""
    if oldest is None:
        return window
    return max(timedelta(seconds=1), oldest + window - now)


def _view(info: TokenInfo) -> TokenView:
    return TokenView(_CONFIRM_STATES[info.state], info.fingerprint, info.email)


class Verification:
    def __init__(self, core: Core) -> None:
        self.core = core
        s = core.settings
        self.ttl = timedelta(seconds=s.verify_token_seconds)
        self.window = timedelta(seconds=s.mail_rate_window_seconds)

    def states(
        self, tx: WriteTx, cert_id: int, cert: ParsedCert, now: datetime
    ) -> dict[Email, AddressState]:
        """Each address of the certificate and where it stands."""
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

    def send(self, tx: WriteTx, cert: ParsedCert, email: Email, now: datetime) -> bool:
        """Queue a verification mail for the address on this key. False when a link for
        this very key and address went out within the rate-limit window and is unused:
        it is still the one to follow, and the caller answers exactly as for a new mail
        (whether someone else's verification is pending is nobody's business).

        Limits (each a setting; docs/security.md), counted in the outbox and token tables,
        so they hold across app servers and restarts: one mail per (address, key) per
        window; ``mail_per_mailbox_limit`` verification mails per mailbox (sub-addresses
        folded) and ``mail_per_key_limit`` per key per window. Past one: ``RateLimited``
        with when to retry.
        """
        s = self.core.settings
        tx.lock_address(email)
        since = now - self.window
        if self.window and tx.tokens.issued_since(Purpose.VERIFY, cert.fingerprint, email, since):
            return False
        if self.window:
            n, oldest = tx.outbox.to_mailbox(("verify",), email, since)
            if n >= s.mail_per_mailbox_limit:
                raise RateLimited(
                    f"No confirmation email was sent to {email}: its mailbox got "
                    f"{n} within the last {_minutes(self.window)}, the most this server "
                    f"sends. Try again in {_minutes(_retry(oldest, self.window, now))}.",
                    int(_retry(oldest, self.window, now).total_seconds()),
                )
            if tx.tokens.issued_since(Purpose.VERIFY, cert.fingerprint, None, since) >= (
                s.mail_per_key_limit
            ):
                raise RateLimited(
                    f"No confirmation email was sent to {email}: this key had "
                    f"{s.mail_per_key_limit} sent within the last {_minutes(self.window)}, "
                    "the most this server sends per key. Try again later.",
                    int(self.window.total_seconds()),
                )
        token = tx.tokens.issue(Purpose.VERIFY, cert.fingerprint, email, now, self.ttl)
        self.core.mails.queue(
            tx,
            "verify",
            email,
            {
                "address": email,
                "fingerprint": cert.fingerprint.hex,
                "link": self.core.mails.link(f"/verify/{token}"),
                "expires_at": now + self.ttl,
            },
            now,
        )
        tx.audit(now, "system", "verify-mail", cert.fingerprint, email)
        return True

    def request(
        self, fingerprint: Fingerprint, emails: Collection[Email], *, skip_unknown: bool = False
    ) -> dict[Email, AddressState]:
        """Queue one verification mail per address that the key carries and that is not yet
        published, at most one per address per rate-limit window (an address inside the
        window is reported ``pending``: a mail is out). Returns every address's state
        afterwards. An address the key does not carry is refused, or with ``skip_unknown``
        ignored (VKS clients send whatever the user ticked; Hagrid ignores the rest)."""
        now = self.core.clock()
        with self.core.store.write() as tx:
            return self._request(tx, fingerprint, emails, skip_unknown, now)

    def request_with_token(
        self, token: str, emails: Collection[Email]
    ) -> tuple[Fingerprint, dict[Email, AddressState]]:
        """VKS ``/vks/v1/request-verify``: ``request`` for the key an upload token names,
        skipping addresses it does not carry. The token is only inspected, never used up,
        so the uploader may ask again (other addresses, a lost mail) while it lives."""
        now = self.core.clock()
        with self.core.store.write() as tx:
            info = tx.tokens.inspect(token, Purpose.UPLOAD, now)
            if info.state is not TokenState.VALID or info.fingerprint is None:
                raise Gone("Upload session expired. Please try again.")
            states = self._request(tx, info.fingerprint, emails, True, now)
        return info.fingerprint, states

    def _request(
        self,
        tx: WriteTx,
        fingerprint: Fingerprint,
        emails: Collection[Email],
        skip_unknown: bool,
        now: datetime,
    ) -> dict[Email, AddressState]:
        locked = self.core.ingest.lock(tx, fingerprint)
        if locked is None:
            raise NotFound(f"No key found for fingerprint {fingerprint}")
        cert_id, cert = locked
        states = self.states(tx, cert_id, cert, now)
        for email in emails:
            if states.get(email) in (AddressState.UNPUBLISHED, AddressState.PENDING):
                self.send(tx, cert, email, now)
                states[email] = AddressState.PENDING
            elif email not in states and not skip_unknown:
                raise BadRequest(f"The key {fingerprint} has no valid user ID with {email}")
        return states

    def inspect(self, token: str) -> TokenView:
        """What a verification link would do, without doing it (for the GET page): which
        key, and which published keys it would replace."""
        view = _view(self.core.store.token(token, Purpose.VERIFY, self.core.clock()))
        if view.state is not ConfirmState.CONFIRMED or not view.fingerprint or not view.email:
            return view
        store = self.core.store
        mine = store.by_fingerprint(view.fingerprint)
        replaced: tuple[KeySummary, ...] = ()
        if not self.core.settings.multiple_keys_per_address:
            replaced = tuple(
                KeySummary(c.fingerprint, c.created)
                for c in store.by_email(view.email)
                if c.fingerprint != view.fingerprint
            )
        return replace(view, created=mine[0].created if mine else None, replaces=replaced)

    def confirm(self, token: str) -> TokenView:
        """Use a verification token: publish its address on its key (one transaction)."""
        now = self.core.clock()
        with self.core.store.write() as tx:
            info = tx.tokens.use(token, Purpose.VERIFY, now)
            if info.state is not TokenState.VALID:
                return _view(info)
            assert info.fingerprint is not None and info.email is not None
            locked = self.core.ingest.lock(tx, info.fingerprint)
            if locked is None or info.email not in valid_emails(locked[1]):
                return TokenView(ConfirmState.NOT_ON_KEY, info.fingerprint, info.email)
            cert_id, cert = locked
            self.core.publication.publish(
                tx, cert_id, cert, [info.email], AttestedBy.EMAIL, "email", now
            )
            return TokenView(ConfirmState.CONFIRMED, info.fingerprint, info.email)

    def resend(self, token: str) -> dict[Email, AddressState] | None:
        """For an expired link: send a fresh verification mail for the same key and address."""
        info = self.core.store.token(token, Purpose.VERIFY, self.core.clock())
        if info.state is not TokenState.EXPIRED or not info.fingerprint or not info.email:
            return None
        return self.request(info.fingerprint, [info.email])
