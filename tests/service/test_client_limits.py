"""Rate limits per client address (issue 10 items 8 and 21): requests that can send mail
and text searches, on every surface, with 429, ``Retry-After`` and a sentence; counters in
memory or shared through the real Redis on 127.0.0.1:6379."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import httpx
import pytest

from attester.config import ConfigError, Settings, load_settings
from attester.service.attestation import Attestation
from attester.service.client_limits import ClientLimits
from attester.service.errors import RateLimited
from tests.support.asgi import InProcess, in_process
from tests.support.keys import TestKey
from tests.support.server import LiveServer

REDIS = "redis://127.0.0.1:6379"


def _limited(settings: Settings, **update: str) -> Settings:
    return settings.model_copy(update=update)


def _assert_429(r: httpx.Response, what: str) -> None:
    assert r.status_code == 429, (r.status_code, r.text[:300])
    assert int(r.headers["retry-after"]) >= 1
    assert f"Too many {what} from your address" in r.text


def test_limits_count_per_client_and_say_when_to_retry() -> None:
    limits = ClientLimits("memory://", "2/minute", "1/second")
    limits.mail_request("192.0.2.1")
    limits.mail_request("192.0.2.1")
    with pytest.raises(RateLimited) as e:
        limits.mail_request("192.0.2.1")
    assert e.value.status == 429
    assert 1 <= int(e.value.headers["Retry-After"]) <= 60
    assert "at most 2 per minute" in e.value.message
    limits.mail_request("192.0.2.2")  # another client has its own count
    limits.search("192.0.2.1")  # and searches their own


def test_rates_are_validated_when_settings_load() -> None:
    with pytest.raises(ConfigError, match="no rate such as"):
        load_settings(None, rate_limit_mail_requests="ten a minute")
    with pytest.raises(ConfigError, match="memory:// or a redis:// URL"):
        load_settings(None, rate_limit_storage_url="memcached://localhost")


_KEY = TestKey.generate("Rae <rae@example.org>")

# One request of each surface that can send mail; the third one from a client is refused.
MAIL_SURFACES: dict[str, Callable[[InProcess], httpx.Response]] = {
    "flowcrypt-pub": lambda c: c.request(
        "POST", "/pub/rae@example.org", content=_KEY.armored.encode()
    ),
    "vks-upload": lambda c: c.request("POST", "/vks/v1/upload", json={"keytext": _KEY.armored}),
    "vks-request-verify": lambda c: c.request(
        "POST", "/vks/v1/request-verify", json={"token": "x", "addresses": []}
    ),
    "hkp-add": lambda c: c.request("POST", "/pks/add", data={"keytext": _KEY.armored}),
    "manage-json": lambda c: c.request("POST", "/manage", json={"email": "rae@example.org"}),
}


@pytest.mark.parametrize("surface", sorted(MAIL_SURFACES))
def test_mail_requests_are_limited_per_client_on_every_surface(
    settings: Settings, surface: str
) -> None:
    send = MAIL_SURFACES[surface]
    with in_process(_limited(settings, rate_limit_mail_requests="2/minute")) as client:
        for _ in range(2):
            assert send(client).status_code != 429
        _assert_429(send(client), "requests that send email")


def test_web_upload_form_is_limited(settings: Settings) -> None:
    with in_process(_limited(settings, rate_limit_mail_requests="1/minute")) as client:
        form = {"keytext": _KEY.armored}
        client.request("POST", "/upload", data=form, headers={"origin": "http://testserver"})
        r = client.request("POST", "/upload", data=form, headers={"origin": "http://testserver"})
        _assert_429(r, "requests that send email")
        assert r.headers["content-type"].startswith("text/html")


@pytest.fixture
def published(attestation: Attestation) -> TestKey:
    key = TestKey.generate("Searchable Person <searchable@example.org>")
    summary = attestation.imports.keyring(key.public, attest_emails=True)
    assert summary.attested == 1
    return key


def test_text_searches_are_limited_per_client(settings: Settings, published: TestKey) -> None:
    with in_process(_limited(settings, rate_limit_text_search="2/minute")) as client:
        for _ in range(2):
            r = client.get("/pks/lookup", params={"op": "index", "search": "searchable"})
            assert r.status_code == 200
        r = client.get("/pks/lookup", params={"op": "index", "search": "searchable"})
        _assert_429(r, "text searches")
        # Lookups by address are no text search: not counted.
        r = client.get("/pks/lookup", params={"op": "get", "search": "searchable@example.org"})
        assert r.status_code == 200
        # The web search box shares the count.
        r = client.get("/search", params={"q": "searchable"})
        _assert_429(r, "text searches")


def test_forwarded_client_addresses_are_counted_apart(settings: Settings) -> None:
    """Behind a proxy in ``forwarded_allow_ips`` (uvicorn trusts 127.0.0.1 here), each
    client behind it has its own count."""
    with LiveServer.start(_limited(settings, rate_limit_text_search="1/minute")) as live:

        def search(client: str) -> int:
            r = live.client.get(
                "/pks/lookup",
                params={"op": "index", "search": "nobody"},
                headers={"x-forwarded-for": client},
            )
            return r.status_code

        assert search("198.51.100.1") == 404
        assert search("198.51.100.1") == 429
        assert search("198.51.100.2") == 404


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    prefix = f"attester-test-{uuid.uuid4().hex}"
    yield prefix
    ClientLimits(REDIS, "1/minute", "1/minute", prefix).reset()  # delete this run's keys


def test_redis_counters_are_shared_between_app_servers(
    settings: Settings, redis_prefix: str
) -> None:
    shared = _limited(
        settings,
        rate_limit_storage_url=REDIS,
        rate_limit_key_prefix=redis_prefix,
        rate_limit_text_search="2/minute",
    )
    with in_process(shared) as one, in_process(shared) as two:
        assert one.get("/pks/lookup", params={"op": "index", "search": "nobody"}).status_code == 404
        assert two.get("/pks/lookup", params={"op": "index", "search": "nobody"}).status_code == 404
        r = one.get("/pks/lookup", params={"op": "index", "search": "nobody"})
        _assert_429(r, "text searches")
        _assert_429(
            two.get("/pks/lookup", params={"op": "index", "search": "nobody"}), "text searches"
        )
    # Another deployment (prefix) on the same Redis counts on its own.
    other = ClientLimits(REDIS, "1/minute", "1/minute", redis_prefix + "-other")
    try:
        other.search("127.0.0.1")
    finally:
        other.reset()


def test_unreachable_redis_lets_requests_through() -> None:
    limits = ClientLimits("redis://127.0.0.1:1", "1/minute", "1/minute")
    for _ in range(3):
        limits.mail_request("192.0.2.1")  # logged, not refused
