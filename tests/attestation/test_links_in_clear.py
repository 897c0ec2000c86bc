"""Working links are kept nowhere in clear once their mail is out: the outbox clears the
bodies it sent, and every log line has token paths redacted (issue 10, item 15)."""

from __future__ import annotations

import logging
import time

import pytest
from sqlalchemy import select

from attester.http import redact
from attester.store.schema import outbox
from tests.support.flows import link_in
from tests.support.keys import TestKey
from tests.support.server import Server
from tests.support.smtp import LoopbackSMTPServer


def test_sent_mail_bodies_are_cleared(live: Server, smtp_server: LoopbackSMTPServer) -> None:
    key = TestKey.generate("Lin <lin@example.org>")
    assert live.client.post("/pub/lin@example.org", content=key.armored).status_code == 200
    [mail] = smtp_server.wait_for(1)
    token = link_in(mail).rsplit("/", 1)[1]
    db = live.app.state.core.db
    deadline = time.monotonic() + 10
    while True:
        with db.read() as conn:
            row = conn.execute(select(outbox)).one()
        if row.sent_at is not None or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert row.sent_at is not None
    assert row.body_text == "" and row.body_html == ""
    assert token not in repr(tuple(row))
    # What debugging needs stays.
    assert row.kind == "verify" and row.recipient == "lin@example.org" and row.subject
    assert live.client.post(link_in(mail)).status_code == 200  # the link itself still works


def test_token_paths_are_redacted_in_every_log(caplog: pytest.LogCaptureFixture) -> None:
    redact.install()
    caplog.set_level(logging.INFO)
    # uvicorn's own logging configuration stops its records from reaching the root logger.
    for name in ("uvicorn.access", "uvicorn.error"):
        logging.getLogger(name).addHandler(caplog.handler)
        caplog.set_level(logging.INFO, logger=name)
    token = "q1W2e3R4t5Y6u7I8o9P0a1S2d3F4g5H6"
    # uvicorn's access log: the request line in the arguments tuple.
    logging.getLogger("uvicorn.access").info(
        '%s - "%s %s HTTP/%s" %d', "127.0.0.1:5", "GET", f"/verify/{token}", "1.1", 200
    )
    logging.getLogger("attester").warning("503 for POST /manage/%s: db down", token)
    logging.getLogger("uvicorn.error").info(f"GET /attester/verify/{token}/resend")
    for name in ("uvicorn.access", "uvicorn.error"):
        logging.getLogger(name).removeHandler(caplog.handler)
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert token not in text
    assert "GET /verify/… HTTP/1.1" in text and "/manage/…" in text
    assert "/attester/verify/…/resend" in text
    assert redact.redact("/verify/abc") == "/verify/abc"  # too short to be a token
