"""HKP, the HTTP Keyserver Protocol (``../shared/specs/hkp.md``), as GnuPG's dirmngr,
Sequoia ``sq``, SKS/Hockeypuck peers and scripts speak it.

    GET  /pks/lookup     op=get | index | vindex | stats | hget
    POST /pks/add        keytext=<armored keyring>, through the attestation service
    POST /pks/hashquery  SKS digests in, full certificates out (sync peers)

Every answer that is not a key, an index or statistics is a ``text/plain`` sentence with
the status HKP clients act on: 400 malformed, 404 nothing found, 413 too large, 501 an
unsupported operation or switched-off text search. Nothing here parses OpenPGP: lookups
serve what the store precomputed when the certificate was written.
"""

from __future__ import annotations

import json
import re
import struct
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import parse_qsl

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from attester import __version__
from attester.http.access import audience_of
from attester.http.body import read_body
from attester.http.cache import reusable, reusable_miss
from attester.http.render import page
from attester.http.state import client_address, limit_mail_requests, wake_mailer
from attester.protocols._http import one_block, origin_headers, within_answer_limit
from attester.service.attestation import Attestation
from attester.service.core import Core
from attester.service.errors import (
    BadRequest,
    InvalidQuery,
    NotFound,
    ServiceError,
    Unsupported,
)
from attester.service.policy import Audience
from attester.service.query import Query, TextQuery, parse_query
from attester.service.submission import KeyringUpload
from attester.service.verification import AddressState
from attester.store.views import StoredCert, StoredUserID

_OPS = frozenset({"get", "index", "vindex", "stats", "hget"})
_DIGEST = re.compile(r"^[0-9a-fA-F]{32}$")
_CORS = {"Access-Control-Allow-Origin": "*"}
_KEYS_TYPE = "application/pgp-keys; charset=UTF-8"
_MD5_LEN = 16


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return PlainTextResponse(
        message + "\n", status_code=status, headers={**_CORS, **(headers or {})}
    )


# ---- GET /pks/lookup


@dataclass(frozen=True)
class _Lookup:
    op: str
    search: str
    options: frozenset[str]
    exact: bool
    fingerprint: bool

    @property
    def machine(self) -> bool:
        return "mr" in self.options

    @property
    def json(self) -> bool:
        return "json" in self.options


def _lookup_params(request: Request) -> _Lookup:
    params = request.query_params
    op = params.get("op", "").strip().lower()
    if not op:
        raise BadRequest("The op parameter is missing: use get, index, vindex, stats or hget.")
    if op not in _OPS:
        raise Unsupported(
            f"The operation {op[:40]!r} is not supported: use get, index, vindex, stats or hget."
        )
    # nm ("no modification") and unknown options change nothing here: we never modify keys.
    options = frozenset(o.strip().lower() for o in params.get("options", "").split(","))
    return _Lookup(
        op=op,
        search=params.get("search", ""),
        options=options - {""},
        exact=params.get("exact", "").lower() == "on",
        fingerprint=params.get("fingerprint", "").lower() == "on",
    )


async def _find(
    core: Core, query: Query, exact: bool, with_uids: bool, audience: Audience, client: str
) -> tuple[list[StoredCert], dict[int, list[StoredUserID]]]:
    """The certificates a search finds and, when asked, their published user IDs."""
    if with_uids or (exact and isinstance(query, TextQuery)):
        found, uids = await core.listing(query, audience, client)
    else:
        found, uids = await core.search(query, audience, client), {}
    if exact and isinstance(query, TextQuery):
        # exact=on: some published user ID must be the whole search text, not just hold
        # its words (case and runs of white space do not count).
        wanted = " ".join(query.words)
        found = [
            c for c in found if any(" ".join(u.uid.lower().split()) == wanted for u in uids[c.id])
        ]
        if not found:
            raise NotFound("No published key has exactly this user ID")
    return found, uids


