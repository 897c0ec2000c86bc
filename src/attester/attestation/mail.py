"""Outgoing mail: render a kind of mail, build the message, hand it to a transport.

The three steps are separate on purpose, so a durable outbox can sit between them: the
outbox stores ``(kind, context, recipient, send_id)``, and its worker calls

1. ``render(kind, context, settings)`` → ``RenderedMail`` (subject, text, HTML),
2. ``build_message(to, rendered, send_id, settings)`` → ``EmailMessage``,
3. ``await transport.send(message)``, retrying while ``MailDeliveryError.permanent`` is false.

The ``send_id`` becomes the ``Message-ID``, so a message re-sent after a crash is the same
message to every system that sees it (``FileTransport`` even overwrites its own file).

Mails never build links: every link arrives ready-made in the context, so token and URL
rules live in one place (the attestation service), not in templates.

Kinds and their context (``Email``/``Fingerprint`` values or their string forms; an expiry is
an aware ``datetime`` or an ISO 8601 string, as it comes back from a JSON column)::

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

from __future__ import annotations

import asyncio
import email.policy
import hashlib
import os
import re
import socket
import ssl
import tempfile
from collections.abc import Callable, Mapping
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime
from functools import cache
from pathlib import Path
from typing import Protocol, runtime_checkable
from urllib.parse import parse_qsl, unquote, urlsplit

import aiosmtplib
import jinja2

from attester.openpgp.errors import OpenPGPError
from attester.openpgp.types import Email, Fingerprint

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


# --- errors ------------------------------------------------------------------------------


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


# --- settings ----------------------------------------------------------------------------

# Characters that must never reach a header: C0/C1 controls (CR and LF above all), Unicode
# line and paragraph separators, and lone surrogates (they cannot be encoded as UTF-8).
_UNSAFE_CHARS = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
_ADDR_SPEC = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+@[A-Za-z0-9.-]+$")
_DOMAIN = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?$")


@dataclass(frozen=True, kw_only=True)
class MailSettings:
    """What every mail needs to know about the service. ``base_url`` only appears in the
    footer; links to act on come in each mail's context. ``message_id_domain`` defaults to
    the sender's domain (``None``), read through ``resolved_message_id_domain``."""

    base_url: str
    sender_name: str = "Attester"
    sender_address: str = "attester@localhost"
    service_name: str = "Attester"
    message_id_domain: str | None = None

    def __post_init__(self) -> None:
        # Settings come from the operator, not from users: refuse bad values loudly instead
        # of quietly cleaning them as build_message does for user data.
        for name in ("sender_name", "service_name"):
            if _UNSAFE_CHARS.search(getattr(self, name)):
                raise ValueError(f"mail {name} must not contain control characters")
        if not _ADDR_SPEC.match(self.sender_address):
            raise ValueError(
                f"mail sender_address {self.sender_address!r} is not a plain ASCII address "
                "like attester@example.org"
            )
        url = urlsplit(self.base_url)
        if url.scheme not in ("http", "https") or not url.netloc:
            raise ValueError(f"mail base_url {self.base_url!r} is not an http(s) URL")
        if self.message_id_domain is not None and not _DOMAIN.match(self.message_id_domain):
            raise ValueError(f"mail message_id_domain {self.message_id_domain!r} is not a domain")

    @property
    def resolved_message_id_domain(self) -> str:
        return self.message_id_domain or self.sender_address.rpartition("@")[2]


# --- rendering ---------------------------------------------------------------------------


@dataclass(frozen=True)
class RenderedMail:
    subject: str
    text: str
    html: str


@dataclass(frozen=True)
class _Kind:
    required: tuple[str, ...]
    optional: tuple[str, ...] = ("name",)


_KINDS: Mapping[str, _Kind] = {
    "verify": _Kind(("address", "fingerprint", "link", "expires_at")),
    "manage": _Kind(("link", "expires_at"), ("fingerprint", "name")),
    "replaced": _Kind(("address", "old_fingerprint", "new_fingerprint", "link")),
    "welcome": _Kind(("address", "link")),
}
MAIL_KINDS: frozenset[str] = frozenset(_KINDS)

_MONTHS = (
    "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December",
)  # fmt: skip
_MAX_NAME = 100


def _one_line(text: str) -> str:
    """Unsafe characters become spaces, runs of white space one space: the result can sit in a
    header (or a greeting) without starting a new line."""
    return " ".join(_UNSAFE_CHARS.sub(" ", text).split())


