"""The errors of sending mail (the tree is drawn in ``attester.attestation.mail``)."""

from __future__ import annotations


class MailError(Exception):
    """Base of every error raised by ``attester.attestation.mail``."""


class MailRenderError(MailError):
    pass


class UnknownMailKind(MailRenderError):
    pass


class InvalidMailContext(MailRenderError):
    pass


class MailDeliveryError(MailError):
    """The transport did not accept the message.

    ``permanent`` is true only when the same message to the same recipient will fail again
    whatever anyone does: the recipient or the content was refused (an SMTP 5xx reply to
    RCPT or DATA). Everything an operator or time can fix (connection refused, timeouts, TLS
    or credential problems, 4xx replies, a full disk) is temporary, so the outbox retries.
    ``code`` is the SMTP reply code when there was one.
    """

    def __init__(self, message: str, *, permanent: bool, code: int | None = None) -> None:
        super().__init__(message)
        self.permanent = permanent
        self.code = code