async def lookup(request: Request) -> Response:
    core: Core = request.app.state.core
    kept = False
    try:
        p = _lookup_params(request)
        if p.op == "stats":
            return await _stats(request, core, p)
        audience = audience_of(request)
        if p.op == "hget":
            return await _hget(core, p.search, audience)
        if not p.search.strip():
            raise InvalidQuery("The search parameter is missing.")
        query = parse_query(p.search, allow_text=True)
        # Answers by address, fingerprint or key id depend on nothing but the URL, the
        # audience and the stored keys; text searches are rate-limited per client and
        # never kept.
        kept = not isinstance(query, TextQuery) and (p.op == "get" or p.machine or p.json)
        found, uids = await _find(
            core, query, p.exact, p.op != "get", audience, client_address(request)
        )
    except ServiceError as e:
        if isinstance(e, NotFound) and kept:
            reusable_miss(request)
        return error_response(e.status, e.message, e.headers)
    if kept:
        reusable(request, found)
    if p.op == "get":
        try:
            found = within_answer_limit(
                found, core.settings.max_answer_bytes, text=isinstance(query, TextQuery)
            )
        except ServiceError as e:
            return error_response(e.status, e.message, e.headers)
        count = {"X-HKP-Results-Count": str(len(found)), **_CORS, **origin_headers(found)}
        # ``armored`` is the published form when any identity is attested, else the
        # identity-free one; email and text searches only find published forms. One
        # armor block for all of them (OpenPGP.js reads only the first), streamed.
        return one_block(
            [c.armored for c in found], _KEYS_TYPE, {"Cache-Control": "no-cache", **count}
        )
    count = {"X-HKP-Results-Count": str(len(found)), **_CORS, **origin_headers(found)}
    now = core.clock()
    if p.json:
        return Response(
            json.dumps(_json_index(found, uids, now)), media_type="application/json", headers=count
        )
    if p.machine:
        return PlainTextResponse(machine_index(found, uids, now), headers=count)
    response = page(
        request,
        "hkp_index.html",
        search=p.search,
        keys=[_html_key(c, uids.get(c.id, []), now, p.fingerprint) for c in found],
    )
    response.headers.update(count)
    return response


async def _hget(core: Core, digest: str, audience: Audience) -> Response:
    d = digest.strip()
    if d[:2].lower() == "0x":
        d = d[2:]
    if not _DIGEST.match(d):
        raise InvalidQuery("op=hget takes an SKS key digest: 32 hexadecimal digits.")
    found = await run_in_threadpool(core.by_digest, d, audience)
    if found is None:
        raise NotFound("No key has this digest")
    return Response(found.armored, media_type=_KEYS_TYPE, headers=_CORS)


async def _stats(request: Request, core: Core, p: _Lookup) -> Response:
    counts = await run_in_threadpool(core.stats)
    recon = getattr(request.app.state, "recon", None)
    peers: list[dict[str, object]] = recon.stats() if recon is not None else []
    if p.machine or p.json:
        body = {
            "software": "Attester",
            "version": __version__,
            "total": counts["keys"],
            "published_addresses": counts["published_addresses"],
            "text_search": core.settings.hkp_text_search,
            "peers": peers,  # SKS/Hockeypuck reconciliation partners
        }
        return Response(json.dumps(body), media_type="application/json", headers=_CORS)
    keys, addresses = counts["keys"], counts["published_addresses"]
    response = page(
        request,
        "message.html",
        heading="Server statistics",
        message=f"Attester {__version__}: {keys} key{'' if keys == 1 else 's'}, "
        f"{addresses} published address{'' if addresses == 1 else 'es'}."
        + (f" Recon peers: {', '.join(str(x['reconAddr']) for x in peers)}." if peers else ""),
    )
    response.headers.update(_CORS)
    return response


# ---- index formats


def escape_uid(raw: bytes) -> str:
    """A user ID for the machine-readable index: ``%XX`` for ``:``, ``%`` and every byte
    that is not printable 7-bit ASCII (the colon separates fields, and clients decode
    the bytes themselves, as UTF-8 or otherwise)."""
    return "".join(
        chr(b) if 0x20 <= b <= 0x7E and b not in (0x25, 0x3A) else f"%{b:02X}" for b in raw
    )


def _ts(t: datetime | None) -> str:
    return str(int(t.timestamp())) if t is not None else ""


