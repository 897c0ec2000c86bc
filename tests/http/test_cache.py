"""Lookup answers are kept until the stored keys change, on both databases: a write of
this process at once, another process's write (its own connection) through the database's
change feed; every kept answer has an ETag, and a matching If-None-Match gets 304."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import anyio.from_thread
import httpx
from pysequoia import Tsk
from starlette.applications import Starlette

from attester.app import create_app
from attester.config import Settings, Upstream
from attester.http.cache import AnswerCache
from attester.service.attestation import Attestation
from attester.service.core import Core
from attester.store.db import open_database
from tests.support.clock import Clock
from tests.support.keys import TestKey


class Client:
    def __init__(self, app: Starlette, portal: anyio.from_thread.BlockingPortal) -> None:
        self.app = app
        self._portal = portal
        self._client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://keys.example.org"
        )

    def get(self, url: str, **kwargs: Any) -> httpx.Response:
        response: httpx.Response = self._portal.call(partial(self._client.get, url, **kwargs))
        return response

    @property
    def cache(self) -> AnswerCache:
        cache: AnswerCache = self.app.state.answer_cache
        return cache


@contextmanager
def serving(settings: Settings, clock: Clock | None = None) -> Iterator[Client]:
    app = create_app(settings, clock) if clock else create_app(settings)
    with (
        anyio.from_thread.start_blocking_portal() as portal,
        portal.wrap_async_context_manager(app.router.lifespan_context(app)),
    ):
        client = Client(app, portal)
        yield client
        portal.call(client._client.aclose)


@contextmanager
def other_process(settings: Settings) -> Iterator[Attestation]:
    """A writer with a connection of its own, as another app server or the CLI has."""
    db = open_database(settings.database_url)
    try:
        yield Attestation.build(Core(settings, db))
    finally:
        db.dispose()


def _eventually(check: Any, seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "the change did not reach the server"
        time.sleep(0.05)


def test_a_kept_answer_is_reused_until_a_write(settings: Settings) -> None:
    key = TestKey.generate("Kay <kay@example.org>")
    with serving(settings) as client:
        client.app.state.attestation.imports.keyring(key.public, attest_emails=True)
        url = f"/vks/v1/by-fingerprint/{key.fingerprint}"
        first = client.get(url)
        hits = client.cache.hits
        again = client.get(url)
        assert first.status_code == again.status_code == 200
        assert again.content == first.content and again.headers["etag"] == first.headers["etag"]
        assert client.cache.hits == hits + 1
        # A client revalidating its copy gets 304 with the same tag.
        cached = client.get(url, headers={"If-None-Match": first.headers["etag"]})
        assert cached.status_code == 304 and cached.content == b""
        assert cached.headers["etag"] == first.headers["etag"]
        # A write of this process: the next answer is computed again, and differs.
        client.app.state.attestation.imports.keyring(key.revoked_public())
        changed = client.get(url)
        assert changed.status_code == 200 and changed.content != first.content
        assert changed.headers["etag"] != first.headers["etag"]


def test_a_kept_answer_is_made_again_when_a_key_it_serves_expires(settings: Settings) -> None:
    """The one thing in an answer that moves with time alone is whether a key has expired
    (HKP's "e" flag): an answer is kept no longer than that, however long the age limit."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        tsk = Tsk.generate(user_ids=["Exp <exp@example.org>"], validity_seconds=3600)
    key = TestKey(tsk, tsk.extract_certificate())
    clock = Clock()
    with serving(settings.model_copy(update={"answer_cache_seconds": 86400}), clock) as client:
        client.app.state.attestation.imports.keyring(key.public, attest_emails=True)
        url = "/pks/lookup?op=index&options=mr&search=exp@example.org"
        first = client.get(url)
        pub = [line for line in first.text.splitlines() if line.startswith("pub:")]
        assert pub and not pub[0].endswith("e")
        clock.advance(1800)  # half an hour on: still kept
        hits = client.cache.hits
        assert client.get(url).content == first.content
        assert client.cache.hits == hits + 1
        clock.advance(3600)  # past the key's expiry, long before the age limit
        later = client.get(url)
        pub = [line for line in later.text.splitlines() if line.startswith("pub:")]
        assert pub and pub[0].endswith(":e"), later.text
        assert later.headers["etag"] != first.headers["etag"]


def test_answers_past_their_age_are_served_at_once_and_made_again_behind(
    settings: Settings,
) -> None:
    """Each answer's age limit is drawn between 90% and 100% of ``answer_cache_seconds``,
    so answers kept in one burst do not age out in one burst; and the request that finds
    one past it is answered from the cache at once while the app makes it again in the
    background. Past twice the setting nothing old is served."""
    keys = [TestKey.generate(f"K{i} <k{i}@example.org>") for i in range(20)]
    clock = Clock()
    with serving(settings.model_copy(update={"answer_cache_seconds": 100}), clock) as client:
        for key in keys:
            client.app.state.attestation.imports.keyring(key.public, attest_emails=True)
        urls = [f"/vks/v1/by-fingerprint/{key.fingerprint}" for key in keys]
        first = {url: client.get(url) for url in urls}
        assert all(r.status_code == 200 for r in first.values())

        def every_url() -> int:
            """Ask for each URL, letting each refresh finish; how many were refreshed."""
            before, hits = client.cache.refreshes, client.cache.hits
            for url in urls:
                assert client.get(url).content == first[url].content
                _eventually(lambda: client.cache.refreshing == 0)
            assert client.cache.hits - hits == len(urls)  # every one served from the cache
            return client.cache.refreshes - before

        clock.advance(95)
        aged = every_url()
        assert 0 < aged < len(urls)  # some aged by now, not all (chance: ~2 in 10^6)
        clock.advance(6)  # past every first age limit; those made again at 95 s are fresh
        assert every_url() == len(urls) - aged
        clock.advance(250)  # past twice the limit: made again on the request's time
        hits, refreshes = client.cache.hits, client.cache.refreshes
        for url in urls:
            assert client.get(url).status_code == 200
        assert client.cache.hits == hits and client.cache.refreshes == refreshes


def test_another_process_write_reaches_the_kept_answers(settings: Settings, tmp_path: Path) -> None:
    """The operator imports with the CLI, a process of its own: the server learns of it
    through the database (SQLite's data_version, PostgreSQL's NOTIFY)."""
    key = TestKey.generate("Oto <oto@example.org>")
    (tmp_path / "oto.asc").write_bytes(key.public)
    env = {**os.environ, "ATTESTER_DATABASE_URL": settings.database_url}
    with serving(settings) as client:
        for url in (f"/pub/{key.fingerprint}", "/pub/oto@example.org"):
            assert client.get(url).status_code == 404
        subprocess.run(
            [
                sys.executable,
                "-m",
                "attester",
                "import",
                "--attest-emails",
                str(tmp_path / "oto.asc"),
            ],
            env=env,
            check=True,
            capture_output=True,
            timeout=120,
        )
        _eventually(lambda: client.get("/pub/oto@example.org").status_code == 200)
        assert client.get(f"/pub/{key.fingerprint}").status_code == 200


def test_writers_in_the_same_process_are_known_at_once(settings: Settings) -> None:
    """Every Database of one process on the same database shares one change feed: a write
    through another one (a test's fixture, a CLI command in the server's process) is
    known at once, with no wait for the database to tell."""
    key = TestKey.generate("Ona <ona@example.org>")
    with serving(settings) as client:
        assert client.get("/pub/ona@example.org").status_code == 404
        with other_process(settings) as writer:
            writer.imports.keyring(key.public, attest_emails=True)
        assert client.get("/pub/ona@example.org").status_code == 200


def test_every_lookup_protocol_keeps_its_answers(settings: Settings) -> None:
    from attester.openpgp.wkd import wkd_hash

    key = TestKey.generate("Pia <pia@example.org>")
    urls = [
        "/pub/pia@example.org",
        f"/pks/lookup?op=get&options=mr&search=0x{key.fingerprint}",
        "/pks/lookup?op=index&options=mr&search=pia@example.org",
        "/vks/v1/by-email/pia@example.org",
        f"/vks/v1/by-keyid/{key.key_id}",
        f"/.well-known/openpgpkey/example.org/hu/{wkd_hash('pia')}",
    ]
    with serving(settings) as client:
        client.app.state.attestation.imports.keyring(key.public, attest_emails=True)
        for url in urls:
            first = client.get(url)
            assert first.status_code == 200, (url, first.text)
            hits = client.cache.hits
            assert client.get(url).content == first.content
            assert client.cache.hits == hits + 1, url


def test_what_is_never_kept(settings: Settings) -> None:
    key = TestKey.generate("Quin <quin@example.org>")
    with serving(settings) as client:
        client.app.state.attestation.imports.keyring(key.public, attest_emails=True)
        for url in (
            "/pks/lookup?op=index&options=mr&search=quin",  # text search: rate-limited
            "/pks/lookup?op=index&search=quin@example.org",  # an HTML page
            "/pks/lookup?op=stats&options=mr",
        ):
            client.get(url)
            hits = client.cache.hits
            client.get(url)
            assert client.cache.hits == hits, url


def test_cors_headers_follow_the_request(settings: Settings) -> None:
    """A browser's request (with Origin) never gets an answer kept for a request
    without one, which the CORS middleware answers without CORS headers."""
    narrowed = settings.model_copy(update={"cors_origins": ("https://app.example",)})
    key = TestKey.generate("Rue <rue@example.org>")
    with serving(narrowed) as client:
        client.app.state.attestation.imports.keyring(key.public, attest_emails=True)
        plain = client.get("/pub/rue@example.org")
        assert "access-control-allow-origin" not in plain.headers
        browser = client.get("/pub/rue@example.org", headers={"Origin": "https://app.example"})
        assert browser.headers["access-control-allow-origin"] == "https://app.example"


def test_not_found_is_not_kept_while_upstreams_could_answer(settings: Settings) -> None:
    peer = Upstream(name="peer", kind="vks", url="http://127.0.0.1:9", timeout_seconds=0.2)
    upstream = settings.model_copy(update={"upstreams": (peer,)})
    with serving(upstream) as client:
        client.get("/vks/v1/by-email/nobody@example.org")
        hits = client.cache.hits
        client.get("/vks/v1/by-email/nobody@example.org")
        assert client.cache.hits == hits


def test_the_fast_path_answers_as_the_middleware_would(settings: Settings) -> None:
    """With every origin allowed and a policy that makes no difference of who asks, a
    kept answer goes out before any middleware; it must carry exactly the headers the
    CORS middleware gives the same answer on the way through."""
    key = TestKey.generate("Sam <sam@example.org>")
    names = (
        "access-control-allow-origin",
        "access-control-expose-headers",
        "vary",
        "etag",
        "content-type",
        "x-attester-origin",
        "content-length",
    )
    with serving(settings) as client:
        client.app.state.attestation.imports.keyring(key.public, attest_emails=True)
        for origin in ({"Origin": "https://mail.example"}, {}):
            for url in ("/pub/sam@example.org", f"/vks/v1/by-fingerprint/{key.fingerprint}"):
                slow = client.get(url, headers=origin)
                hits = client.cache.hits
                fast = client.get(url, headers=origin)
                assert client.cache.hits == hits + 1
                assert fast.content == slow.content
                for name in names:
                    assert fast.headers.get(name) == slow.headers.get(name), (url, name)


def test_a_policy_reload_drops_the_kept_answers(settings: Settings) -> None:
    """What a lookup answers depends on the policy (here: several keys per address), so
    a reload makes every kept answer go, as a write does."""
    several = settings.model_copy(update={"multiple_keys_per_address": True})
    one = settings.model_copy(update={"multiple_keys_per_address": False})
    a, b = TestKey.generate("Tia <tia@example.org>"), TestKey.generate("Tia <tia@example.org>")
    app = create_app(several, reload=lambda: one)
    with (
        anyio.from_thread.start_blocking_portal() as portal,
        portal.wrap_async_context_manager(app.router.lifespan_context(app)),
    ):
        client = Client(app, portal)
        for key in (a, b):
            app.state.attestation.imports.keyring(key.public, attest_emails=True)
        assert client.get("/pub/tia@example.org").text.count("BEGIN PGP PUBLIC KEY") == 2
        assert client.get("/pub/tia@example.org").text.count("BEGIN PGP PUBLIC KEY") == 2
        app.state.core.policy.reload()
        assert client.get("/pub/tia@example.org").text.count("BEGIN PGP PUBLIC KEY") == 1
        portal.call(client._client.aclose)
