"""Mail: rendering, message building, the file and SMTP transports, and mail URLs.

SMTP tests talk to a real aiosmtpd server on 127.0.0.1 (``tests/support/smtp.py``).
"""

from __future__ import annotations

import asyncio
import inspect
import socket
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from email.policy import EmailPolicy
from pathlib import Path
from typing import Any

import aiosmtplib
import aiosmtplib.errors
import pytest

from attester.attestation.mail import (
    MAIL_KINDS,
    FileTransport,
    InvalidMailContext,
    MailDeliveryError,
    MailSettings,
    MailTransport,
    RenderedMail,
    SMTPTransport,
    UnknownMailKind,
    build_message,
    render,
    transport_from_url,
)
from attester.attestation.mail.transports import _delivery_error
from attester.openpgp.types import Email, Fingerprint
from tests.support.smtp import HOST, LoopbackSMTPServer, SelfSignedCertificate, free_port

SETTINGS = MailSettings(base_url="https://keys.example.org")
FPR = "0123456789ABCDEF0123456789ABCDEF01234567"
FPR2 = "89ABCDEF0123456789ABCDEF0123456789ABCDEF"
LINK = "https://keys.example.org/verify/t0ken?x=1&y=2"
EXPIRES = datetime(2030, 1, 2, 3, 4, tzinfo=UTC)
ALICE = Email.parse("alice@example.org")

CONTEXTS: dict[str, dict[str, object]] = {
    "verify": {
        "address": ALICE,
        "fingerprint": Fingerprint.parse(FPR),
        "link": LINK,
        "expires_at": EXPIRES,
    },
    "manage": {"link": LINK, "expires_at": EXPIRES},
    "replaced": {
        "address": ALICE,
        "old_fingerprint": FPR,
        "new_fingerprint": FPR2,
        "link": LINK,
    },
    "welcome": {"address": ALICE, "link": LINK},
}


def _mail(send_id: str = "send-1", **kw: Any) -> EmailMessage:
    rendered = render("verify", CONTEXTS["verify"], SETTINGS)
    return build_message(ALICE, rendered, send_id, SETTINGS, **kw)


def _reparse(msg: EmailMessage) -> EmailMessage:
    """What a receiver sees: the message serialised as SMTP would carry it, parsed again."""
    parsed = BytesParser(policy=policy.default).parsebytes(msg.as_bytes(policy=policy.SMTP))
    assert isinstance(parsed, EmailMessage)
    return parsed


def _send(transport: MailTransport, msg: EmailMessage) -> None:
    asyncio.run(transport.send(msg))


def _delivery_failure(transport: MailTransport, msg: EmailMessage) -> MailDeliveryError:
    with pytest.raises(MailDeliveryError) as info:
        _send(transport, msg)
    return info.value


def _parts(msg: EmailMessage) -> tuple[str, str]:
    text, html = (p for p in msg.iter_parts())
    # CRLF when the message came off the wire; compare contents, not line ends.
    return tuple(str(p.get_content()).replace("\r\n", "\n") for p in (text, html))  # type: ignore[return-value]


# --- rendering ---------------------------------------------------------------------------


def test_every_kind_has_a_context_here() -> None:
    assert set(CONTEXTS) == MAIL_KINDS


@pytest.mark.parametrize("kind", sorted(MAIL_KINDS))
def test_every_kind_renders_both_parts_with_the_link(kind: str) -> None:
    mail = render(kind, CONTEXTS[kind], SETTINGS)

    assert mail.subject and "\n" not in mail.subject
    assert LINK in mail.text
    # Autoescaped in HTML: the & of the query string is written as &amp; in the href.
    assert 'href="https://keys.example.org/verify/t0ken?x=1&amp;y=2"' in mail.html
    assert "Attester" in mail.text and "Attester" in mail.html
    for part in (mail.subject, mail.text, mail.html):
        assert "{{" not in part and "{%" not in part and "}}" not in part


def test_verify_names_one_address_the_fingerprint_and_the_expiry() -> None:
    mail = render("verify", CONTEXTS["verify"], SETTINGS)

    assert "alice@example.org" in mail.subject
    grouped = Fingerprint.parse(FPR).grouped()
    assert grouped in mail.text and grouped in mail.html
    assert "2 January 2030, 03:04 UTC" in mail.text
    assert "2 January 2030, 03:04 UTC" in mail.html


