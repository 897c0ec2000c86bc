"""The durable outbox. A mail row is written in the same transaction as the change that
caused it, so a mail is never lost when the process dies and never sent for a change that
rolled back. The worker claims due rows with a lease; its ``send_id`` becomes the
Message-ID, so a re-send after a crash between sending and marking is the same message."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection, and_, func, insert, select, update

from attester.openpgp.types import Email
from attester.store.db import Database
from attester.store.schema import outbox


@dataclass(frozen=True)
class OutboxMail:
    id: int
    send_id: str
    kind: str
    recipient: Email
    subject: str
    body_text: str
    body_html: str
    attempts: int


class Outbox:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def enqueue(
        self, kind: str, recipient: Email, subject: str, text: str, html: str, now: datetime
    ) -> str:
        send_id = uuid.uuid4().hex
        self.conn.execute(
            insert(outbox).values(
                send_id=send_id,
                kind=kind,
                recipient=recipient.address,
                subject=subject,
                body_text=text,
                body_html=html,
                created=now,
                next_attempt=now,
                attempts=0,
            )
        )
        return send_id

    def sent_recently(self, kind: str, recipient: Email, since: datetime) -> bool:
        """Whether a mail of this kind was queued for the address since ``since`` (the rate
        limit counts queued mails: a mail still waiting for the SMTP server counts too)."""
        n = self.conn.execute(
            select(func.count())
            .select_from(outbox)
            .where(
                outbox.c.recipient == recipient.address,
                outbox.c.kind == kind,
                outbox.c.created > since,
                outbox.c.failed_at.is_(None),
            )
        ).scalar_one()
        return bool(n)

    def to_mailbox(
        self, kinds: tuple[str, ...], recipient: Email, since: datetime
    ) -> tuple[int, datetime | None]:
        """How many mails of these kinds went to the recipient's mailbox (sub-addresses
        folded) since ``since``, and when the oldest of them was queued."""
        n, oldest = self.conn.execute(_mailbox_sent(self.conn, kinds, recipient, since)).one()
        return int(n), oldest


def _like_escape(s: str) -> str:
    return s.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def mailbox_of(recipient: Email) -> tuple[str, str]:
    """The mailbox an address delivers to: sub-addresses (``local+tag@``) folded, as the
    ``(local, domain)`` a limit counts per."""
    local = recipient.local_part.split("+", 1)[0]
    return local, recipient.domain


def _mailbox_sent(conn: Connection, kinds: tuple[str, ...], recipient: Email, since: datetime):  # type: ignore[no-untyped-def]
    local, domain = mailbox_of(recipient)
    return (
        select(func.count(), func.min(outbox.c.created))
        .select_from(outbox)
        .where(
            (outbox.c.recipient == f"{local}@{domain}")
            | outbox.c.recipient.like(
                f"{_like_escape(local)}+%@{_like_escape(domain)}", escape="\\"
            ),
            outbox.c.kind.in_(kinds),
            outbox.c.created > since,
            outbox.c.failed_at.is_(None),
        )
    )


def claim_due(db: Database, now: datetime, lease: timedelta, limit: int = 20) -> list[OutboxMail]:
    """Take up to ``limit`` due mails and push their next attempt past the lease, so another
    worker (another app server) does not take them meanwhile. PostgreSQL skips rows other
    workers hold; SQLite serialises the whole claim with its write lock."""
    with db.write() as conn:
        q = (
            select(outbox)
            .where(
                and_(
                    outbox.c.sent_at.is_(None),
                    outbox.c.failed_at.is_(None),
                    outbox.c.next_attempt <= now,
                )
            )
            .order_by(outbox.c.next_attempt, outbox.c.id)
            .limit(limit)
        )
        if conn.dialect.name == "postgresql":
            q = q.with_for_update(skip_locked=True)
        rows = conn.execute(q).all()
        if rows:
            conn.execute(
                update(outbox)
                .where(outbox.c.id.in_([r.id for r in rows]))
                .values(next_attempt=now + lease, attempts=outbox.c.attempts + 1)
            )
    return [
        OutboxMail(
            r.id,
            r.send_id,
            r.kind,
            Email(r.recipient),
            r.subject,
            r.body_text,
            r.body_html,
            r.attempts + 1,
        )
        for r in rows
    ]


# Once a mail is out (or given up), its bodies go: they hold working verification and
# management links. What debugging needs stays (kind, recipient, subject, Message-ID,
# times, attempts, the last error).
_CLEARED = {"body_text": "", "body_html": ""}


def mark_sent(db: Database, mail_id: int, now: datetime) -> None:
    with db.write() as conn:
        conn.execute(
            update(outbox)
            .where(outbox.c.id == mail_id)
            .values(sent_at=now, last_error=None, **_CLEARED)
        )


def mark_failed(
    db: Database, mail_id: int, error: str, now: datetime, retry_at: datetime | None
) -> None:
    """Record a failed attempt: retry at ``retry_at``, or give up when it is None."""
    values: dict[str, object] = {"last_error": error[:2000]}
    if retry_at is None:
        values["failed_at"] = now
        values.update(_CLEARED)
    else:
        values["next_attempt"] = retry_at
    with db.write() as conn:
        conn.execute(update(outbox).where(outbox.c.id == mail_id).values(**values))


def pending_count(db: Database) -> int:
    with db.read() as conn:
        return int(
            conn.execute(
                select(func.count())
                .select_from(outbox)
                .where(outbox.c.sent_at.is_(None), outbox.c.failed_at.is_(None))
            ).scalar_one()
        )
