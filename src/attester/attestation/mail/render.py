"""Rendering a kind of mail from its context: values checked, then the templates."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from urllib.parse import urlsplit

import jinja2

from attester.attestation.mail.errors import InvalidMailContext, UnknownMailKind
from attester.attestation.mail.settings import UNSAFE_CHARS, MailSettings, one_line
from attester.openpgp.errors import OpenPGPError
from attester.openpgp.types import Email, Fingerprint


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
    if UNSAFE_CHARS.search(value):
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
    name = one_line(value)
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
    subject = one_line(env.get_template(f"{kind}/subject.txt").render(values))
    text = env.get_template(f"{kind}/body.txt").render(values, subject=subject)
    html = env.get_template(f"{kind}/body.html").render(values, subject=subject)
    return RenderedMail(subject=subject, text=text, html=html)