def test_replaced_shows_old_and_new_fingerprint() -> None:
    mail = render("replaced", CONTEXTS["replaced"], SETTINGS)

    for fpr in (FPR, FPR2):
        grouped = Fingerprint.parse(fpr).grouped()
        assert grouped in mail.text and grouped in mail.html


def test_string_values_from_a_json_outbox_are_accepted_and_normalised() -> None:
    mail = render(
        "verify",
        {
            "address": " Alice@EXAMPLE.org ",
            "fingerprint": FPR.lower(),
            "link": LINK,
            "expires_at": "2030-01-02T04:04:00+01:00",
        },
        SETTINGS,
    )

    assert "alice@example.org" in mail.text
    assert Fingerprint.parse(FPR).grouped() in mail.text
    assert "2 January 2030, 03:04 UTC" in mail.text


def test_html_escapes_user_data_and_names_stay_on_one_line() -> None:
    context = {**CONTEXTS["welcome"], "name": "<script>alert(1)</script>\r\nBcc: x"}
    mail = render("welcome", context, SETTINGS)

    assert "<script>" not in mail.html
    assert "&lt;script&gt;alert(1)&lt;/script&gt; Bcc: x" in mail.html
    assert "Hello <script>alert(1)</script> Bcc: x," in mail.text


def test_optional_fingerprint_in_manage() -> None:
    without = render("manage", CONTEXTS["manage"], SETTINGS)
    with_fpr = render("manage", {**CONTEXTS["manage"], "fingerprint": FPR}, SETTINGS)

    grouped = Fingerprint.parse(FPR).grouped()
    assert grouped not in without.text
    assert grouped in with_fpr.text and grouped in with_fpr.html


def test_unknown_kind() -> None:
    with pytest.raises(UnknownMailKind, match="'nope'"):
        render("nope", {}, SETTINGS)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"link": None}, "needs link"),
        ({"extra": 1}, "does not take extra"),
        ({"link": "javascript:alert(1)"}, "http"),
        ({"link": "https://x.example/a b"}, "http"),
        ({"link": "https://x.example/\x00"}, "control"),
        ({"expires_at": datetime(2030, 1, 1)}, "time zone"),
        ({"expires_at": "next tuesday"}, "ISO 8601"),
        ({"expires_at": 17}, "datetime"),
        ({"fingerprint": "ABCD"}, "fingerprint"),
        ({"address": "not an address"}, "address"),
        ({"address": 5}, "Email"),
    ],
)
def test_bad_context(change: dict[str, object], message: str) -> None:
    context = {**CONTEXTS["verify"], **change}
    context = {k: v for k, v in context.items() if v is not None}
    with pytest.raises(InvalidMailContext, match=message):
        render("verify", context, SETTINGS)


# --- settings ----------------------------------------------------------------------------


def test_message_id_domain_defaults_to_the_sender_domain() -> None:
    s = MailSettings(base_url="https://k.example", sender_address="keys@mail.example.org")
    assert s.resolved_message_id_domain == "mail.example.org"
    s = MailSettings(base_url="https://k.example", message_id_domain="ids.example.org")
    assert s.resolved_message_id_domain == "ids.example.org"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"sender_name": "Attester\r\nBcc: x@example.org"},
        {"service_name": "Attester\n"},
        {"sender_address": "not-an-address"},
        {"sender_address": "a b@example.org"},
        {"base_url": "keys.example.org"},
        {"message_id_domain": "bad domain"},
    ],
)
def test_bad_settings_are_refused(kwargs: dict[str, str]) -> None:
    with pytest.raises(ValueError):
        MailSettings(**{"base_url": "https://keys.example.org", **kwargs})


# --- building messages -------------------------------------------------------------------


def test_message_headers_and_parts() -> None:
    when = datetime(2030, 1, 1, 12, 0, tzinfo=timezone(timedelta(hours=2)))
    msg = _reparse(_mail("3f2a9c", date=when))

    assert msg["From"] == "Attester <attester@localhost>"
    assert msg["To"] == "alice@example.org"
    assert msg["Subject"] == "Verify alice@example.org for your OpenPGP key on Attester"
    assert msg["Date"] == "Tue, 01 Jan 2030 10:00:00 +0000"
    assert msg["Message-ID"] == "<3f2a9c@localhost>"
    assert msg["Auto-Submitted"] == "auto-generated"
    assert msg.get_all("MIME-Version") == ["1.0"]
    assert msg.get_content_type() == "multipart/alternative"
    parts = list(msg.iter_parts())
    assert [p.get_content_type() for p in parts] == ["text/plain", "text/html"]
    assert all(p.get_content_charset() == "utf-8" for p in parts)
    assert all("MIME-Version" not in p for p in parts)
    text, html = _parts(msg)
    assert LINK in text and "t0ken?x=1&amp;y=2" in html


