"""What the protocol adapters share beyond ``attester.http``: path terms and origin headers."""

from __future__ import annotations

from collections.abc import Sequence

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
    """The search term of ``/pub/{term}`` and the VKS routes, trimmed.

    The server has percent-decoded the path exactly once, as every client encodes it
    once (FlowCrypt's browser with ``encodeURIComponent``, Android through Retrofit's
    ``@Path``). Decoding again would read the address ``pct%41x@d`` (sent as
    ``pct%2541x@d``) as ``pctax@d``: a lookup of someone else's address, and an id token
    for the real one refused. ``+`` stays ``+`` (FlowCrypt's contract)."""
    return raw.strip()
