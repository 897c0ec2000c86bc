"""A real SMTP server on loopback for tests: aiosmtpd in a thread, collecting what it gets.

``LoopbackSMTPServer`` binds 127.0.0.1 on a free port that it keeps for its whole life, so
a test can ``stop()`` it, let a sender fail, ``start()`` it again and watch the retry
arrive. It can speak STARTTLS or implicit TLS with a certificate made at test time
(``SelfSignedCertificate``), require AUTH (over TLS only), and refuse chosen recipients.

Fixtures: ``smtp_certificate`` (one per session), ``smtp_server`` (plain, started, with
an empty inbox: one server per session, reset for each test), ``smtp_session`` (that
server, as the session's app is configured with it) and ``smtp_server_factory`` (any
options; every server it made is stopped afterwards). Import them into a ``conftest.py``
to use them.
"""

from __future__ import annotations

import datetime
import ipaddress
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser, Parser
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

HOST = "127.0.0.1"


def free_port() -> int:
    """A loopback port nobody listens on right now (the kernel picks it, then we let go)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        port: int = s.getsockname()[1]
        return port


@dataclass(frozen=True)
class SelfSignedCertificate:
    """A P-256 certificate for ``localhost`` and ``127.0.0.1``, valid for a day either side
    of now. ``cafile`` is what a client trusts to verify it (the certificate itself)."""

    cert_path: Path
    key_path: Path

    @property
    def cafile(self) -> str:
        return str(self.cert_path)

    @classmethod
    def generate(cls, directory: Path) -> SelfSignedCertificate:
        directory.mkdir(parents=True, exist_ok=True)
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
        now = datetime.datetime.now(datetime.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(
                x509.SubjectAlternativeName(
                    [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address(HOST))]
                ),
                critical=False,
            )
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256())
        )
        cert_path, key_path = directory / "smtp-cert.pem", directory / "smtp-key.pem"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        return cls(cert_path, key_path)

    def server_context(self) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.cert_path, self.key_path)
        return ctx


@dataclass(frozen=True)
class ReceivedMail:
    """One accepted message with its envelope (what MAIL FROM / RCPT TO said)."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    raw: bytes
    message: EmailMessage


def _parse(raw: bytes) -> EmailMessage:
    # SMTPUTF8 mail has raw UTF-8 headers, which the str parser reads as text; anything
    # else (8-bit bodies in other charsets) goes through the bytes parser.
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        msg = BytesParser(policy=policy.default).parsebytes(raw)
    else:
        msg = Parser(policy=policy.default).parsestr(text)
    assert isinstance(msg, EmailMessage)
    return msg


class _Handler:
    """aiosmtpd hooks; they run on the server's thread."""

    def __init__(self, owner: LoopbackSMTPServer) -> None:
        self.owner = owner

    async def handle_MAIL(
        self, server: Any, session: Any, envelope: Any, address: str, mail_options: list[str]
    ) -> str:
        # AUTH is enforced here rather than with aiosmtpd's auth_required, which cannot tell
        # that an implicit-TLS connection is encrypted and would never offer AUTH on it.
        if self.owner.auth is not None and not session.authenticated:
            return "530 5.7.0 Authentication required"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        reply = self.owner.refuse.get(address.lower())
        if reply is not None:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        raw: bytes = envelope.original_content or envelope.content
        mail = ReceivedMail(envelope.mail_from, tuple(envelope.rcpt_tos), raw, _parse(raw))
        self.owner._deliver(mail)
        return "250 Message accepted for delivery"