def test_the_send_id_makes_a_resend_the_same_message() -> None:
    settings = MailSettings(base_url="https://k.example", message_id_domain="ids.example.org")
    rendered = render("welcome", CONTEXTS["welcome"], settings)
    first = build_message(ALICE, rendered, "abc.1", settings)
    again = build_message(ALICE, rendered, "abc.1", settings)

    assert first["Message-ID"] == again["Message-ID"] == "<abc.1@ids.example.org>"


@pytest.mark.parametrize("send_id", ["", "../x", "a b", "a..b", ".a", "a.", "a@b", "x" * 129])
def test_bad_send_ids_are_refused(send_id: str) -> None:
    with pytest.raises(ValueError, match="send_id"):
        _mail(send_id)


INJECTIONS = [
    "Mallory\r\nBcc: evil@example.net",
    "Mallory\nBcc: evil@example.net",
    "Mallory\rBcc: evil@example.net",
    "Mallory\x00\x0b\x0c\x1b\x85Bcc: evil@example.net",
    "Mallory\u2028Bcc: evil@example.net",
    "Mallory\r\n\r\nBody takeover",
]


@pytest.mark.parametrize("evil", INJECTIONS)
def test_control_characters_in_user_data_never_make_headers(evil: str) -> None:
    rendered = RenderedMail(subject=f"Hi {evil}", text="text", html="<p>html</p>")
    msg = build_message(ALICE, rendered, "inj", SETTINGS, to_name=evil)
    raw = msg.as_bytes(policy=policy.SMTP)
    received = _reparse(msg)

    assert "Bcc" not in received and b"\r\nBcc:" not in raw
    assert received.get_content_type() == "multipart/alternative"
    assert [k for k in received if k.lower() in ("to", "subject")] == ["To", "Subject"]
    (to,) = received["To"].addresses
    assert to.addr_spec == "alice@example.org"
    assert to.display_name.startswith("Mallory ") and "\n" not in to.display_name
    assert received["Subject"].startswith("Hi Mallory ") and "\n" not in received["Subject"]
    assert _parts(received) == ("text\n", "<p>html</p>\n")


def test_user_ids_with_names_become_display_names() -> None:
    # A name from a user ID like 'Müller, Jörg "JM" <alice@example.org>'.
    msg = _mail(to_name='Müller, Jörg "JM"')
    raw = msg.as_bytes(policy=policy.SMTP)
    (to,) = _reparse(msg)["To"].addresses

    assert raw.isascii()
    assert to.display_name == 'Müller, Jörg "JM"' and to.addr_spec == "alice@example.org"


def test_non_ascii_names_are_rfc2047_encoded() -> None:
    settings = MailSettings(
        base_url="https://keys.example.org",
        sender_name="Schlüsselserver Ärger",
        service_name="Schlüsselserver",
    )
    rendered = render("welcome", {**CONTEXTS["welcome"], "name": "Jörg"}, settings)
    msg = build_message(ALICE, rendered, "utf", settings, to_name="Jörg Müller")
    raw = msg.as_bytes(policy=policy.SMTP)
    received = _reparse(msg)

    assert raw.isascii()
    assert b"=?utf-8?" in raw
    assert received["From"].addresses[0].display_name == "Schlüsselserver Ärger"
    assert received["To"].addresses[0].display_name == "Jörg Müller"
    assert "Schlüsselserver" in received["Subject"]
    text, html = _parts(received)
    assert "Hello Jörg," in text and "Hello Jörg," in html


def test_a_non_ascii_address_gets_utf8_headers() -> None:
    to = Email.parse("jörg@bücher.example")
    rendered = render("welcome", {"address": to, "link": LINK}, SETTINGS)
    msg = build_message(to, rendered, "u8", SETTINGS)

    assert isinstance(msg.policy, EmailPolicy) and msg.policy.utf8
    assert "To: jörg@xn--bcher-kva.example" in msg.as_string()


# --- transports: shape -------------------------------------------------------------------


