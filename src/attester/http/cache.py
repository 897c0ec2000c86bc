"""Lookup answers reused until the stored keys change.

A lookup's answer depends on nothing but its URL, the request headers its ``Vary``
names, and the stored keys; it is a few kilobytes of precomputed armor. So an adapter
that has built one marks it ``reusable(request)``, and ``AnswerCache`` keeps it, keyed by
the URL, until ``Database.changes`` moves (any write of this process at once, other
processes' writes as ``store.changes`` learns of them). A request whose answer is kept is
answered right after the access guard (who may ask, and as which audience: part of the
key), before routing or any thread, or, while neither the guard nor CORS could change the
answer, before any middleware at all (``answer_kept``, called by ``attester.app``): that
is what makes lookups cheap. Every kept answer carries an ``ETag``; a request whose
``If-None-Match`` names it gets 304 (a reverse proxy or client revalidating its copy).

Not kept: anything an adapter did not mark (uploads, pages, text searches, errors other
than "not found"), HEAD requests, and what upstreams decide (a "not found" while
upstreams are configured, an answer resting on an upstream's word): the upstream cache
says when to ask them again. A kept answer is made again once a key it serves expires (an
index's "expired" flag moves with time alone), and refreshed after
``answer_cache_seconds`` even when nothing was written: the request that finds it past that
age still gets it at once, while the app makes it again in the background (nginx's
``proxy_cache_background_update``). Answers made in one burst would otherwise all be made
again in one burst, each on a request's time. Each answer's age limit is drawn a little
short of the setting, and past twice the setting an answer is not served at all.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import random
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from attester.http.access import AUDIENCE_KEY
from attester.store.changes import Changes
from attester.store.views import OriginKind, StoredCert

_FLAG = "attester.reusable"
_TURNS = "attester.reusable_turns"  # when the answer changes with time alone (or None)
_REFRESH = "attester.refresh"  # a background refresh: make the answer, do not look it up
_REFRESHES = 4  # background refreshes at once per process; a stale answer waits for a slot

log = logging.getLogger("attester.http")


def reusable(request: Request, served: Sequence[StoredCert] = ()) -> None:
    """This request's answer (serving ``served``) depends only on its URL, the stored
    keys, and whether each served key has expired: it may be kept until they change or
    the next of those expiry dates passes, unless it rests on an upstream's word (the
    upstream cache decides when to ask again)."""
    if not any(c.origin.kind is OriginKind.UPSTREAM for c in served):
        state = request.scope.setdefault("state", {})
        state[_FLAG] = True
        dates = [c.expires for c in served if c.expires is not None]
        state[_TURNS] = min(dates) if dates else None


def reusable_miss(request: Request) -> None:
    """This request found nothing, and no other request would with the same stored keys:
    kept, unless an upstream could answer it later."""
    if not request.app.state.settings.upstreams:
        request.scope.setdefault("state", {})[_FLAG] = True


@dataclass(frozen=True)
class _Entry:
    generation: int
    made: datetime  # on the app's clock
    until: datetime  # its age limit: served after it only while it is made again
    turns: datetime | None  # a served key's expiry: never served from then on
    status: int
    headers: tuple[tuple[bytes, bytes], ...]  # with content-length and etag
    body: bytes
    etag: bytes


Key = tuple[bytes, bytes, str, tuple[bytes | None, ...]]


class AnswerCache:
    """Kept answers, least recently used out first past ``max_entries`` or ``max_bytes``."""

    def __init__(
        self,
        changes: Changes,
        max_entries: int,
        max_bytes: int,
        max_age: float,
        clock: Callable[[], datetime],
    ) -> None:
        self.changes = changes
        # The clock answers are computed with (``Core.clock``): what ages them.
        self.clock = clock
        self.max_age = timedelta(seconds=max_age)
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._entries: OrderedDict[Key, _Entry] = OrderedDict()
        self._vary: dict[tuple[bytes, bytes], tuple[bytes, ...]] = {}
        self._bytes = 0
        self.hits = self.misses = self.refreshes = 0
        self._refreshing: set[Key] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    def _key(self, scope: Scope, headers: dict[bytes, bytes], audience: str) -> Key | None:
        url = (scope.get("raw_path") or scope["path"].encode(), scope["query_string"])
        names = self._vary.get(url)
        if names is None:
            return None
        return (*url, audience, tuple(headers.get(n) for n in names))

    def get(
        self,
        scope: Scope,
        headers: dict[bytes, bytes],
        generation: int,
        audience: str,
        app: ASGIApp | None = None,
    ) -> _Entry | None:
        """The answer kept for this request, or None. One past its age limit is returned
        too, and made again in the background by ``app`` (the whole application)."""
        if scope.get("state", {}).get(_REFRESH):
            return None  # the refresh itself
        key = self._key(scope, headers, audience)
        entry = self._entries.get(key) if key is not None else None
        now = self.clock()
        if (
            key is None
            or entry is None
            or entry.generation != generation
            or now < entry.made
            or (entry.turns is not None and now >= entry.turns)
            or now >= entry.until + self.max_age
        ):
            self.misses += 1
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        if now >= entry.until and app is not None:
            self._refresh(key, scope, app)
        return entry

    @property
    def refreshing(self) -> int:
        """Background refreshes under way."""
        return len(self._refreshing)

    def _refresh(self, key: Key, scope: Scope, app: ASGIApp) -> None:
        """Make the answer for ``scope`` again in the background: the same request through
        the whole application, its answer kept and sent nowhere. At most ``_REFRESHES`` at
        once, one per answer; the stale answer is served meanwhile."""
        if key in self._refreshing or len(self._refreshing) >= _REFRESHES:
            return
        self._refreshing.add(key)
        self.refreshes += 1
        fresh: Scope = {**scope, "state": {_REFRESH: True}}

        async def no_body() -> Message:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def nowhere(message: Message) -> None:
            pass

        async def run() -> None:
            try:
                await app(fresh, no_body, nowhere)
            except Exception:  # the stale answer ages out on its own; say why it was not made
                log.exception("refreshing a kept answer failed")
            finally:
                self._refreshing.discard(key)

        task = asyncio.get_running_loop().create_task(run())
        self._tasks.add(task)  # kept alive until done
        task.add_done_callback(self._tasks.discard)

    def put(
        self,
        scope: Scope,
        headers: dict[bytes, bytes],
        generation: int,
        audience: str,
        start: Message,
        body: bytes,
        turns: datetime | None = None,
    ) -> _Entry | None:
        """Keep an answer (``turns``: when it would change with time alone, if ever).
        Each answer's age limit is drawn between 90% and 100% of ``max_age``, so answers
        made together are not all made again in the same second."""
        raw = [(bytes(k).lower(), bytes(v)) for k, v in start.get("headers", [])]
        vary: list[bytes] = []
        for k, v in raw:
            if k == b"vary":
                vary += [n.strip().lower() for n in v.split(b",") if n.strip()]
        if b"*" in vary:
            return None
        etag = b'"' + hashlib.blake2b(body, digest_size=12).hexdigest().encode() + b'"'
        dropped = (b"content-length", b"etag", b"date", b"server")
        kept = (
            *((k, v) for k, v in raw if k not in dropped),
            (b"content-length", str(len(body)).encode()),
            (b"etag", etag),
        )
        made = self.clock()
        until = made + self.max_age * random.uniform(0.9, 1.0)
        if turns is not None and turns <= made:
            turns = None  # already past: the answer says so, and time changes it no further
        entry = _Entry(generation, made, until, turns, start["status"], kept, body, etag)
        if len(body) > self.max_bytes // 16:
            return entry  # answered, not kept: one answer may not crowd out the rest
        url = (scope.get("raw_path") or scope["path"].encode(), scope["query_string"])
        # Host always counts: WKD's direct method serves the Host's domain without saying
        # so in Vary. (CORS headers are the outer middleware's, added to every answer.)
        self._vary[url] = (b"host", *(n for n in vary if n != b"host"))
        key = self._key(scope, headers, audience)
        assert key is not None
        old = self._entries.pop(key, None)
        if old is not None:
            self._bytes -= len(old.body)
        self._entries[key] = entry
        self._bytes += len(body)
        while self._entries and (
            len(self._entries) > self.max_entries or self._bytes > self.max_bytes
        ):
            _, gone = self._entries.popitem(last=False)
            self._bytes -= len(gone.body)
        return entry


class AnswerCacheMiddleware:
    """Answers kept lookups before routing (the app's ``answer_cache`` state, made in its
    lifespan); keeps the answers adapters mark ``reusable``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        cache: AnswerCache | None = None
        if scope["type"] == "http" and scope["method"] == "GET":
            cache = getattr(scope["app"].state, "answer_cache", None)
        if cache is None:
            await self.app(scope, receive, send)
            return
        headers = {bytes(k).lower(): bytes(v) for k, v in scope["headers"]}
        generation = cache.changes.current()
        # Who asks may change the answer (a domain kept inside): the audience the access
        # guard found is part of the key.
        audience = str(scope.get("state", {}).get(AUDIENCE_KEY, ""))
        entry = cache.get(scope, headers, generation, audience, scope.get("app"))
        if entry is not None:
            await _answer(send, entry, headers.get(b"if-none-match"))
            return
        state: dict[str, Any] = scope.setdefault("state", {})
        start: Message | None = None
        chunks: list[bytes] = []

        async def capture(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                if state.get(_FLAG) and message["status"] in (200, 404):
                    start = message  # held until the body is complete
                    return
                await send(message)
                return
            if start is None or message["type"] != "http.response.body":
                await send(message)
                return
            chunks.append(message.get("body", b""))
            if message.get("more_body", False):
                return
            body = b"".join(chunks)
            entry = cache.put(scope, headers, generation, audience, start, body, state.get(_TURNS))
            if entry is None:
                await send(start)
                await send({"type": "http.response.body", "body": body})
            else:
                await _answer(send, entry, headers.get(b"if-none-match"))

        await self.app(scope, receive, capture)


async def answer_kept(
    cache: AnswerCache, app: ASGIApp, scope: Scope, send: Send, audience: str, expose: bytes
) -> bool:
    """Answer ``scope`` from ``cache`` before any middleware (the fast path of ``app``,
    ``attester.app``), adding what the CORS middleware would for an application that
    allows every origin (``expose``: its Access-Control-Expose-Headers); False when
    nothing is kept for it, or the request carries cookies (then CORS differs)."""
    headers = {bytes(k).lower(): bytes(v) for k, v in scope["headers"]}
    if b"cookie" in headers:
        return False
    entry = cache.get(scope, headers, cache.changes.current(), audience, app)
    if entry is None:
        return False
    extra: tuple[tuple[bytes, bytes], ...] = ()
    if b"origin" in headers:
        vary = [v for k, v in entry.headers if k == b"vary"]
        extra = (
            (b"access-control-allow-origin", b"*"),
            (b"access-control-expose-headers", expose),
            (b"vary", b", ".join([*vary, b"Origin"])),
        )
    await _answer(send, entry, headers.get(b"if-none-match"), extra)
    return True


async def _answer(
    send: Send,
    entry: _Entry,
    if_none_match: bytes | None,
    extra: tuple[tuple[bytes, bytes], ...] = (),
) -> None:
    if if_none_match is not None and entry.status == 200 and _matches(if_none_match, entry.etag):
        kept = tuple(
            (k, v)
            for k, v in entry.headers
            if k in (b"etag", b"cache-control", b"vary", b"access-control-allow-origin")
        )
        await send({"type": "http.response.start", "status": 304, "headers": _with(kept, extra)})
        await send({"type": "http.response.body", "body": b""})
        return
    await send(
        {
            "type": "http.response.start",
            "status": entry.status,
            "headers": _with(entry.headers, extra),
        }
    )
    await send({"type": "http.response.body", "body": entry.body})


def _matches(if_none_match: bytes, etag: bytes) -> bool:
    tags = [t.strip().removeprefix(b"W/") for t in if_none_match.split(b",")]
    return etag in tags or b"*" in tags


def _with(
    headers: tuple[tuple[bytes, bytes], ...], extra: tuple[tuple[bytes, bytes], ...]
) -> tuple[tuple[bytes, bytes], ...]:
    """``headers`` with those of ``extra`` replacing any of the same name."""
    if not extra:
        return headers
    names = {k for k, _ in extra}
    return (*(h for h in headers if h[0] not in names), *extra)
