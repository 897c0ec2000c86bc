"""What the protocol adapters share beyond ``attester.http``: path terms and origin headers."""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import unquote

from attester.store.views import StoredCert


def origin_headers(found: Sequence[StoredCert]) -> dict[str, str]:
    """``X-Attester-Origin``: whose word the identities of each served certificate rest
    on, in the order served: ``local`` (attested here), or ``upstream:<name>`` /
    ``mirror:<name>`` with ``; fetched=<UTC time>`` (docs/federation.md)."""
    entries = []
    for c in found:
        entry = c.origin.label
        if c.origin.fetched_at is not None:
            entry += f"; fetched={c.origin.fetched_at.strftime('%Y-%m-%dT%H:%M:%SZ')}"
        entries.append(entry)
    return {"X-Attester-Origin": ", ".join(entries)} if entries else {}


def path_term(raw: str) -> str:
    """The search term of ``/pub/{term}``: Starlette has percent-decoded the path once; a
    client that encoded twice (``%2540``) or whose proxy re-encoded still means ``@``.
    ``unquote`` never turns ``+`` into a space, which FlowCrypt's contract forbids."""
    term = raw.strip()
    if "%" in term:
        term = unquote(term).strip()
    return term
