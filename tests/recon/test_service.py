"""The recon service against misbehaving peers (a real SKS never misbehaves, so these
are small asyncio servers on loopback speaking the protocol wrongly on purpose), and
the allow-list of incoming connections.

Whatever such a peer does, only keys that pass validation are stored, the session ends,
the peer is counted in the metrics, and the tree still matches the stored keys."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Awaitable, Callable
from pathlib import Path

from prometheus_client import CollectorRegistry
from sqlalchemy import select

from attester.config import Settings, load_settings
from attester.openpgp import sks_digest
from attester.openpgp._packets import encode_packets, split_packets
from attester.recon.field import element
from attester.recon.service import Report
from attester.recon.session import Channel, Limits, exchange_config
from attester.recon.wire import Config, Done, Elements, Flush, ReconRqstFull, encode
from attester.service.core import Core
from attester.service.recon import recon_service
from attester.store.db import open_database, upgrade
from attester.store.recon import ReconStore
from attester.store.schema import certs
from tests.support.keys import TestKey

ROGUE = "127.0.0.3"
SKS_CONFIG = Config("1.1.6", 0, 2, 5, "yminsky.dedup,yminsky.merge")

Behaviour = Callable[[Channel], Awaitable[None]]


STOP = "stop"  # the asyncio.Event a behaviour may wait on: set when the test is done


async def _rogue(
    behaviour: Behaviour, hashquery_answer: bytes, stop: asyncio.Event
) -> tuple[asyncio.Server, asyncio.Server]:
    """A recon listener that exchanges configurations properly and then does
    ``behaviour``, and an HTTP server answering every request with ``hashquery_answer``."""

    async def http(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(
            next(
                (
                    line.split(b":")[1]
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length")
                ),
                b"0",
            )
        )
        await reader.readexactly(length)
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: pgp/keys\r\n"
            + f"Content-Length: {len(hashquery_answer)}\r\nConnection: close\r\n\r\n".encode()
            + hashquery_answer
        )
        await writer.drain()
        writer.close()

    web = await asyncio.start_server(http, ROGUE, 0)
    http_port = web.sockets[0].getsockname()[1]

    async def recon(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        channel = Channel(reader, writer, Limits(timeout=5))
        try:
            await exchange_config(channel, Config("1.1.6", http_port, 2, 5, SKS_CONFIG.filters))
            await behaviour(channel)
            await channel.drain()
            await stop.wait()
        except Exception:
            pass
        finally:
            writer.close()

    return await asyncio.start_server(recon, ROGUE, 0), web


def _settings(tmp: Path, **extra: object) -> Settings:
    s = load_settings(
        None,
        database_url=f"sqlite:///{tmp / 'a.db'}",
        recon_peers=[{"address": f"{ROGUE}:1", "name": "rogue"}],
        recon_timeout_seconds=2,
        **extra,
    )
    db = open_database(s.database_url)
    upgrade(db)
    db.dispose()
    return s


def _sync(settings: Settings, behaviour: Behaviour, answer: bytes) -> tuple[Report, str]:
    db = open_database(settings.database_url)
    core = Core(settings, db)
    registry = CollectorRegistry()

    async def run() -> Report:
        stop = asyncio.Event()
        _stops.append(stop)
        recon_srv, web = await _rogue(behaviour, answer, stop)
        port = recon_srv.sockets[0].getsockname()[1]
        service = recon_service(core, registry)
        try:
            peer = service.peers[0].model_copy(update={"address": f"{ROGUE}:{port}"})
            return await service.sync(peer)
        finally:
            await service.close()
            stop.set()
            await asyncio.sleep(0.05)  # let the rogue's handlers end
            for srv in (recon_srv, web):
                srv.close()
                await srv.wait_closed()

    try:
        report = asyncio.run(run())
    finally:
        db.dispose()
    from prometheus_client import generate_latest

    return report, generate_latest(registry).decode()


_stops: list[asyncio.Event] = []


def _stored(settings: Settings) -> list[str]:
    db = open_database(settings.database_url)
    with db.reader.connect() as c:
        out = [r[0] for r in c.execute(select(certs.c.digest))]
    assert ReconStore(db).check().ok  # no harm to the tree
    db.dispose()
    return out


def _hashquery_answer(*keys: bytes) -> bytes:
    return (
        struct.pack(">I", len(keys))
        + b"".join(struct.pack(">I", len(k)) + k for k in keys)
        + b"\r\n"
    )


def test_garbage_and_unrequested_keys_are_dropped(tmp_path: Path) -> None:
    good = TestKey.generate("Good <good@example.org>").public
    # A key without its self-signatures: it parses, but validation refuses it.
    broken = encode_packets(
        [p for p in split_packets(TestKey.generate("Broken <b@example.org>").public) if p.tag != 2]
    )
    unasked = TestKey.generate("Unasked <unasked@example.org>").public
    claimed = [bytes.fromhex(sks_digest(k)) for k in (good, bytes(broken))]
    claimed.append(bytes(16 * [7]))  # a digest of no key at all

    async def drive(c: Channel) -> None:
        # The rogue drives: it holds those three, we hold nothing.
        c.write(ReconRqstFull("", frozenset(element(d) for d in claimed)))
        c.write(Flush())
        await c.drain()
        await c.read()  # our Elements (nothing)
        c.write(Done())

    answer = _hashquery_answer(good, bytes(broken), unasked, b"\x99garbage")
    report, metrics = _sync(_settings(tmp_path), drive, answer)
    assert report.completed and report.missing_here == 3
    assert report.recovered["new"] == 1  # only the good key
    assert report.recovered["rejected"] == 2  # the broken key, the garbage
    assert report.recovered["unrequested"] == 1
    assert report.recovered["not_returned"] == 1  # the digest of no key
    assert _stored(_settings(tmp_path)) == [sks_digest(good)]
    assert 'attester_recon_recovered_keys_total{peer="rogue",result="rejected"} 2.0' in metrics


def test_endless_and_oversized_peers_are_cut_off(tmp_path: Path) -> None:
    async def endless(c: Channel) -> None:
        for i in range(100_000):
            c.write(Elements(frozenset({i + 1 << 64})))
            if i % 1000 == 0:
                await c.drain()

    report, metrics = _sync(
        _settings(tmp_path, recon_max_missing=500), endless, _hashquery_answer()
    )
    assert report.truncated and report.missing_here == 500
    assert 'attester_recon_limits_exceeded_total{limit="elements",peer="rogue"} 1.0' in metrics
    assert _stored(_settings(tmp_path)) == []

    async def oversized(c: Channel) -> None:
        c.send(struct.pack(">I", 50_000_000) + b"\x02")

    report, metrics = _sync(_settings(tmp_path), oversized, b"")
    assert report.outcome == "limit" and "50000000 bytes" in report.problem
    assert 'attester_recon_limits_exceeded_total{limit="message_bytes",peer="rogue"} 1.0' in metrics
    assert 'outcome="limit"' in metrics

    async def silent(c: Channel) -> None:
        await _stops[-1].wait()

    report, metrics = _sync(_settings(tmp_path), silent, b"")
    assert report.outcome == "timeout"

    async def garbage(c: Channel) -> None:
        c.send(b"\x00\x00\x00\x03\x63\x63\x63")

    report, _ = _sync(_settings(tmp_path), garbage, b"")
    assert report.outcome == "protocol_error" and "unknown message type 99" in report.problem
    assert _stored(_settings(tmp_path)) == []


def test_connections_from_unknown_addresses_are_refused(tmp_path: Path) -> None:
    settings = load_settings(
        None,
        database_url=f"sqlite:///{tmp_path / 'a.db'}",
        recon_address="127.0.0.2",
        recon_port=0,
        recon_peers=[{"address": f"{ROGUE}:11370", "name": "friend"}],
        recon_gossip_seconds=0,
    )
    db = open_database(settings.database_url)
    upgrade(db)
    core = Core(settings, db)
    registry = CollectorRegistry()

    async def run() -> tuple[bytes, bytes]:
        service = recon_service(core, registry)
        await service.start()
        try:
            port = service.port
            assert port
            # From 127.0.0.1: not a partner; closed before any configuration is sent.
            r, w = await asyncio.open_connection("127.0.0.2", port, local_addr=("127.0.0.1", 0))
            stranger = await asyncio.wait_for(r.read(), 5)
            w.close()
            # From the friend's address: it gets our configuration.
            r, w = await asyncio.open_connection("127.0.0.2", port, local_addr=(ROGUE, 0))
            friend = await asyncio.wait_for(r.read(4), 5)
            w.close()
            return stranger, friend
        finally:
            await service.close()

    stranger, friend = asyncio.run(run())
    db.dispose()
    assert stranger == b"" and len(friend) == 4
    from prometheus_client import generate_latest

    text = generate_latest(registry).decode()
    assert 'attester_recon_refused_connections_total{reason="not_a_partner"} 1.0' in text
    assert encode(SKS_CONFIG)  # the codec the friend would speak