def _address(key: str, value: object) -> str:
    if isinstance(value, Email):
        return value.address
    if isinstance(value, str):
        try:
            return Email.parse(value).address
        except OpenPGPError as e:
            raise InvalidMailContext(f"{key}: {e}") from e
    raise InvalidMailContext(f"{key} must be an Email or a string, not {type(value).__name__}")


def _fingerprint(key: str, value: object) -> str:
    if isinstance(value, Fingerprint):
        return value.grouped()
    if isinstance(value, str):
        try:
            return Fingerprint.parse(value).grouped()
        except OpenPGPError as e:
            raise InvalidMailContext(f"{key}: {e}") from e
    raise InvalidMailContext(f"{key} must be a Fingerprint or a string, not {type(value).__name__}")


def _link(key: str, value: object) -> str:
    if not isinstance(value, str):
        raise InvalidMailContext(f"{key} must be a string, not {type(value).__name__}")
    url = urlsplit(value)
    # A link people are asked to click must be a plain web address: no javascript:, no
    # white space that a mail client would cut the link at.
    if url.scheme not in ("http", "https") or not url.netloc or any(c.isspace() for c in value):
        raise InvalidMailContext(f"{key} must be an absolute http(s) URL without spaces")
    if _UNSAFE_CHARS.search(value):
        raise InvalidMailContext(f"{key} must not contain control characters")
    return value


def _when(key: str, value: object) -> str:
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError as e:
            raise InvalidMailContext(f"{key} is not an ISO 8601 date and time") from e
    if not isinstance(value, datetime):
        raise InvalidMailContext(f"{key} must be a datetime, not {type(value).__name__}")
    if value.tzinfo is None:
        raise InvalidMailContext(f"{key} must carry a time zone; a naive time is ambiguous")
    # Month names are spelled out here rather than with %B, which follows the process locale.
    t = value.astimezone(UTC)
    return f"{t.day} {_MONTHS[t.month - 1]} {t.year}, {t:%H:%M} UTC"


def _name(key: str, value: object) -> str:
    if not isinstance(value, str):
        raise InvalidMailContext(f"{key} must be a string, not {type(value).__name__}")
    name = _one_line(value)
    return name if len(name) <= _MAX_NAME else name[: _MAX_NAME - 1] + "…"


_PREPARE: Mapping[str, Callable[[str, object], str]] = {
    "address": _address,
    "fingerprint": _fingerprint,
    "old_fingerprint": _fingerprint,
    "new_fingerprint": _fingerprint,
    "link": _link,
    "expires_at": _when,
    "name": _name,
}


