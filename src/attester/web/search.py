"""Search (the home page for browsers) and key downloads. A search goes through
``parse_query`` and ``Core.search`` like every protocol's lookup, so the page finds exactly
what HKP and VKS would: addresses only once attested, any key by fingerprint or key ID."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from attester.http.render import error_page, page, site_of
from attester.http.state import core
from attester.openpgp.errors import InvalidIdentifier
from attester.openpgp.types import Fingerprint
from attester.service.errors import BadRequest, NotFound, Unsupported
from attester.service.query import (
    EmailQuery,
    FingerprintQuery,
    KeyIDQuery,
    Query,
    TextQuery,
    parse_query,
)
from attester.store.views import AttestedBy, StoredCert, StoredUserID
from attester.web import apidoc
from attester.web._request import sentence, served_protocols

_MAX_QUERY = 512

_ALGORITHMS = {
    "rsa": "RSA",
    "dsa": "DSA",
    "elgamal": "ElGamal",
    "ecdh": "ECDH",
    "ecdsa": "ECDSA",
    "eddsa": "EdDSA",
    "ed25519": "Ed25519",
    "ed448": "Ed448",
    "x25519": "X25519",
    "x448": "X448",
}

_ATTESTED = {
    AttestedBy.EMAIL: "verified by email",
    AttestedBy.OIDC: "verified by signing in with the address's provider",
    AttestedBy.OPERATOR: "vouched for by the operator of this server",
}


@dataclass(frozen=True)
class IdentityView:
    uid: str
    how: str
    when: datetime | None


@dataclass(frozen=True)
class KeyView:
    """A key as pages show it: what is published, and how to get it."""

    fingerprint: Fingerprint
    algorithm: str
    created: datetime
    expires: datetime | None
    expired: bool
    revoked: bool
    identities: tuple[IdentityView, ...]
    download: str
    commands: tuple[str, ...]
    via_subkey: Fingerprint | None  # the searched fingerprint was one of its subkeys'

    @property
    def key_id(self) -> str:
        return self.fingerprint.key_id.hex


def _algorithm(cert: StoredCert) -> str:
    name = _ALGORITHMS.get(cert.algorithm_name, cert.algorithm_name.upper())
    return f"{name}, {cert.bits} bit" if cert.bits else name


def _key_view(
    request: Request,
    cert: StoredCert,
    uids: list[StoredUserID],
    now: datetime,
    searched: Fingerprint | None,
) -> KeyView:
    site = site_of(request)
    fpr = cert.fingerprint.hex
    served = served_protocols(request)
    commands: list[str] = []
    if "hkp" in served:
        commands.append(f"gpg --keyserver {apidoc.hkp_url(site.public_url)} --recv-keys {fpr}")
    if "vks" in served:
        commands.append(f"curl {site.public_url}/vks/v1/by-fingerprint/{fpr} | gpg --import")
    else:
        commands.append(f"curl {site.public_url}/download/{fpr} | gpg --import")
    return KeyView(
        fingerprint=cert.fingerprint,
        algorithm=_algorithm(cert),
        created=cert.created,
        expires=cert.expires,
        expired=cert.expires is not None and cert.expires <= now,
        revoked=cert.revoked,
        identities=tuple(
            IdentityView(u.uid, _ATTESTED.get(u.attested_by, "verified"), u.attested_at)
            for u in uids
            if u.published and u.attested_by is not None
        ),
        download=f"{site.root}/download/{fpr}",
        commands=tuple(commands),
        via_subkey=searched if searched is not None and searched != cert.fingerprint else None,
    )


def key_views(request: Request, found: list[StoredCert], query: Query | None) -> list[KeyView]:
    """Views of ``found`` with their published user IDs (one query; call off the loop)."""
    c = core(request)
    uids = c.published_user_ids(found)
    now = c.clock()
    searched = query.fingerprint if isinstance(query, FingerprintQuery) else None
    return [_key_view(request, cert, uids.get(cert.id, []), now, searched) for cert in found]


def search_page(request: Request, status: int, q: str, **context: Any) -> HTMLResponse:
    """The home page: the search form, and results or an answer when there was a search."""
    context.setdefault("error", None)
    context.setdefault("keys", None)
    context.setdefault("nothing", None)
    return page(request, "home.html", status, nav="search", q=q, **context)


def _kind(query: Query) -> dict[str, Any]:
    match query:
        case EmailQuery(email):
            return {"kind": "email", "email": email}
        case FingerprintQuery(fpr):
            return {"kind": "fingerprint", "term": fpr.grouped()}
        case KeyIDQuery(kid):
            return {"kind": "keyid", "term": kid.hex}
        case TextQuery(words):
            return {"kind": "text", "term": " ".join(words)}


async def search(request: Request) -> Response:
    q = request.query_params.get("q", "").strip()[:_MAX_QUERY]
    if not q:
        return search_page(
            request, 400, q, error="Enter an email address, a fingerprint or a key ID."
        )
    try:
        query = parse_query(q, allow_text=True)
        found = await run_in_threadpool(core(request).search, query)
    except NotFound:
        return search_page(request, 404, q, nothing=_kind(query))
    except Unsupported:
        return search_page(
            request,
            400,
            q,
            error="Searching by name is switched off on this server. Search by email "
            "address, fingerprint or key ID.",
        )
    except BadRequest as e:
        return search_page(request, 400, q, error=sentence(e.message))
    keys = await run_in_threadpool(key_views, request, found, query)
    return search_page(request, 200, q, keys=keys)


async def download(request: Request) -> Response:
    """The key as a fingerprint lookup serves it (VKS ``by-fingerprint``), as a file."""
    try:
        fpr = Fingerprint.parse(request.path_params["fingerprint"].removesuffix(".asc"))
        [cert] = await run_in_threadpool(core(request).lookup, FingerprintQuery(fpr))
    except (InvalidIdentifier, NotFound):
        return error_page(request, 404, "No key with this fingerprint is stored here.")
    return Response(
        cert.armored,
        media_type="application/pgp-keys",
        headers={
            "Content-Disposition": f'attachment; filename="{cert.fingerprint.hex}.asc"',
            "X-Content-Type-Options": "nosniff",
            "Cache-Control": "no-cache",
        },
    )
