"""Outgoing mail: render a kind of mail, build the message, hand it to a transport.

    render.py      ``render(kind, context, settings)`` → ``RenderedMail`` (subject, text,
                   HTML); each kind's values are checked before any template sees them
    message.py     ``build_message(to, rendered, send_id, settings)`` → ``EmailMessage``
    transports.py  ``FileTransport`` (``.eml`` files), ``SMTPTransport``, and
                   ``transport_from_url``; ``await transport.send(message)`` raises
                   ``MailDeliveryError`` whose ``permanent`` says whether to retry

The steps are separate on purpose, so a durable outbox sits between them: the service
renders a mail and queues it in the transaction of the change behind it
(``attester.service.mails``); the outbox worker (``attester.attestation.delivery``) later
builds the message from the stored rendering and sends it, retrying while the failure is
not permanent. The ``send_id`` becomes the ``Message-ID``, so a message re-sent after a
crash is the same message to every system that sees it (``FileTransport`` even overwrites
its own file).

Mails never build links: every link arrives ready-made in the context, so token and URL
rules live in one place (the attestation service), not in templates.

Kinds and their context (``Email``/``Fingerprint`` values or their string forms; an expiry is
an aware ``datetime`` or an ISO 8601 string)::

    kind      required                                         optional
    verify    address, fingerprint, link, expires_at           name
    manage    link, expires_at                                 fingerprint, name
    replaced  address, old_fingerprint, new_fingerprint, link  name
    welcome   address, link                                    name

``name`` is the name part of the recipient's user ID, used only in the greeting.

Errors::

    MailError
    ├── MailRenderError        the mail cannot be rendered; a bug in the caller, never retried
    │   ├── UnknownMailKind    no templates for this kind
    │   └── InvalidMailContext a value is missing, unexpected or malformed
    └── MailDeliveryError      the transport did not take the message; ``permanent`` says
                               whether sending the same message again can ever succeed
"""

from attester.attestation.mail.errors import (
    InvalidMailContext,
    MailDeliveryError,
    MailError,
    MailRenderError,
    UnknownMailKind,
)
from attester.attestation.mail.message import build_message
from attester.attestation.mail.render import MAIL_KINDS, RenderedMail, render
from attester.attestation.mail.settings import MailSettings
from attester.attestation.mail.transports import (
    FileTransport,
    MailTransport,
    SMTPTransport,
    transport_from_url,
)

__all__ = [
    "MAIL_KINDS",
    "FileTransport",
    "InvalidMailContext",
    "MailDeliveryError",
    "MailError",
    "MailRenderError",
    "MailSettings",
    "MailTransport",
    "RenderedMail",
    "SMTPTransport",
    "UnknownMailKind",
    "build_message",
    "render",
    "transport_from_url",
]