def _expired(c: StoredCert, now: datetime) -> bool:
    return c.expires is not None and c.expires <= now


def _published(uids: list[StoredUserID]) -> list[StoredUserID]:
    # The core lists what each certificate is served with (attested here, or published by
    # the peer a copy came from); a revoked user ID is never listed.
    return [u for u in uids if not u.revoked]


def machine_index(
    found: list[StoredCert], uids: dict[int, list[StoredUserID]], now: datetime
) -> str:
    """The ``options=mr`` index (draft-shaw-openpgp-hkp-00 §5), ``\\n`` line ends."""
    lines = [f"info:1:{len(found)}"]
    for c in found:
        flags = ("r" if c.revoked else "") + ("e" if _expired(c, now) else "")
        fields = [c.fingerprint.hex, str(c.algorithm), str(c.bits), _ts(c.created)]
        lines.append(":".join(["pub", *fields, _ts(c.expires), flags]))
        for u in _published(uids.get(c.id, [])):
            lines.append(f"uid:{escape_uid(u.raw or u.uid.encode())}:{_ts(u.created)}::")
    return "\n".join(lines) + "\n"


def _json_index(
    found: list[StoredCert], uids: dict[int, list[StoredUserID]], now: datetime
) -> dict[str, object]:
    return {
        "count": len(found),
        "keys": [
            {
                "fingerprint": c.fingerprint.hex,
                "algorithm": c.algorithm,
                "algorithm_name": c.algorithm_name,
                "bits": c.bits,
                "created": int(c.created.timestamp()),
                "expires": int(c.expires.timestamp()) if c.expires else None,
                "revoked": c.revoked,
                "expired": _expired(c, now),
                "user_ids": [
                    {"uid": u.uid, "created": int(u.created.timestamp())}
                    for u in _published(uids.get(c.id, []))
                ],
            }
            for c in found
        ],
    }


def _html_key(
    c: StoredCert, uids: list[StoredUserID], now: datetime, full_fingerprint: bool
) -> dict[str, object]:
    flags = [f for f, on in (("revoked", c.revoked), ("expired", _expired(c, now))) if on]
    return {
        "fingerprint": c.fingerprint.hex,
        "label": c.fingerprint.grouped() if full_fingerprint else c.fingerprint.key_id.hex,
        "algorithm": f"{c.algorithm_name}{c.bits}",
        "created": c.created.date().isoformat(),
        "flags": ", ".join(flags),
        "uids": [u.uid for u in _published(uids)],
    }


# ---- POST /pks/add


def _keytext(content_type: str, body: bytes) -> bytes:
    """The ``keytext`` field of an ``application/x-www-form-urlencoded`` body, wherever it
    is among the fields (SKS only reads it when it comes first)."""
    media = content_type.split(";", 1)[0].strip().lower()
    if media and media != "application/x-www-form-urlencoded":
        raise BadRequest(
            f"Send the key as an application/x-www-form-urlencoded form, not {media[:60]}."
        )
    try:
        fields = parse_qsl(body, keep_blank_values=True, max_num_fields=100)
    except ValueError as e:
        raise BadRequest("The form has too many fields.") from e
    texts = [v for k, v in fields if k == b"keytext"]
    if not texts or not any(t.strip() for t in texts):
        raise BadRequest(
            "The form field keytext is missing or empty: send keytext=<the ASCII-armored "
            "public key, URL-encoded>."
        )
    return b"\n".join(texts)


async def add(request: Request) -> Response:
    service: Attestation = request.app.state.attestation
    sends_mail: bool = request.app.state.settings.hkp_add_sends_mail
    try:
        await limit_mail_requests(request)
        keytext = _keytext(request.headers.get("content-type", ""), await read_body(request))
        upload = await run_in_threadpool(
            lambda: service.submit.keyring(keytext, "hkp", request_verify=sends_mail)
        )
    except ServiceError as e:
        return error_response(e.status, e.message, e.headers)
    wake_mailer(request)
    status = 200 if upload.added else 400
    headers = dict(_CORS)
    if sends_mail and any(a.limited for a in upload.added):
        # Keys were stored, but a mail limit held some verification mails back.
        status = 429
        headers["Retry-After"] = str(max(1, request.app.state.settings.mail_rate_window_seconds))
    return PlainTextResponse(add_report(upload, sends_mail), status_code=status, headers=headers)


