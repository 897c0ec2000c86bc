"""The parsing pool (``service/parsing.py``): uploads parsed in worker processes, a
timeout that kills and replaces a stuck worker, batches in order with bounded memory, and
lookups that stay fast while the worst accepted input is parsed (issue 10 item 7)."""

from __future__ import annotations

import pickle
import statistics
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from attester.config import Settings
from attester.openpgp import (
    ParsedCert,
    Rejected,
    Unparsable,
    armor,
    parse_certificate,
    parse_keyring,
)
from attester.service.parsing import ParsePool, ParseTimeout
from tests.openpgp import forge as f
from tests.support.asgi import in_process
from tests.support.server import LiveServer


@pytest.fixture(scope="module")
def pool() -> Iterator[ParsePool]:
    with ParsePool(2, timeout=5.0) as p:
        yield p


def _cert(name: str = "Alice") -> bytes:
    _, packets = f.simple_cert(f"{name} <{name.lower()}@example.org>".encode())
    return f.join(packets)


def test_parsed_certificates_cross_processes(pool: ParsePool) -> None:
    data = _cert()
    local = parse_certificate(data)
    assert pickle.loads(pickle.dumps(local)) == local
    assert pool.call(parse_certificate, data) == local
    # OpenPGP errors arrive as themselves, message included.
    with pytest.raises(Unparsable, match="neither binary OpenPGP"):
        pool.call(parse_certificate, b"not a key")


def test_timeout_kills_the_worker_and_the_pool_keeps_working() -> None:
    with ParsePool(1, timeout=0.3) as p:
        start = time.monotonic()
        with pytest.raises(ParseTimeout, match=r"longer than 0\.3 seconds") as e:
            p.call(time.sleep, 30)
        assert e.value.status == 413
        assert time.monotonic() - start < 5
        assert isinstance(p.call(parse_certificate, _cert()), ParsedCert)


def test_batches_come_back_in_order_with_bounded_read_ahead(pool: ParsePool) -> None:
    pulled = [0]
    blocks = [_cert(n) for n in ("Alice", "Bob", "Carol")]

    def batches() -> Iterator[tuple[int, bytes]]:
        for i in range(12):
            pulled[0] += 1
            yield i, blocks[i % 3] + (b"" if i % 4 else b"junk-is-not-openpgp")

    results = []
    for i, got in pool.map_batches(_keyring_or_error, batches(), in_flight=3):
        assert i == len(results)
        # Never more than in_flight batches submitted beyond the one being consumed.
        assert pulled[0] <= len(results) + 1 + 3
        results.append(got)
    assert len(results) == 12
    for i, got in enumerate(results):
        if i % 4 == 0:
            assert got == "Unparsable"
        else:
            assert isinstance(got, list) and isinstance(got[0], ParsedCert)
            assert got[0].user_ids[0].text.startswith(("Alice", "Bob", "Carol")[i % 3])


def _keyring_or_error(data: bytes) -> list[ParsedCert | Rejected] | str:
    try:
        return parse_keyring(data)
    except Unparsable:
        return "Unparsable"


def test_upload_over_the_parse_timeout_is_refused_and_the_app_recovers(
    settings: Settings,
) -> None:
    _, packets = f.worst_accepted()
    slow = armor(f.join(packets))
    fast = armor(_cert("Bob"))
    quick = settings.model_copy(update={"parse_timeout_seconds": 0.01, "parse_workers": 1})
    with in_process(quick) as client:
        r = client.request("POST", "/vks/v1/upload", json={"keytext": slow})
        assert r.status_code == 413, r.text
        assert "longer than 0.01 seconds" in r.text
    with in_process(settings.model_copy(update={"parse_workers": 1})) as client:
        r = client.request("POST", "/vks/v1/upload", json={"keytext": slow})
        assert r.status_code == 200, r.text
        assert client.request("POST", "/vks/v1/upload", json={"keytext": fast}).status_code == 200


def _lookup_latencies(client: httpx.Client, n: int) -> list[float]:
    out = []
    for _ in range(n):
        start = time.perf_counter()
        r = client.get("/pub/nobody@example.org")
        out.append(time.perf_counter() - start)
        assert r.status_code == 404
    return out


def _p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20)[-1]


def test_lookups_stay_fast_while_the_worst_accepted_input_is_parsed(settings: Settings) -> None:
    """Issue 10 item 7's target: no lookup waits more than 100 ms while the worst input
    the limits accept is being parsed. On a loaded shared machine the bound is
    max(100 ms, 5 x the idle p95), and the measurement is retried once; before the pool,
    each upload held the GIL for the whole parse (0.2 s of CPU here, seconds before the
    work bounds), and every lookup behind it waited as long."""
    _, packets = f.worst_accepted()
    keytext = armor(f.join(packets))
    with LiveServer.start(settings.model_copy(update={"parse_workers": 2})) as live:
        _lookup_latencies(live.client, 5)  # warm up
        failures = []
        for _attempt in range(2):
            idle = _lookup_latencies(live.client, 40)
            bound = max(0.1, 5 * _p95(idle))
            stop = threading.Event()
            parsed = [0]
            errors: list[str] = []

            def upload(stop: threading.Event, errors: list[str], parsed: list[int]) -> None:
                with httpx.Client(base_url=live.base_url, timeout=60) as c:
                    while not stop.is_set():
                        r = c.post("/vks/v1/upload", json={"keytext": keytext})
                        if r.status_code != 200:
                            errors.append(r.text)
                        parsed[0] += 1

            uploaders = [
                threading.Thread(target=upload, args=(stop, errors, parsed)) for _ in range(2)
            ]
            for t in uploaders:
                t.start()
            time.sleep(0.3)  # the uploads are being parsed
            busy = _lookup_latencies(live.client, 40)
            stop.set()
            for t in uploaders:
                t.join(60)
            assert not errors, errors[:1]
            assert parsed[0] >= 2, "the uploads did not run during the measurement"
            print(
                f"lookups idle p95 {_p95(idle) * 1000:.1f} ms; while parsing max "
                f"{max(busy) * 1000:.1f} ms, p95 {_p95(busy) * 1000:.1f} ms "
                f"({parsed[0]} uploads parsed)"
            )
            if max(busy) <= bound:
                return
            failures.append(
                f"max {max(busy) * 1000:.0f} ms > bound {bound * 1000:.0f} ms "
                f"(idle p95 {_p95(idle) * 1000:.1f} ms, {parsed[0]} uploads parsed)"
            )
        pytest.fail("; ".join(failures))
