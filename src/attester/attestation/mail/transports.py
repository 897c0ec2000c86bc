"""Transports: where a finished message goes (files, SMTP), chosen by ``mail_url``."""

from __future__ import annotations

import asyncio
import email.policy
import hashlib
import os
import socket
import ssl
import tempfile
from contextlib import suppress
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Protocol, runtime_checkable
from urllib.parse import parse_qsl, unquote, urlsplit

import aiosmtplib

from attester.attestation.mail.errors import MailDeliveryError
from attester.attestation.mail.message import MAX_SEND_ID, SEND_ID


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
        if local and len(local) <= MAX_SEND_ID and SEND_ID.match(local):
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
