"""The durable outbox and its worker, against a real SMTP server and the real store."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import anyio

from attester.attestation.delivery import OutboxWorker
from attester.attestation.mail import FileTransport, transport_from_url
from attester.config import Settings
from attester.openpgp.types import Email
from attester.service.core import Core
from attester.service.mails import mail_settings
from attester.store.outbox import claim_due, pending_count
from attester.store.schema import outbox
from tests.support.keys import TestKey
from tests.support.server import AppServer
from tests.support.smtp import LoopbackSMTPServer


def _queue(core: Core, n: int = 1) -> list[str]:
    now = datetime.now(UTC)
    with core.store.write() as tx:
        return [
            tx.outbox.enqueue(
                "welcome", Email.parse(f"u{i}@example.org"), "Hello", "text", "<p>html</p>", now
            )
            for i in range(n)
        ]


def _worker(core: Core, url: str, settings: Settings) -> OutboxWorker:
    return OutboxWorker(
        core.db,
        transport_from_url(url),
        mail_settings(settings),
        lambda: datetime.now(UTC),
        retry_base_seconds=0.2,
        max_attempts=3,
    )


def test_worker_sends_and_marks(
    core: Core, smtp_server: LoopbackSMTPServer, settings: Settings
) -> None:
    ids = _queue(core, 3)
    worker = _worker(core, smtp_server.url(), settings)
    assert anyio.run(worker.run_once) == 3
    msgs = smtp_server.wait_for(3)
    assert sorted(m["Message-ID"].strip("<>").split("@")[0] for m in msgs) == sorted(ids)
    assert pending_count(core.db) == 0
    assert anyio.run(worker.run_once) == 0  # nothing is sent twice


def test_smtp_down_then_up(core: Core, smtp_server: LoopbackSMTPServer, settings: Settings) -> None:
    smtp_server.stop()
    _queue(core)
    worker = _worker(core, smtp_server.url(), settings)
    assert anyio.run(worker.run_once) == 0
    with core.db.read() as c:
        row = c.execute(outbox.select()).one()
    assert row.attempts == 1 and row.last_error and row.sent_at is None
    smtp_server.start()
    anyio.run(anyio.sleep, 0.5)  # past the first backoff
    assert anyio.run(worker.run_once) == 1
    assert len(smtp_server.wait_for(1)) == 1


def test_permanent_refusal_gives_up(
    core: Core, smtp_server: LoopbackSMTPServer, settings: Settings
) -> None:
    smtp_server.refuse["u0@example.org"] = "550 5.1.1 No such user"
    _queue(core)
    assert anyio.run(_worker(core, smtp_server.url(), settings).run_once) == 0
    with core.db.read() as c:
        row = c.execute(outbox.select()).one()
    assert row.failed_at is not None and "550" in row.last_error
    assert pending_count(core.db) == 0


def test_crash_between_send_and_mark_resends_the_same_message(
    core: Core,
    tmp_path,
    settings: Settings,  # type: ignore[no-untyped-def]
) -> None:
    """A worker that sent but died before marking: after the lease, the mail goes again
    with the same Message-ID, and the file outbox still holds one file for it."""
    [send_id] = _queue(core)
    now = datetime.now(UTC)
    [claimed] = claim_due(core.db, now, timedelta(seconds=0))
    transport = FileTransport(tmp_path / "out")
    worker = OutboxWorker(core.db, transport, mail_settings(settings), lambda: datetime.now(UTC))
    from attester.attestation.mail import RenderedMail, build_message

    first = build_message(
        claimed.recipient,
        RenderedMail(claimed.subject, claimed.body_text, claimed.body_html),
        claimed.send_id,
        mail_settings(settings),
    )
    anyio.run(transport.send, first)  # ... and the process dies here, before mark_sent
    assert anyio.run(worker.run_once) == 1  # lease (0 s) is over: sent again
    files = list((tmp_path / "out").iterdir())
    assert len(files) == 1 and send_id in files[0].read_text()
    assert pending_count(core.db) == 0


def test_mail_survives_smtp_outage_end_to_end(
    settings: Settings, smtp_server: LoopbackSMTPServer
) -> None:
    """Stop the SMTP server, submit a key over HTTP, start the server again: the
    verification mail arrives."""
    s = settings.model_copy(
        update={
            "mail_url": smtp_server.url(),
            "mail_poll_seconds": 0.1,
            "mail_retry_base_seconds": 0.2,
        }
    )
    smtp_server.stop()
    with AppServer.start(s) as live:
        key = TestKey.generate("Olga <olga@example.org>")
        r = live.client.post("/pub/olga@example.org", content=key.armored)
        assert r.status_code == 200
        anyio.run(anyio.sleep, 0.5)
        assert smtp_server.messages == []
        smtp_server.start()
        [mail] = smtp_server.wait_for(1, timeout=15)
        assert mail["To"].addresses[0].addr_spec == "olga@example.org"


def test_default_file_outbox(settings: Settings, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """With the embedded default transport (a folder of .eml files) the mail lands there."""
    with AppServer.start(settings) as live:
        key = TestKey.generate("Pat <pat@example.org>")
        assert live.client.post("/pub/pat@example.org", content=key.armored).status_code == 200
        outdir = tmp_path / "outbox"
        for _ in range(100):
            if outdir.exists() and list(outdir.glob("*.eml")):
                break
            anyio.run(anyio.sleep, 0.1)
        [eml] = list(outdir.glob("*.eml"))
        assert "pat@example.org" in eml.read_text()
