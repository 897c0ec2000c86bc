"""The outbox worker: sends queued mails with retries and exponential backoff.

It runs inside every app server (``app.py`` lifespan). Claims are leased, so several app
servers can run it against one PostgreSQL database; a mail whose sending succeeded but
whose "sent" mark was lost (crash) is sent again with the same Message-ID, which mail
systems recognise as the same message.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from anyio import to_thread

from attester.attestation.mail import (
    MailDeliveryError,
    MailSettings,
    MailTransport,
    RenderedMail,
    build_message,
)
from attester.store.db import Database
from attester.store.errors import DatabaseUnavailable
from attester.store.outbox import OutboxMail, claim_due, mark_failed, mark_sent

log = logging.getLogger("attester.mail")


class OutboxWorker:
    def __init__(
        self,
        db: Database,
        transport: MailTransport,
        settings: MailSettings,
        clock: Callable[[], datetime],
        *,
        poll_seconds: float = 1.0,
        retry_base_seconds: float = 30.0,
        max_attempts: int = 10,
        lease_seconds: float = 300.0,
        retry_max_seconds: float = 6 * 3600.0,
    ) -> None:
        self.db = db
        self.transport = transport
        self.settings = settings
        self.clock = clock
        self.poll_seconds = poll_seconds
        self.retry_base = retry_base_seconds
        self.max_attempts = max_attempts
        # A claimed mail is someone's for this long: past it, another worker (another app
        # server) may take it, so it must outlast one delivery attempt.
        self.lease = timedelta(seconds=lease_seconds)
        self.retry_max = retry_max_seconds
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """Ask for a run now (called after a request queued a mail); thread-safe."""
        loop = getattr(self, "_loop", None)
        if loop is not None:
            loop.call_soon_threadsafe(self._wake.set)

    def backoff(self, attempts: int) -> timedelta:
        """``retry_base`` doubled per attempt (30 s, 60 s, 2 min, ...), at most ``retry_max``."""
        return timedelta(seconds=min(self.retry_base * 2 ** (attempts - 1), self.retry_max))

    async def run_once(self) -> int:
        """Send every due mail; returns how many were sent."""
        sent = 0
        while True:
            batch = await to_thread.run_sync(claim_due, self.db, self.clock(), self.lease)
            if not batch:
                return sent
            for mail in batch:
                sent += await self._deliver(mail)

    async def _deliver(self, mail: OutboxMail) -> int:
        message = build_message(
            mail.recipient,
            RenderedMail(mail.subject, mail.body_text, mail.body_html),
            mail.send_id,
            self.settings,
        )
        try:
            await self.transport.send(message)
        except MailDeliveryError as e:
            now = self.clock()
            give_up = e.permanent or mail.attempts >= self.max_attempts
            retry_at = None if give_up else now + self.backoff(mail.attempts)
            log.warning(
                "mail %s to %s failed (attempt %d%s): %s",
                mail.send_id,
                mail.recipient,
                mail.attempts,
                ", giving up" if give_up else "",
                e,
            )
            await to_thread.run_sync(mark_failed, self.db, mail.id, str(e), now, retry_at)
            return 0
        await to_thread.run_sync(mark_sent, self.db, mail.id, self.clock())
        log.info("mail %s (%s) sent to %s", mail.send_id, mail.kind, mail.recipient)
        return 1

    async def run_forever(self) -> None:
        self._loop = asyncio.get_running_loop()
        while True:
            try:
                await self.run_once()
            except DatabaseUnavailable as e:  # said once per round; the next round retries
                log.warning("outbox worker round skipped: %s", e)
            except Exception:  # keep the worker alive; the next round retries
                log.exception("outbox worker round failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.poll_seconds)
            self._wake.clear()