def test_transports_conform_to_the_protocol(tmp_path: Path) -> None:
    transports: list[MailTransport] = [FileTransport(tmp_path), SMTPTransport(HOST, 25)]
    for transport in transports:
        assert isinstance(transport, MailTransport)
        assert inspect.iscoroutinefunction(transport.send)


def test_smtp_transport_never_shows_its_password() -> None:
    transport = SMTPTransport(HOST, 587, username="u", password="hunter2", starttls=True)
    assert "hunter2" not in repr(transport)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"port": 0},
        {"port": 70000},
        {"starttls": True, "use_tls": True},
        {"username": "u"},
        {"password": "p"},
        {"timeout": 0},
    ],
)
def test_bad_smtp_options_are_refused(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        SMTPTransport(**{"host": HOST, **kwargs})


# --- file transport ----------------------------------------------------------------------


def test_file_transport_writes_one_file_per_message(tmp_path: Path) -> None:
    outbox = tmp_path / "var" / "outbox"
    transport = FileTransport(outbox)
    msg = _mail("2b7e-1")

    _send(transport, msg)
    _send(transport, msg)  # a re-send after a crash

    assert sorted(p.name for p in outbox.iterdir()) == ["2b7e-1.eml"]
    stored = BytesParser(policy=policy.default).parsebytes((outbox / "2b7e-1.eml").read_bytes())
    assert stored["Message-ID"] == "<2b7e-1@localhost>"
    assert LINK in _parts(stored)[0]


def test_file_transport_names_foreign_message_ids_safely(tmp_path: Path) -> None:
    msg = EmailMessage()
    msg["Message-ID"] = "<../../etc/passwd@example.org>"
    msg.set_content("x")

    path = FileTransport(tmp_path).path_for(msg)
    _send(FileTransport(tmp_path), msg)

    assert path.parent == tmp_path and len(path.stem) == 64
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


def test_file_transport_needs_a_message_id(tmp_path: Path) -> None:
    msg = EmailMessage()
    msg.set_content("x")
    with pytest.raises(ValueError, match="Message-ID"):
        _send(FileTransport(tmp_path), msg)


def test_file_transport_failure_is_temporary(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    error = _delivery_failure(FileTransport(blocker / "outbox"), _mail())
    assert error.permanent is False


# --- SMTP transport against a real server ------------------------------------------------


def test_plain_smtp_delivery(smtp_server: LoopbackSMTPServer) -> None:
    _send(SMTPTransport(HOST, smtp_server.port, timeout=5), _mail("plain-1"))

    (mail,) = smtp_server.received
    assert mail.mail_from == "attester@localhost"
    assert mail.rcpt_tos == ("alice@example.org",)
    assert mail.message["Message-ID"] == "<plain-1@localhost>"
    text, html = _parts(mail.message)
    assert LINK in text and "t0ken?x=1&amp;y=2" in html


def test_starttls_delivery_with_a_cafile(
    smtp_server_factory: Any, smtp_certificate: SelfSignedCertificate
) -> None:
    server = smtp_server_factory(certificate=smtp_certificate, starttls=True)
    transport = SMTPTransport(
        HOST, server.port, starttls=True, cafile=smtp_certificate.cafile, timeout=5
    )

    _send(transport, _mail("tls-1"))

    assert [m["Message-ID"] for m in server.messages] == ["<tls-1@localhost>"]


def test_starttls_refuses_an_untrusted_certificate(
    smtp_server_factory: Any, smtp_certificate: SelfSignedCertificate
) -> None:
    server = smtp_server_factory(certificate=smtp_certificate, starttls=True)

    error = _delivery_failure(SMTPTransport(HOST, server.port, starttls=True, timeout=5), _mail())

    assert error.permanent is False
    assert server.messages == []


def test_starttls_is_required_when_asked_for(smtp_server: LoopbackSMTPServer) -> None:
    # The plain server offers no STARTTLS; sending in clear instead would be a downgrade.
    error = _delivery_failure(
        SMTPTransport(HOST, smtp_server.port, starttls=True, timeout=5), _mail()
    )
    assert error.permanent is False
    assert smtp_server.messages == []


def test_implicit_tls_delivery_through_a_url(
    smtp_server_factory: Any, smtp_certificate: SelfSignedCertificate
) -> None:
    server = smtp_server_factory(certificate=smtp_certificate, implicit_tls=True)
    transport = transport_from_url(server.url())
    assert isinstance(transport, SMTPTransport) and transport.use_tls

    _send(transport, _mail("smtps-1"))

    assert [m["Message-ID"] for m in server.messages] == ["<smtps-1@localhost>"]


@pytest.mark.parametrize("tls", ["starttls", "implicit_tls"])
def test_auth_login(
    tls: str, smtp_server_factory: Any, smtp_certificate: SelfSignedCertificate
) -> None:
    server = smtp_server_factory(
        certificate=smtp_certificate, auth=("mailer", "p@ss:word"), **{tls: True}
    )

    _send(transport_from_url(server.url(username="mailer", password="p@ss:word")), _mail("a-1"))

    assert [m["Message-ID"] for m in server.messages] == ["<a-1@localhost>"]


def test_auth_with_a_wrong_password_is_temporary(
    smtp_server_factory: Any, smtp_certificate: SelfSignedCertificate
) -> None:
    server = smtp_server_factory(certificate=smtp_certificate, starttls=True, auth=("u", "right"))

    transport = transport_from_url(server.url(username="u", password="wrong"))
    error = _delivery_failure(transport, _mail())

    assert error.permanent is False and error.code == 535
    assert server.messages == []


def test_auth_without_credentials_is_temporary(
    smtp_server_factory: Any, smtp_certificate: SelfSignedCertificate
) -> None:
    server = smtp_server_factory(certificate=smtp_certificate, starttls=True, auth=("u", "p"))

    error = _delivery_failure(transport_from_url(server.url()), _mail())

    assert error.permanent is False and error.code == 530
    assert "login" in str(error)


def test_connection_refused_is_temporary() -> None:
    error = _delivery_failure(SMTPTransport(HOST, free_port(), timeout=5), _mail())
    assert error.permanent is False and error.code is None


@pytest.fixture
def silent_listener() -> Iterator[int]:
    """A port that accepts connections and never says a word."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        s.listen(4)
        yield s.getsockname()[1]


def test_a_server_that_never_answers_is_a_temporary_timeout(silent_listener: int) -> None:
    error = _delivery_failure(SMTPTransport(HOST, silent_listener, timeout=0.5), _mail())
    assert error.permanent is False


def test_a_refused_recipient_is_permanent(smtp_server: LoopbackSMTPServer) -> None:
    smtp_server.refuse["alice@example.org"] = "550 5.1.1 No such user"

    error = _delivery_failure(SMTPTransport(HOST, smtp_server.port, timeout=5), _mail())

    assert error.permanent is True and error.code == 550
    assert "No such user" in str(error)


def test_a_deferred_recipient_is_temporary(smtp_server: LoopbackSMTPServer) -> None:
    smtp_server.refuse["alice@example.org"] = "450 4.2.1 Mailbox busy, try again later"

    error = _delivery_failure(SMTPTransport(HOST, smtp_server.port, timeout=5), _mail())

    assert error.permanent is False and error.code == 450


def test_a_non_ascii_address_is_sent_with_smtputf8(smtp_server: LoopbackSMTPServer) -> None:
    to = Email.parse("jörg@bücher.example")
    rendered = render("welcome", {"address": to, "link": LINK}, SETTINGS)
    msg = build_message(to, rendered, "u8", SETTINGS)

    _send(SMTPTransport(HOST, smtp_server.port, timeout=5), msg)

    (mail,) = smtp_server.received
    assert mail.rcpt_tos == ("jörg@xn--bcher-kva.example",)
    assert mail.message["To"].addresses[0].addr_spec == "jörg@xn--bcher-kva.example"


def test_the_server_can_be_stopped_and_restarted_on_the_same_port(
    smtp_server: LoopbackSMTPServer,
) -> None:
    port = smtp_server.port
    transport = SMTPTransport(HOST, port, timeout=5)
    smtp_server.stop()

    assert _delivery_failure(transport, _mail("r-1")).permanent is False

    smtp_server.start()
    _send(transport, _mail("r-1"))  # the outbox's retry: same send id, same message

    assert smtp_server.port == port
    assert [m["Message-ID"] for m in smtp_server.wait_for(1)] == ["<r-1@localhost>"]


# --- the exception boundary --------------------------------------------------------------


def _instance(cls: type[BaseException]) -> BaseException:
    """One instance of an aiosmtplib exception, whatever its constructor wants."""
    if cls is aiosmtplib.SMTPRecipientsRefused:
        return cls([aiosmtplib.SMTPRecipientRefused(550, "no", "a@example.org")])
    if cls in (aiosmtplib.SMTPRecipientRefused, aiosmtplib.SMTPSenderRefused):
        return cls(550, "no", "a@example.org")
    if issubclass(cls, aiosmtplib.SMTPResponseException):
        return cls(550, "no")
    return cls("no")


@pytest.mark.parametrize("name", aiosmtplib.errors.__all__)
def test_every_aiosmtplib_exception_is_mapped(name: str) -> None:
    exc = _instance(getattr(aiosmtplib.errors, name))
    assert isinstance(_delivery_error(exc), MailDeliveryError)


@pytest.mark.parametrize(
    ("exc", "permanent"),
    [
        (aiosmtplib.SMTPDataError(554, "5.7.1 spam"), True),
        (aiosmtplib.SMTPDataError(451, "local error"), False),
        (aiosmtplib.SMTPRecipientRefused(550, "no", "a@example.org"), True),
        (aiosmtplib.SMTPRecipientRefused(421, "later", "a@example.org"), False),
        (aiosmtplib.SMTPSenderRefused(550, "not our sender", "s@example.org"), False),
        (aiosmtplib.SMTPAuthenticationError(535, "bad"), False),
        (aiosmtplib.SMTPHeloError(501, "bad helo"), False),
        (aiosmtplib.SMTPServerDisconnected("gone"), False),
        (aiosmtplib.SMTPReadTimeoutError("slow"), False),
        (ConnectionRefusedError(111, "refused"), False),
        (TimeoutError(), False),
    ],
)
def test_permanence(exc: BaseException, permanent: bool) -> None:
    assert _delivery_error(exc).permanent is permanent


# --- mail URLs ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "directory"),
    [
        ("file:///abs/path/outbox", "/abs/path/outbox"),
        ("file:/abs/path/outbox", "/abs/path/outbox"),
        ("file://localhost/abs/outbox", "/abs/outbox"),
        ("file:var/outbox", "var/outbox"),
        ("file:///with%20space", "/with space"),
    ],
)
def test_file_urls(url: str, directory: str) -> None:
    transport = transport_from_url(url)
    assert isinstance(transport, FileTransport)
    assert transport.directory == Path(directory)


def test_smtp_url_with_everything() -> None:
    transport = transport_from_url(
        "smtp://mail%40example.org:p%40ss%3Aw%2Frd@relay.example.org:587"
        "?starttls=true&timeout=10&cafile=/etc/ca.pem"
    )
    assert transport == SMTPTransport(
        "relay.example.org",
        587,
        username="mail@example.org",
        password="p@ss:w/rd",
        starttls=True,
        timeout=10.0,
        cafile="/etc/ca.pem",
    )


def test_smtp_url_defaults() -> None:
    assert transport_from_url("smtp://localhost") == SMTPTransport("localhost", 25)
    assert transport_from_url("SMTPS://relay.example.org") == SMTPTransport(
        "relay.example.org", 465, use_tls=True
    )
    assert transport_from_url("smtp://[::1]:2525?validate_certs=no") == SMTPTransport(
        "::1", 2525, validate_certs=False
    )


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://example.org", "scheme 'http' is not supported"),
        ("sendmail:", "scheme 'sendmail' is not supported"),
        ("/var/outbox", "scheme '' is not supported"),
        ("file://host/outbox", "names a host"),
        ("file:", "no directory"),
        ("smtp://", "no host"),
        ("smtp://relay.example.org:99999", "port"),
        ("smtp://relay.example.org:abc", "port"),
        ("smtp://relay.example.org:0", "port 0"),
        ("smtp://relay.example.org/path", "no path"),
        ("smtp://relay.example.org?tls=1", "unknown mail URL parameter 'tls'"),
        ("smtp://relay.example.org?starttls=maybe", "not true or false"),
        ("smtp://relay.example.org?timeout=soon", "not a number"),
        ("smtp://relay.example.org?timeout=-1", "positive"),
        ("smtps://relay.example.org?starttls=true", "only goes with smtp:"),
        ("smtp://user@relay.example.org", "no password"),
    ],
)
def test_bad_urls(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        transport_from_url(url)


def test_url_errors_do_not_show_the_password() -> None:
    with pytest.raises(ValueError) as info:
        transport_from_url("smtp://user:hunter2@relay.example.org:99999")
    assert "hunter2" not in str(info.value) and "user:***@" in str(info.value)
