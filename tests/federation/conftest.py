"""Fixtures of the federation tests: the server under test (on both database backends,
with a hand-moved clock) and the peers it federates with."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import NamedTuple

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import create_engine, select

from attester.config import Settings
from attester.store.db import normalise_url
from attester.store.schema import certs, user_ids
from tests.federation.directory import Directory, slapd
from tests.federation.peers import AttesterPeer, Clock, attester_peer, settings_with
from tests.support.server import AppServer, Server

Serve = Callable[..., AbstractContextManager[Server]]


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def serve(settings: Settings, clock: Clock) -> Serve:
    """Start this server with federation settings changed (``upstreams=[...]``...)."""

    @contextmanager
    def start(**update: object) -> Iterator[Server]:
        with AppServer.start(settings_with(settings, **update), clock=clock) as live:
            yield live

    return start


@pytest.fixture
def openpgp_org(tmp_path: Path) -> Iterator[AttesterPeer]:
    """A second Attester on loopback, acting as keys.openpgp.org (VKS)."""
    with attester_peer(tmp_path / "keys.openpgp.org") as peer:
        yield peer


@pytest.fixture(scope="session")
def directory() -> Iterator[Directory]:
    """One real slapd for the session (tests add the entries they need, each under
    addresses of its own); stopped at the end of the session."""
    with slapd() as d:
        yield d


@pytest.fixture
def silent_server() -> Iterator[str]:
    """A TCP server on loopback that accepts connections and never answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def run() -> None:
        sock.settimeout(0.1)
        while not stop.is_set():
            try:
                accepted.append(sock.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield f"ldap://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(5)
        for c in accepted:
            c.close()
        sock.close()


def ldap(name: str, url: str, **extra: object) -> dict[str, object]:
    return {"name": name, "kind": "ldap", "url": url, **extra}


def vks(name: str, url: str, **extra: object) -> dict[str, object]:
    return {"name": name, "kind": "vks", "url": url, **extra}


def hkp(name: str, url: str, **extra: object) -> dict[str, object]:
    return {"name": name, "kind": "hkp", "url": url, **extra}


def metric(live: Server, name: str, **labels: str) -> float:
    """The sum of the server's /metrics samples with this name and these labels (0 when
    none has been recorded yet)."""
    text = live.client.get("/metrics").text
    return sum(
        float(sample.value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
    )


class Stored(NamedTuple):
    sources: dict[str, str]  # fingerprint -> certs.source
    attested: list[str]  # addresses attested here (federation must never add one)


def stored(settings: Settings) -> Stored:
    """What the store of the server under test holds."""
    engine = create_engine(normalise_url(settings.database_url))
    try:
        with engine.connect() as c:
            sources = {r.fingerprint: r.source for r in c.execute(select(certs))}
            q = select(user_ids.c.email).where(user_ids.c.attested_at.is_not(None))
            attested = [r.email for r in c.execute(q)]
    finally:
        engine.dispose()
    return Stored(sources, attested)