def add_report(upload: KeyringUpload, sends_mail: bool) -> str:
    """What ``/pks/add`` did, one paragraph per key. dirmngr only looks at the status,
    but people using curl read this."""
    out: list[str] = []
    for a in upload.added:
        out.append(f"Key {a.fingerprint}: {a.result.value}{', revoked' if a.revoked else ''}.")
        for email, state in a.addresses.items():
            if email in a.refused:
                out.append(f"  {email}: not published: {a.refused[email]}")
            elif state is AddressState.PUBLISHED:
                out.append(f"  {email}: published.")
            elif state is AddressState.REVOKED:
                out.append(f"  {email}: revoked, not published.")
            elif email in a.mailed or state is AddressState.PENDING:
                # The same words whether the mail went out now or earlier in the window.
                out.append(
                    f"  {email}: a verification email was sent for this key; the address "
                    "is published once the link in it is followed."
                )
            elif sends_mail:
                out.append(
                    f"  {email}: not published; no verification email was sent: "
                    f"{a.limited.get(email, 'too many were sent recently')}"
                )
            else:
                out.append(
                    f"  {email}: not published; this server publishes an address only after "
                    "its owner verifies it, and sends no verification email for HKP uploads."
                )
    for r in upload.rejected:
        out.append(f"Rejected{f' key {r.fingerprint}' if r.fingerprint else ''}: {r.reason}")
    return "\n".join(out) + "\n"


# ---- POST /pks/hashquery


def parse_hashquery(body: bytes) -> list[str]:
    """The digests of an SKS hashquery request: ``count``, then ``count`` times ``len``
    and that many bytes, integers 4-byte big-endian. Bytes after the last hash are
    ignored, as SKS does."""
    if len(body) < 4:
        raise BadRequest("A hashquery body starts with a 4-byte count.")
    (count,) = struct.unpack_from(">I", body)
    if count * (4 + _MD5_LEN) > len(body) - 4:
        raise BadRequest(f"The hashquery body is too short for {count} hashes.")
    out: list[str] = []
    pos = 4
    for _ in range(count):
        if pos + 4 > len(body):
            raise BadRequest("The hashquery body ends inside a hash.")
        (n,) = struct.unpack_from(">I", body, pos)
        if n != _MD5_LEN or pos + 4 + n > len(body):
            raise BadRequest("Each hash of a hashquery is a 16-byte MD5 key digest.")
        out.append(body[pos + 4 : pos + 4 + n].hex())
        pos += 4 + n
    return out


def hashquery_body(certificates: list[bytes]) -> bytes:
    parts = [struct.pack(">I", len(certificates))]
    for data in certificates:
        parts += [struct.pack(">I", len(data)), data]
    parts.append(b"\r\n")
    return b"".join(parts)


async def hashquery(request: Request) -> Response:
    core: Core = request.app.state.core
    peers = request.app.state.settings.sync_peers
    client = request.client.host if request.client else ""
    recon = getattr(request.app.state, "recon", None)
    if "*" not in peers and client not in peers and not (recon and recon.is_partner(client)):
        # Full certificates carry unverified addresses: only configured sync peers (and
        # recon peers) get them.
        return error_response(403, "hashquery is only open to this server's sync peers.")
    try:
        digests = parse_hashquery(await read_body(request))
        found = await run_in_threadpool(
            core.certificates_by_digest,
            digests,
            core.settings.hashquery_max_bytes,
            audience_of(request),
        )
    except ServiceError as e:
        return error_response(e.status, e.message, e.headers)
    return Response(
        hashquery_body(found),
        media_type="pgp/keys",
        headers={"X-HKP-Results-Count": str(len(found)), **_CORS},
    )


def routes() -> list[Route]:
    return [
        Route("/pks/lookup", lookup, methods=["GET", "HEAD"]),
        Route("/pks/add", add, methods=["POST"]),
        Route("/pks/hashquery", hashquery, methods=["POST"]),
    ]
