"""Building the message: one multipart/alternative mail to one address."""

from __future__ import annotations

import email.policy
import re
from datetime import UTC, datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime

from attester.attestation.mail.render import RenderedMail
from attester.attestation.mail.settings import MailSettings, one_line
from attester.openpgp.types import Email

# A send id becomes the local part of the Message-ID and a file name, so it must be a
# dot-atom that is also a safe file name: no leading dot, no "..", nothing else.
SEND_ID = re.compile(r"^[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*$")
MAX_SEND_ID = 128
_MAX_SUBJECT = 250


def build_message(
    to: Email,
    rendered: RenderedMail,
    send_id: str,
    settings: MailSettings,
    *,
    to_name: str | None = None,
    date: datetime | None = None,
) -> EmailMessage:
    """One multipart/alternative message (text, then HTML) to one address.

    ``send_id`` identifies this send in the outbox and becomes ``<send_id@domain>``, so a
    re-send after a crash carries the same Message-ID. ``to_name`` (a name from a user ID)
    and the subject are user-influenced: control characters in them are replaced, never
    passed on, so they cannot start a new header. ``date`` defaults to now.
    """
    if len(send_id) > MAX_SEND_ID or not SEND_ID.match(send_id):
        raise ValueError(
            "send_id must be letters, digits, '-', '_' and single inner dots, "
            f"at most {MAX_SEND_ID} characters (a UUID fits)"
        )
    # A non-ASCII local part cannot be written as an RFC 2047 encoded word; it needs raw
    # UTF-8 headers (RFC 6532), which SMTP carries only with SMTPUTF8.
    policy = email.policy.default.clone(utf8=not to.local_part.isascii())
    subject = one_line(rendered.subject)
    if len(subject) > _MAX_SUBJECT:
        subject = subject[: _MAX_SUBJECT - 1] + "…"

    msg = EmailMessage(policy=policy)
    # Address objects (not formatted strings) so the email package quotes and RFC 2047
    # encodes display names itself: a comma or quote in a name stays inside the name.
    msg["From"] = Address(display_name=settings.sender_name, addr_spec=settings.sender_address)
    msg["To"] = Address(
        display_name=one_line(to_name or ""), username=to.local_part, domain=to.domain
    )
    msg["Subject"] = subject
    msg["Date"] = format_datetime((date or datetime.now(UTC)).astimezone(UTC))
    msg["Message-ID"] = f"<{send_id}@{settings.resolved_message_id_domain}>"
    # RFC 3834: vacation responders must not answer auto-generated mail; the Microsoft
    # header does the same for Exchange, which ignores Auto-Submitted.
    msg["Auto-Submitted"] = "auto-generated"
    msg["X-Auto-Response-Suppress"] = "All"
    msg["MIME-Version"] = "1.0"
    msg.make_alternative()
    for subtype, body in (("plain", rendered.text), ("html", rendered.html)):
        # Quoted-printable keeps the parts 7-bit clean and still readable in a raw file.
        part = EmailMessage(policy=policy)
        part.set_content(body, subtype=subtype, charset="utf-8", cte="quoted-printable")
        del part["MIME-Version"]  # set_content adds one; only the top level carries it
        msg.attach(part)
    return msg