class LoopbackSMTPServer:
    """An SMTP server on 127.0.0.1:``port`` that keeps every accepted message in
    ``received`` (across restarts). Set ``refuse[address] = "550 5.1.1 No such user"`` to
    refuse a recipient with that reply."""

    def __init__(
        self,
        *,
        port: int | None = None,
        certificate: SelfSignedCertificate | None = None,
        starttls: bool = False,
        implicit_tls: bool = False,
        auth: tuple[str, str] | None = None,
    ) -> None:
        if (starttls or implicit_tls) and certificate is None:
            raise ValueError("TLS needs a certificate")
        if starttls and implicit_tls:
            raise ValueError("choose STARTTLS or implicit TLS, not both")
        if auth is not None and not (starttls or implicit_tls):
            # As real servers do (and aiosmtpd warns otherwise): no passwords in clear.
            raise ValueError("AUTH needs TLS: pass a certificate and starttls or implicit_tls")
        self.host = HOST
        self.port = port or free_port()
        self.certificate = certificate
        self.starttls = starttls
        self.implicit_tls = implicit_tls
        self.auth = auth
        self.refuse: dict[str, str] = {}
        self.received: list[ReceivedMail] = []
        self._arrived = threading.Condition()
        self._controller: Controller | None = None

    # --- life cycle

    @property
    def running(self) -> bool:
        return self._controller is not None

    def start(self) -> None:
        """Listen again on the same port. A fresh Controller each time: aiosmtpd closes
        its event loop on stop, so one Controller cannot be started twice."""
        if self._controller is not None:
            return
        kwargs: dict[str, Any] = {
            # A fixed banner name; the default is socket.getfqdn(), a DNS lookup per start.
            "server_hostname": "localhost",
            "ready_timeout": 10.0,
        }
        if self.certificate is not None and self.starttls:
            kwargs |= {"tls_context": self.certificate.server_context(), "require_starttls": True}
        if self.certificate is not None and self.implicit_tls:
            kwargs["ssl_context"] = self.certificate.server_context()
        if self.auth is not None:
            # AUTH is offered only over TLS: after STARTTLS, or at once with implicit TLS
            # (where aiosmtpd's own TLS check must be off, since it only knows STARTTLS).
            kwargs |= {
                "authenticator": self._authenticate,
                "auth_require_tls": not self.implicit_tls,
            }
        controller = Controller(_Handler(self), hostname=self.host, port=self.port, **kwargs)
        controller.start()
        self._controller = controller

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def __enter__(self) -> LoopbackSMTPServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def reset(self) -> None:
        """As if new (same port): running, nothing received, nobody refused."""
        self.start()
        with self._arrived:
            self.received.clear()
        self.refuse.clear()

    # --- what arrived

    @property
    def messages(self) -> list[EmailMessage]:
        return [m.message for m in self.received]

    def wait_for(self, count: int = 1, timeout: float = 10.0) -> list[EmailMessage]:
        """Block until at least ``count`` messages have arrived; for senders that run in
        the background (an outbox worker)."""
        deadline = time.monotonic() + timeout
        with self._arrived:
            while len(self.received) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"expected {count} message(s) within {timeout}s, got {len(self.received)}"
                    )
                self._arrived.wait(left)
            return self.messages

    def _deliver(self, mail: ReceivedMail) -> None:
        with self._arrived:
            self.received.append(mail)
            self._arrived.notify_all()

    def _authenticate(
        self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        assert self.auth is not None
        if isinstance(auth_data, LoginPassword):
            user, password = self.auth
            if auth_data.login == user.encode() and auth_data.password == password.encode():
                return AuthResult(success=True)
        return AuthResult(success=False, handled=False)

    # --- how to reach it

    def url(self, *, username: str | None = None, password: str | None = None) -> str:
        """A mail URL for ``attester.attestation.mail.transport_from_url``."""
        scheme = "smtps" if self.implicit_tls else "smtp"
        userinfo = ""
        if username is not None:
            userinfo = f"{quote(username, safe='')}:{quote(password or '', safe='')}@"
        query: dict[str, str] = {}
        if self.starttls:
            query["starttls"] = "true"
        if self.certificate is not None:
            query["cafile"] = self.certificate.cafile
        q = "?" + urlencode(query) if query else ""
        return f"{scheme}://{userinfo}{self.host}:{self.port}{q}"


ServerFactory = Callable[..., LoopbackSMTPServer]


@pytest.fixture(scope="session")
def smtp_certificate(tmp_path_factory: pytest.TempPathFactory) -> SelfSignedCertificate:
    return SelfSignedCertificate.generate(tmp_path_factory.mktemp("smtp-tls"))


@pytest.fixture
def smtp_server_factory() -> Iterator[ServerFactory]:
    """Make started servers with ``LoopbackSMTPServer``'s options; all stop at teardown."""
    servers: list[LoopbackSMTPServer] = []

    def make(**options: Any) -> LoopbackSMTPServer:
        server = LoopbackSMTPServer(**options)
        servers.append(server)
        server.start()
        return server

    yield make
    for server in servers:
        server.stop()


@pytest.fixture(scope="session")
def smtp_session() -> Iterator[LoopbackSMTPServer]:
    with LoopbackSMTPServer() as server:
        yield server


@pytest.fixture
def smtp_server(smtp_session: LoopbackSMTPServer) -> LoopbackSMTPServer:
    """A started plain SMTP server (no TLS, no AUTH) with an empty inbox. Tests may stop
    and start it; the next test gets it running again."""
    smtp_session.reset()
    return smtp_session
