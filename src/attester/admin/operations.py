"""The admin operations with their inputs as text and their answers as JSON objects: what
the admin API routes (``api.py``) answer and what ``attester admin`` prints, on the local
database or through the API. One function per operation, so both paths give the same
answer for the same question.

Inputs are parsed here (fingerprints, addresses, dates, booleans) into the service's
values; a malformed one is a ``BadRequest`` with a sentence.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

from attester.openpgp.errors import InvalidEmail, InvalidIdentifier
from attester.openpgp.types import Email, Fingerprint
from attester.service.errors import BadRequest
from attester.service.operator import Administration
from attester.service.policy import normalise_pattern
from attester.service.removals import Target
from attester.store.admin import KeyFilter
from attester.store.audit import Actor, AuditFilter

KEY_FILTERS = ("domain", "origin", "attested", "removed", "q")
AUDIT_FILTERS = (
    "since",
    "until",
    "actor_kind",
    "actor",
    "action",
    "fingerprint",
    "email",
    "domain",
)


def fingerprint(text: str) -> Fingerprint:
    try:
        return Fingerprint.parse(text)
    except InvalidIdentifier as e:
        raise BadRequest(str(e)) from e


def email(text: str) -> Email:
    try:
        return Email.parse(text)
    except InvalidEmail as e:
        raise BadRequest(str(e)) from e


def boolean(name: str, text: str | None) -> bool | None:
    if text is None or text == "":
        return None
    value = text.strip().lower()
    if value in ("true", "yes", "1"):
        return True
    if value in ("false", "no", "0"):
        return False
    raise BadRequest(f"{name} is true or false.")


def integer(name: str, text: str | None) -> int | None:
    if text is None or text == "":
        return None
    try:
        return int(text)
    except ValueError as e:
        raise BadRequest(f"{name} is a whole number.") from e


def timestamp(name: str, text: str | None) -> datetime | None:
    """An ISO 8601 date or time; without a zone it is UTC."""
    if text is None or text == "":
        return None
    try:
        t = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError as e:
        raise BadRequest(f"{name} is an ISO 8601 date or time, e.g. 2026-12-01T10:00Z.") from e
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


def _domain(text: str | None) -> str | None:
    if not text:
        return None
    try:
        d = normalise_pattern(text)
    except ValueError as e:
        raise BadRequest(str(e)) from e
    if "*" in d:
        raise BadRequest("domain names one domain exactly.")
    return d


# ---- keys


def list_keys(admin: Administration, params: Mapping[str, str | None]) -> dict[str, Any]:
    f = KeyFilter(
        domain=_domain(params.get("domain")),
        origin=(params.get("origin") or "").strip() or None,
        attested=boolean("attested", params.get("attested")),
        removed=boolean("removed", params.get("removed")),
        text=(params.get("q") or "").strip() or None,
    )
    limit = integer("limit", params.get("limit"))
    found = admin.keys(f, after=integer("after", params.get("after")) or 0, limit=limit)
    full = len(found) == (limit or admin.page_size)
    return {
        "keys": [k.as_json() for k in found],
        "next": found[-1].id if found and full else None,
    }


def show_key(admin: Administration, fpr: str) -> dict[str, Any]:
    return admin.key(fingerprint(fpr)).as_json()


def attest(
    admin: Administration, fpr: str, address: str, actor: Actor, reason: str | None = None
) -> dict[str, Any]:
    changed = admin.attest(fingerprint(fpr), email(address), actor, reason)
    return show_key(admin, fpr) | {"changed": changed}


def unattest(
    admin: Administration, fpr: str, address: str, actor: Actor, reason: str | None = None
) -> dict[str, Any]:
    admin.unattest(fingerprint(fpr), email(address), actor, reason)
    return show_key(admin, fpr) | {"changed": True}


def resend(admin: Administration, fpr: str, address: str, actor: Actor) -> dict[str, Any]:
    admin.resend(fingerprint(fpr), email(address), actor)
    return {"sent": True, "fingerprint": fingerprint(fpr).hex, "email": email(address).address}


# ---- removals


def target(selector: Mapping[str, Any]) -> Target:
    """The one of ``fingerprint``, ``email``, ``domain`` a request names."""
    values: dict[str, str | None] = {}
    for k in ("fingerprint", "email", "domain"):
        v = selector.get(k)
        if v is not None and not isinstance(v, str):
            raise BadRequest(f"{k} is a string.")
        values[k] = v
    return Target.parse(**values)


def remove(
    admin: Administration, selector: Mapping[str, Any], reason: str | None, actor: Actor
) -> dict[str, Any]:
    return admin.removals.remove(target(selector), reason or "", actor).as_json()


def restore(
    admin: Administration, selector: Mapping[str, Any], actor: Actor, reason: str | None = None
) -> dict[str, Any]:
    return admin.removals.restore(target(selector), actor, reason).as_json()


def removals(admin: Administration) -> dict[str, Any]:
    return {"removals": [r.as_json() for r in admin.removals.list()]}


# ---- audit, policy, stats, tokens


def audit_filter(params: Mapping[str, str | None]) -> AuditFilter:
    fpr = params.get("fingerprint")
    addr = params.get("email")
    return AuditFilter(
        since=timestamp("since", params.get("since")),
        until=timestamp("until", params.get("until")),
        actor_kind=(params.get("actor_kind") or "").strip() or None,
        actor=(params.get("actor") or "").strip() or None,
        action=(params.get("action") or "").strip() or None,
        fingerprint=fingerprint(fpr) if fpr else None,
        email=email(addr) if addr else None,
        domain=_domain(params.get("domain")),
    )


def audit(admin: Administration, params: Mapping[str, str | None]) -> dict[str, Any]:
    limit = integer("limit", params.get("limit"))
    entries = admin.audit(
        audit_filter(params), after=integer("after", params.get("after")) or 0, limit=limit
    )
    full = len(entries) == (limit or admin.page_size)
    return {
        "entries": [e.as_json() for e in entries],
        "next": entries[-1].id if entries and full else None,
    }


def audit_lines(
    admin: Administration, params: Mapping[str, str | None]
) -> Iterator[dict[str, Any]]:
    """Every matching entry (the JSON lines export)."""
    f = audit_filter(params)
    return (e.as_json() for e in admin.audit_all(f))


def policy(admin: Administration) -> dict[str, Any]:
    return admin.policy()


def reload_policy(admin: Administration, actor: Actor) -> dict[str, Any]:
    return {"reloaded": True, "policy": admin.reload_policy(actor)}


def stats(admin: Administration) -> dict[str, Any]:
    return admin.stats()


def tokens(admin: Administration) -> dict[str, Any]:
    return {"tokens": [t.as_json() for t in admin.tokens.list()]}