@cache
def _environment() -> jinja2.Environment:
    # Cached because loading and compiling templates is the only costly part of rendering;
    # the environment holds no per-request state.
    return jinja2.Environment(
        loader=jinja2.PackageLoader("attester.attestation", "templates/mail"),
        autoescape=jinja2.select_autoescape(
            enabled_extensions=("html",), default_for_string=False, default=False
        ),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def render(kind: str, context: Mapping[str, object], settings: MailSettings) -> RenderedMail:
    """Render ``kind`` with ``context`` (see the table in the module docstring).

    Values are checked and turned into display strings first, so a malformed fingerprint
    or a ``javascript:`` link fails here, in the caller, and never reaches a template.
    """
    spec = _KINDS.get(kind)
    if spec is None:
        raise UnknownMailKind(
            f"there is no mail of kind {kind!r}; known kinds: {', '.join(sorted(_KINDS))}"
        )
    missing = [k for k in spec.required if k not in context]
    if missing:
        raise InvalidMailContext(f"a {kind} mail needs {', '.join(missing)}")
    unexpected = sorted(set(context) - set(spec.required) - set(spec.optional))
    if unexpected:
        raise InvalidMailContext(f"a {kind} mail does not take {', '.join(unexpected)}")

    values: dict[str, str] = dict.fromkeys(spec.optional, "")
    for key, value in context.items():
        values[key] = _PREPARE[key](key, value)
    values |= {"service_name": settings.service_name, "base_url": settings.base_url}

    env = _environment()
    subject = _one_line(env.get_template(f"{kind}/subject.txt").render(values))
    text = env.get_template(f"{kind}/body.txt").render(values, subject=subject)
    html = env.get_template(f"{kind}/body.html").render(values, subject=subject)
    return RenderedMail(subject=subject, text=text, html=html)


# --- building messages -------------------------------------------------------------------

# A send id becomes the local part of the Message-ID and a file name, so it must be a
# dot-atom that is also a safe file name: no leading dot, no "..", nothing else.
_SEND_ID = re.compile(r"^[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*$")
_MAX_SEND_ID = 128
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
    if len(send_id) > _MAX_SEND_ID or not _SEND_ID.match(send_id):
        raise ValueError(
            "send_id must be letters, digits, '-', '_' and single inner dots, "
            f"at most {_MAX_SEND_ID} characters (a UUID fits)"
        )
    # A non-ASCII local part cannot be written as an RFC 2047 encoded word; it needs raw
    # UTF-8 headers (RFC 6532), which SMTP carries only with SMTPUTF8.
    policy = email.policy.default.clone(utf8=not to.local_part.isascii())
    subject = _one_line(rendered.subject)
    if len(subject) > _MAX_SUBJECT:
        subject = subject[: _MAX_SUBJECT - 1] + "…"

    msg = EmailMessage(policy=policy)
    # Address objects (not formatted strings) so the email package quotes and RFC 2047
    # encodes display names itself: a comma or quote in a name stays inside the name.
    msg["From"] = Address(display_name=settings.sender_name, addr_spec=settings.sender_address)
    msg["To"] = Address(
        display_name=_one_line(to_name or ""), username=to.local_part, domain=to.domain
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


# --- transports --------------------------------------------------------------------------


@runtime_checkable
class MailTransport(Protocol):
    """Something that takes a finished message off our hands. ``send`` returns once the
    message is stored or accepted by the next server, and raises ``MailDeliveryError``
    otherwise; it never changes the message."""

    async def send(self, message: EmailMessage) -> None: ...


def _needs_smtputf8(message: EmailMessage) -> bool:
    for header in ("From", "Sender", "To", "Cc", "Bcc", "Reply-To"):
        for value in message.get_all(header, []):
            for address in getattr(value, "addresses", ()):
                if not address.addr_spec.isascii():
                    return True
    return False


class FileTransport:
    """Writes each message to ``{directory}/{name}.eml``, for development and tests (as
    Hagrid's ``filemail``). The name is the Message-ID's local part when it is a safe file
    name (it is for ``build_message``'s messages: the send id), else a hash of the whole
    Message-ID, so sending the same message twice leaves one file."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)

    def __repr__(self) -> str:
        return f"FileTransport({str(self.directory)!r})"

    def path_for(self, message: EmailMessage) -> Path:
        message_id = str(message.get("Message-ID", "")).strip()
        if not message_id:
            raise ValueError("FileTransport names files by Message-ID, and the message has none")
        local = message_id.removeprefix("<").removesuffix(">").rpartition("@")[0]
        if local and len(local) <= _MAX_SEND_ID and _SEND_ID.match(local):
            name = local
        else:
            name = hashlib.sha256(message_id.encode("utf-8", "surrogateescape")).hexdigest()
        return self.directory / f"{name}.eml"

    async def send(self, message: EmailMessage) -> None:
        path = self.path_for(message)
        # The bytes SMTP would carry (CRLF line ends), so a stored file can be replayed.
        policy = email.policy.SMTPUTF8 if _needs_smtputf8(message) else email.policy.SMTP
        data = message.as_bytes(policy=policy)
        try:
            await asyncio.to_thread(_write_atomically, path, data)
        except OSError as e:
            raise MailDeliveryError(
                f"could not write the mail to {path}: {e.strerror or e}", permanent=False
            ) from e


def _write_atomically(path: Path, data: bytes) -> None:
    """1. write a temporary file in the same directory, 2. flush it to disk, 3. rename it
    over the target (atomic on POSIX), 4. sync the directory so the rename survives a
    crash. Readers see the old file or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with suppress(OSError):
            os.unlink(tmp)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


@dataclass(frozen=True)
class SMTPTransport:
    """Sends through an SMTP relay with aiosmtplib, one connection per message (mail is rare
    here, and a fresh connection has no stale state to recover from).

    ``starttls`` upgrades a plain connection and fails if the server cannot; ``use_tls`` is
    implicit TLS from the first byte (port 465). Without either nothing is encrypted, on
    purpose: opportunistic STARTTLS would make delivery depend on what the relay offers
    today. ``cafile`` adds trust anchors for a private relay; ``validate_certs=False``
    turns verification off entirely and belongs on loopback only.
    """

    host: str
    port: int = 25
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    starttls: bool = False
    use_tls: bool = False
    timeout: float = 30.0
    validate_certs: bool = True
    cafile: str | None = None

    def __post_init__(self) -> None:
        if not self.host:
            raise ValueError("the SMTP host is empty")
        if not 0 < self.port < 65536:
            raise ValueError(f"the SMTP port {self.port} is not between 1 and 65535")
        if self.starttls and self.use_tls:
            raise ValueError(
                "starttls and use_tls exclude each other: STARTTLS upgrades a plain "
                "connection, use_tls is TLS from the start"
            )
        if (self.username is None) != (self.password is None):
            raise ValueError("give both an SMTP username and a password, or neither")
        if not self.timeout > 0:
            raise ValueError("the SMTP timeout must be a positive number of seconds")

    async def send(self, message: EmailMessage) -> None:
        # The steps aiosmtplib.send() would take, spelled out so that the socket is known
        # before STARTTLS and login (either may fail) and can be waited for afterwards.
        client = aiosmtplib.SMTP(
            hostname=self.host,
            port=self.port,
            timeout=self.timeout,
            use_tls=self.use_tls,
            start_tls=False,
            validate_certs=self.validate_certs,
            cert_bundle=self.cafile,
        )
        sock = None
        try:
            async with client:  # connects; on leaving sends QUIT, ignoring a failed QUIT
                sock = client.get_transport_info("socket")
                if self.starttls:
                    await client.starttls()
                if self.username is not None and self.password is not None:
                    await client.login(self.username, self.password)
                await client.send_message(message)
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as e:
            raise _delivery_error(e) from e
        finally:
            if sock is not None:
                await _until_closed(sock, _CLOSE_WAIT_SECONDS)


# How long send() waits for a TLS connection to finish closing. A TLS close is an exchange
# (close_notify both ways) that goes on after close() returns; a caller whose event loop
# ends right after send() (a CLI command, asyncio.run) would otherwise leave the socket
# open. A server that never answers the close only costs this much.
_CLOSE_WAIT_SECONDS = 1.0


async def _until_closed(sock: socket.socket, limit: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while sock.fileno() != -1 and loop.time() < deadline:
        await asyncio.sleep(0.005)


def _delivery_error(exc: BaseException) -> MailDeliveryError:
    """The one place where aiosmtplib's (and the socket layer's) exceptions become ours;
    ``tests/attestation/test_mail.py`` checks that every aiosmtplib exception lands here."""
    match exc:
        case aiosmtplib.SMTPRecipientsRefused(recipients=refused):
            # One recipient per message, so "all refused" is that recipient. Permanent only
            # if every refusal was a 5xx: a 4xx (mailbox busy, greylisting) may pass later.
            codes = [r.code for r in refused]
            permanent = bool(codes) and all(c >= 500 for c in codes)
            detail = "; ".join(f"{r.code} {r.message}" for r in refused)
            return MailDeliveryError(
                f"the mail server refused the recipient: {detail}",
                permanent=permanent,
                code=codes[0] if codes else None,
            )
        case aiosmtplib.SMTPRecipientRefused(code=code, message=text):
            return MailDeliveryError(
                f"the mail server refused the recipient: {code} {text}",
                permanent=code >= 500,
                code=code,
            )
        case aiosmtplib.SMTPDataError(code=code, message=text):
            # A 5xx after DATA rejects this content (size, policy); sending it again won't help.
            return MailDeliveryError(
                f"the mail server refused the message: {code} {text}",
                permanent=code >= 500,
                code=code,
            )
        case aiosmtplib.SMTPAuthenticationError(code=code, message=text):
            # Our credentials, not this message: retry once an operator has fixed them.
            return MailDeliveryError(
                f"the mail server refused our login: {code} {text}", permanent=False, code=code
            )
        case aiosmtplib.SMTPSenderRefused(code=530, message=text):
            return MailDeliveryError(
                f"the mail server wants a login; put user and password in the mail URL: {text}",
                permanent=False,
                code=530,
            )
        case aiosmtplib.SMTPSenderRefused(code=code, message=text):
            # The sender address is our configuration, the same for every mail: temporary.
            return MailDeliveryError(
                f"the mail server refused the sender address: {code} {text}",
                permanent=False,
                code=code,
            )
        case aiosmtplib.SMTPResponseException(code=code, message=text):
            return MailDeliveryError(
                f"the mail server answered {code} {text}", permanent=False, code=code
            )
        case TimeoutError():
            # aiosmtplib's timeouts subclass TimeoutError too, so they land here.
            return MailDeliveryError("the mail server did not answer in time", permanent=False)
        case ssl.SSLError():
            return MailDeliveryError(f"TLS with the mail server failed: {exc}", permanent=False)
        case aiosmtplib.SMTPException() | OSError():
            return MailDeliveryError(
                f"could not deliver to the mail server: {exc}", permanent=False
            )
    raise TypeError(f"not a delivery failure: {exc!r}")  # pragma: no cover - caller's filter


# --- configuration -----------------------------------------------------------------------

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})
_SMTP_PARAMS = frozenset({"starttls", "timeout", "validate_certs", "cafile"})


def _flag(name: str, value: str) -> bool:
    v = value.strip().lower()
    if v in _TRUE:
        return True
    if v in _FALSE:
        return False
    raise ValueError(f"mail URL parameter {name}={value!r} is not true or false")


def transport_from_url(url: str) -> MailTransport:
    """The transport a mail URL names.

    ``file:///abs/outbox``, ``file:/abs/outbox`` or ``file:relative/outbox`` write ``.eml``
    files. ``smtp://user:pass@host:587?starttls=true&timeout=10`` sends through a relay
    (port 25 by default); ``smtps://`` is implicit TLS (port 465 by default). User name and
    password are percent-decoded, so ``%40`` is an ``@``. SMTP parameters: ``starttls``,
    ``timeout`` (seconds), ``validate_certs``, ``cafile``.
    """
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    if scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise ValueError(
                f"the mail URL {url!r} names a host; write file:///absolute/path or "
                "file:relative/path"
            )
        if parts.query or parts.fragment:
            raise ValueError(f"the file mail URL {url!r} takes no parameters")
        path = unquote(parts.path)
        if not path:
            raise ValueError(f"the mail URL {url!r} has no directory")
        return FileTransport(path)
    if scheme not in ("smtp", "smtps"):
        raise ValueError(
            f"the mail URL scheme {parts.scheme!r} is not supported; use file:, smtp: or smtps:"
        )

    host = parts.hostname
    if not host:
        raise ValueError(f"the mail URL {_redact(url)!r} has no host")
    try:
        port = parts.port
    except ValueError as e:
        raise ValueError(
            f"the mail URL {_redact(url)!r} has a port that is not a number from 1 to 65535"
        ) from e
    if port == 0:
        raise ValueError(f"the mail URL {_redact(url)!r} has port 0; give a real port")
    if parts.path not in ("", "/") or parts.fragment:
        raise ValueError(f"the mail URL {_redact(url)!r} takes no path")

    params: dict[str, str] = {}
    for key, value in parse_qsl(parts.query, keep_blank_values=True, strict_parsing=False):
        if key not in _SMTP_PARAMS:
            raise ValueError(
                f"unknown mail URL parameter {key!r}; known: {', '.join(sorted(_SMTP_PARAMS))}"
            )
        params[key] = value

    use_tls = scheme == "smtps"
    starttls = _flag("starttls", params["starttls"]) if "starttls" in params else False
    if use_tls and starttls:
        raise ValueError("smtps: is TLS from the start; starttls=true only goes with smtp:")
    timeout = 30.0
    if "timeout" in params:
        try:
            timeout = float(params["timeout"])
        except ValueError as e:
            raise ValueError(f"mail URL timeout={params['timeout']!r} is not a number") from e
        if not 0 < timeout < float("inf"):
            raise ValueError("mail URL timeout must be a positive number of seconds")
    validate = True
    if "validate_certs" in params:
        validate = _flag("validate_certs", params["validate_certs"])

    username = unquote(parts.username) if parts.username is not None else None
    password = unquote(parts.password) if parts.password is not None else None
    if username is not None and password is None:
        raise ValueError(f"the mail URL {_redact(url)!r} has a user name but no password")
    return SMTPTransport(
        host,
        port if port is not None else (465 if use_tls else 25),
        username=username,
        password=password,
        starttls=starttls,
        use_tls=use_tls,
        timeout=timeout,
        validate_certs=validate,
        cafile=params.get("cafile") or None,
    )


def _redact(url: str) -> str:
    """The URL with its password replaced, fit for an error message or a log line."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rpartition("@")
    user = netloc[0].partition(":")[0]
    return parts._replace(netloc=f"{user}:***@{netloc[2]}").geturl()
