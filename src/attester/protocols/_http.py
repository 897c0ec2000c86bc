"""What the protocol adapters share beyond ``attester.http``: path terms and origin headers."""

from __future__ import annotations

from collections.abc import Sequence

from starlette.responses import Response, StreamingResponse

from attester.openpgp import armor_joined, armor_joined_size
from attester.service.errors import PayloadTooLarge
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


def within_answer_limit(found: list[StoredCert], limit: int, *, text: bool) -> list[StoredCert]:
    """The certificates one key answer may carry: at most ``limit`` bytes of armor. A
    ``text`` search past it is refused (anyone could otherwise have one request join a
    hundred of the largest keys: 24 MB an answer); a lookup by address, fingerprint or key
    id serves what fits, in the order found (attested owners first), always the first."""
    out: list[StoredCert] = []
    size = 0
    for c in found:
        size += len(c.armored)
        if out and size > limit:
            if text:
                raise PayloadTooLarge(
                    f"The keys this search finds hold more than {limit} bytes, the most one "
                    "answer carries. Search for an address, a fingerprint or more words."
                )
            break
        out.append(c)
    return out


def one_block(blocks: list[str], media_type: str, headers: dict[str, str]) -> Response:
    """Several armored certificates streamed as one armor block, with its length (GnuPG's
    dirmngr cannot read a chunked answer). One certificate's block is its stored armored
    form, sent as it is (the same text ``armor_joined`` would make of it)."""
    if len(blocks) == 1:
        return Response(blocks[0], media_type=media_type, headers=headers)
    size = armor_joined_size(blocks)
    return StreamingResponse(
        armor_joined(blocks),
        media_type=media_type,
        headers={**headers, "Content-Length": str(size)},
    )
