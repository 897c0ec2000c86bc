"""How an address's owner takes it back: a management link mailed to the address, a page
listing what is published, and unpublishing one address at once."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from attester.openpgp.types import Email, Fingerprint
from attester.service.core import Core
from attester.store.tokens import Purpose, TokenState


@dataclass(frozen=True)
class ManageView:
    valid: bool
    fingerprint: Fingerprint | None = None
    published: tuple[Email, ...] = ()
    token: str | None = None  # the token to use for the next action (tokens are single use)
    expired: bool = False


class Management:
    def __init__(self, core: Core) -> None:
        self.core = core
        self.ttl = timedelta(seconds=core.settings.manage_token_seconds)
        self.window = timedelta(seconds=core.settings.mail_rate_window_seconds)

    def request(self, email: Email) -> None:
        """Mail a management link when a key is published for the address. The caller
        answers the same either way, so this reveals nothing about who has a key."""
        now = self.core.clock()
        with self.core.store.write() as tx:
            found = tx.attested_certs(email)
            if not found:
                return
            tx.lock_address(email)
            if tx.outbox.sent_recently("manage", email, now - self.window):
                return
            fpr = found[-1][1]
            token = tx.tokens.issue(Purpose.MANAGE, fpr, email, now, self.ttl)
            self.core.mails.queue(
                tx,
                "manage",
                email,
                {
                    "link": self.core.mails.link(f"/manage/{token}"),
                    "expires_at": now + self.ttl,
                    "fingerprint": fpr.hex,
                },
                now,
            )

    def view(self, token: str) -> ManageView:
        """What the management page shows (reads only; the token stays usable)."""
        info = self.core.store.token(token, Purpose.MANAGE, self.core.clock())
        if info.state is not TokenState.VALID or info.fingerprint is None:
            return ManageView(False, expired=info.state is TokenState.EXPIRED)
        published = tuple(sorted(self.core.store.published_emails(info.fingerprint)))
        return ManageView(True, info.fingerprint, published, token)

    def unpublish(self, token: str, email: Email) -> ManageView:
        """Take an address off the key at once. The token is used up and a fresh one with the
        same expiry returned, so the page keeps working without links living longer."""
        now = self.core.clock()
        with self.core.store.write() as tx:
            info = tx.tokens.use(token, Purpose.MANAGE, now)
            if info.state is not TokenState.VALID or info.fingerprint is None:
                return ManageView(False, expired=info.state is TokenState.EXPIRED)
            assert info.expires is not None
            nxt = tx.tokens.issue(
                Purpose.MANAGE, info.fingerprint, info.email, now, self.ttl, expires=info.expires
            )
            locked = self.core.ingest.lock(tx, info.fingerprint)
            if locked is not None and self.core.publication.unpublish(
                tx, locked[0], locked[1], email, now
            ):
                tx.audit(now, "owner", "unpublish", info.fingerprint, email)
            cert_id = tx.cert_id(info.fingerprint)
            published = tuple(sorted(tx.published_emails(cert_id)))
        return ManageView(True, info.fingerprint, published, nxt)
