"""Every mail the service sends is rendered and queued here, in the transaction of the
change behind it: a verification mail exists exactly when its token does, a "replaced"
mail exactly when the replacement happened. The outbox stores the rendered mail; the
worker (``attestation.delivery``) only builds the message and sends it."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from attester.attestation.mail import MailSettings, render
from attester.config import Settings
from attester.openpgp.types import Email
from attester.store.writes import WriteTx


def mail_settings(settings: Settings) -> MailSettings:
    """What mails need to know of the configuration."""
    return MailSettings(
        base_url=settings.public_url,
        sender_name=settings.mail_sender_name,
        sender_address=settings.mail_sender_address,
        service_name=settings.service_name,
    )


class Mails:
    def __init__(self, settings: Settings) -> None:
        self.settings = mail_settings(settings)
        self._base = settings.public_url

    def link(self, path: str) -> str:
        """An absolute link to ``path`` on this server, for a mail."""
        return f"{self._base}{path}"

    def queue(
        self, tx: WriteTx, kind: str, to: Email, context: Mapping[str, object], now: datetime
    ) -> None:
        rendered = render(kind, context, self.settings)
        tx.outbox.enqueue(kind, to, rendered.subject, rendered.text, rendered.html, now)
