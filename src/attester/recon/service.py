"""Reconciliation as ``attester serve`` runs it: a listener for the configured peers
(the allow-list), gossip with a random peer about every ``recon_gossip_seconds`` (±10 %),
and after every session the recovery of the keys we lack, in bundles of 100 over the
peer's ``/pks/hashquery``.

Steps of one session (``ReconService.sync`` when we connect, ``_accept`` when the peer
does):

1. Connect from ``recon_address`` (SKS accepts only its membership addresses), or take
   the connection if its address belongs to a configured peer.
2. Exchange configurations: we announce the peer's own ``version`` and ``filters``
   strings (Hockeypuck >= 2.2 accepts only its exact ones) and check the peer's as SKS
   does; a refusal ends the session with the refusing side's reason.
3. Reconcile: the accepting side drives (``session``).
4. Recover: ask the peer for the keys only it holds, skipping digests we stored already
   or received before (a key we store differently keeps a different digest, and asking
   again would not change that), and ingest what passes validation as ``recon:<peer>``.

The database is reached only through what is handed in: the tree (``TreeView``), the
ingest function and the known-digest test, each called in a worker thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import random
import socket
import time
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

import httpx
from anyio import to_thread

from attester import __version__
from attester.config import ReconPeer, Settings
from attester.outbound import tls_context
from attester.recon.errors import LimitExceeded, PeerError, ReconError
from attester.recon.field import digest_of
from attester.recon.metrics import ReconMetrics
from attester.recon.ptree import BITQUANTUM, MBAR, TreeView
from attester.recon.recovery import BUNDLE, hashquery
from attester.recon.session import Channel, Limits, Result, answer, drive, exchange_config
from attester.recon.wire import Config

log = logging.getLogger("attester.recon")

# Store what the peer sent, as ``recon:<peer>``: (peer, [(digest, key bytes)]) -> counts
# of new, updated, unchanged and rejected keys.
Ingest = Callable[[ReconPeer, list[tuple[str, bytes]]], Mapping[str, int]]
# Which of these digests are stored already, or were received before.
Known = Callable[[list[str]], set[str]]


@dataclass
class Report:
    """What one session and its recovery did (``attester recon sync`` prints it)."""

    peer: str
    role: str
    outcome: str = "ok"
    problem: str = ""
    missing_here: int = 0  # keys the peer has and we lacked
    missing_there: int = 0  # keys we told the peer it lacks (it fetches them from us)
    sample_there: list[str] = field(default_factory=list)
    requests: int = 0
    truncated: bool = False
    recovered: dict[str, int] = field(default_factory=dict)
    messages: dict[tuple[str, str], int] = field(default_factory=dict)  # (in|out, type)
    seconds: float = 0.0
    remote: Config | None = None

    @property
    def completed(self) -> bool:
        return self.outcome == "ok"


@dataclass
class PeerStatus:
    last_ok: datetime | None = None
    last_role: str = ""
    last_error: str = ""
    last_error_at: datetime | None = None


def _same_ip(a: str, b: str) -> bool:
    try:
        x, y = ipaddress.ip_address(a.split("%")[0]), ipaddress.ip_address(b.split("%")[0])
    except ValueError:
        return False
    if isinstance(x, ipaddress.IPv6Address) and x.ipv4_mapped:
        x = x.ipv4_mapped
    if isinstance(y, ipaddress.IPv6Address) and y.ipv4_mapped:
        y = y.ipv4_mapped
    return x == y


def _bind_address(settings: Settings) -> str | None:
    """The source address of outgoing connections: ``recon_address`` unless it is a
    wildcard (then the system chooses)."""
    a = settings.recon_address.strip()
    return a if a and a not in ("0.0.0.0", "::") else None


class ReconService:
    def __init__(
        self,
        settings: Settings,
        tree: TreeView,
        ingest: Ingest,
        known: Known,
        metrics: ReconMetrics,
    ) -> None:
        self.settings = settings
        self.tree = tree
        self.ingest = ingest
        self.known = known
        self.metrics = metrics
        self.peers = list(settings.recon_peers)
        self.limits = Limits(
            timeout=settings.recon_timeout_seconds,
            session_seconds=settings.recon_session_seconds,
            max_message_bytes=settings.recon_max_message_bytes,
            max_missing=settings.recon_max_missing,
        )
        self.status: dict[str, PeerStatus] = {p.label: PeerStatus() for p in self.peers}
        self._resolved: dict[str, list[str]] = {}  # peer host -> its addresses
        self._busy: set[str] = set()  # peers with a session running
        self._slots = asyncio.Semaphore(settings.recon_max_sessions)
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[object]] = set()
        bind = _bind_address(settings)
        self.http = httpx.AsyncClient(
            transport=(
                httpx.AsyncHTTPTransport(local_address=bind, verify=tls_context()) if bind else None
            ),
            headers={"User-Agent": f"Attester/{__version__} (recon)"},
            verify=tls_context(),
            follow_redirects=False,
        )

    # ---- lifecycle
    @property
    def port(self) -> int | None:
        """Where the listener accepts (after ``start``), or None without one."""
        if self._server is None or not self._server.sockets:
            return None
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def start(self) -> None:
        await self._resolve_all()
        if self.settings.recon_address.strip():
            self._server = await asyncio.start_server(
                self._accept, self.settings.recon_address.strip(), self.settings.recon_port
            )
            log.info("recon listening on %s:%s", self.settings.recon_address, self.port)
        if self.peers and self.settings.recon_gossip_seconds > 0:
            self._spawn(self._gossip())

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._server is not None:
            await self._server.wait_closed()
        await self.http.aclose()

    def _spawn(self, coro: Coroutine[object, object, object]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ---- partners
    async def _resolve_all(self) -> None:
        loop = asyncio.get_running_loop()
        for p in self.peers:
            try:
                ipaddress.ip_address(p.host)
                self._resolved[p.host] = [p.host]
                continue
            except ValueError:
                pass
            try:
                infos = await loop.getaddrinfo(p.host, None, type=socket.SOCK_STREAM)
                self._resolved[p.host] = sorted({str(i[4][0]) for i in infos})
            except OSError as e:
                log.warning("recon peer %s does not resolve: %s", p.label, e)

    def peer_for(self, ip: str) -> ReconPeer | None:
        """The configured peer this address belongs to (the allow-list)."""
        for p in self.peers:
            if any(_same_ip(ip, a) for a in self._resolved.get(p.host, [p.host])):
                return p
        return None

    def is_partner(self, ip: str) -> bool:
        """Whether a client is a recon peer (they may use ``/pks/hashquery``)."""
        return self.peer_for(ip) is not None

    def find(self, address: str) -> ReconPeer | None:
        for p in self.peers:
            if address in (p.address, p.name):
                return p
        return None

    def stats(self) -> list[dict[str, object]]:
        """The peers as ``op=stats`` lists them."""

        def when(t: datetime | None) -> str | None:
            return t.strftime("%Y-%m-%dT%H:%M:%SZ") if t else None

        out: list[dict[str, object]] = []
        for p in self.peers:
            s = self.status[p.label]
            out.append(
                {
                    "name": p.label,
                    "reconAddr": p.address,
                    "httpPort": p.http_port,
                    "lastRecon": when(s.last_ok),
                    "lastError": s.last_error or None,
                    "lastErrorAt": when(s.last_error_at),
                }
            )
        return out

    # ---- sessions
    def _our_config(self, peer: ReconPeer) -> Config:
        return Config(
            version=peer.version,
            http_port=self.settings.recon_http_port or self.settings.port,
            bitquantum=BITQUANTUM,
            mbar=MBAR,
            filters=peer.filters,
        )

    async def sync(self, peer: ReconPeer) -> Report:
        """One session with ``peer``, which we open (we answer), then recovery."""
        report = Report(peer.label, "answerer")
        self.status.setdefault(peer.label, PeerStatus())  # a peer named only for this call
        if peer.label in self._busy:
            report.outcome, report.problem = "busy", "a session with this peer is running"
            return report
        self._busy.add(peer.label)
        try:
            bind = _bind_address(self.settings)
            try:
                async with asyncio.timeout(self.settings.recon_timeout_seconds):
                    reader, writer = await asyncio.open_connection(
                        peer.host, peer.port, local_addr=(bind, 0) if bind else None
                    )
            except (OSError, TimeoutError) as e:
                report.outcome, report.problem = "unreachable", f"cannot connect: {e}"
                self._finish(peer, report)
                return report
            return await self._session(peer, reader, writer, report)
        finally:
            self._busy.discard(peer.label)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        ip = str(writer.get_extra_info("peername")[0])
        peer = self.peer_for(ip)
        if peer is None:
            log.warning("recon connection from %s refused: not a configured peer", ip)
            self.metrics.refused_connections.labels("not_a_partner").inc()
            writer.close()
            return
        if self._slots.locked() or peer.label in self._busy:
            self.metrics.refused_connections.labels("busy").inc()
            writer.close()
            return
        async with self._slots:
            self._busy.add(peer.label)
            try:
                await self._session(peer, reader, writer, Report(peer.label, "driver"))
            except Exception:  # one bad session must not take the listener down
                log.exception("recon session with %s failed", peer.label)
            finally:
                self._busy.discard(peer.label)

    async def _session(
        self,
        peer: ReconPeer,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        report: Report,
    ) -> Report:
        channel = Channel(reader, writer, self.limits)
        result: Result | None = None
        try:
            report.remote = await exchange_config(channel, self._our_config(peer))
            if report.role == "driver":
                result = await drive(channel, self.tree)
            else:
                result = await answer(channel, self.tree)
        except ReconError as e:
            report.outcome, report.problem = e.outcome, str(e)
            if isinstance(e, LimitExceeded):
                self.metrics.limits.labels(peer.label, e.limit).inc()
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
        if result is not None:
            self._account(peer, result, report)
            if report.remote is not None and result.missing:
                await self._recover(peer, report.remote, result.missing, report)
        self._finish(peer, report)
        return report

    def _account(self, peer: ReconPeer, result: Result, report: Report) -> None:
        report.missing_here = len(result.missing)
        report.missing_there = result.told
        report.sample_there = [digest_of(z).hex() for z in result.told_sample]
        report.requests = result.requests
        report.truncated = result.truncated
        report.seconds = result.seconds
        report.messages = dict(result.messages)
        m = self.metrics
        for (direction, kind), n in result.messages.items():
            m.messages.labels(peer.label, direction, kind).inc(n)
        m.session_seconds.labels(peer.label, result.role).observe(result.seconds)
        m.elements.labels(peer.label, "missing_here").inc(len(result.missing))
        m.elements.labels(peer.label, "missing_there").inc(result.told)
        if result.truncated:
            m.limits.labels(peer.label, "elements").inc()
            log.warning(
                "recon with %s: more than %d keys missing here; the rest waits for the "
                "next session",
                peer.label,
                self.limits.max_missing,
            )
        if result.error is not None:
            e = result.error
            report.outcome, report.problem = e.outcome, str(e)
            if isinstance(e, LimitExceeded):
                m.limits.labels(peer.label, e.limit).inc()

    def _finish(self, peer: ReconPeer, report: Report) -> None:
        self.metrics.sessions.labels(peer.label, report.role, report.outcome).inc()
        status = self.status[peer.label]
        now = datetime.now(UTC)
        if report.completed:
            status.last_ok, status.last_role = now, report.role
            self.metrics.last_success.labels(peer.label).set(time.time())
            log.info(
                "recon with %s (%s): %d missing here, %d told missing there, %s",
                peer.label,
                report.role,
                report.missing_here,
                report.missing_there,
                report.recovered or "nothing to recover",
            )
        else:
            status.last_error, status.last_error_at = report.problem, now
            log.warning("recon with %s (%s): %s", peer.label, report.role, report.problem)

    # ---- recovery
    async def _recover(
        self, peer: ReconPeer, remote: Config, missing: set[int], report: Report
    ) -> None:
        digests = sorted(digest_of(z).hex() for z in missing)
        known = await to_thread.run_sync(self.known, digests)
        todo = [d for d in digests if d not in known]
        counts = report.recovered
        counts["known"] = len(digests) - len(todo)
        host = f"[{peer.host}]" if ":" in peer.host else peer.host
        base = f"http://{host}:{peer.http_port or remote.http_port}"
        # An answer may hold up to 100 keys, each bounded like an upload.
        max_bytes = BUNDLE * self.settings.max_input_bytes
        for start in range(0, len(todo), BUNDLE):
            bundle = todo[start : start + BUNDLE]
            try:
                fetched = await hashquery(
                    self.http,
                    base,
                    bundle,
                    timeout=self.settings.recon_timeout_seconds,
                    max_bytes=max_bytes,
                )
            except PeerError as e:
                counts["not_returned"] = counts.get("not_returned", 0) + len(todo) - start
                if isinstance(e, LimitExceeded):
                    self.metrics.limits.labels(peer.label, e.limit).inc()
                if report.completed:
                    report.outcome, report.problem = e.outcome, f"recovery: {e}"
                break
            stored = await to_thread.run_sync(self.ingest, peer, fetched.keys)
            for k, v in stored.items():
                counts[k] = counts.get(k, 0) + v
            counts["not_returned"] = counts.get("not_returned", 0) + len(bundle) - len(fetched.keys)
            counts["unrequested"] = counts.get("unrequested", 0) + fetched.unrequested
            counts["rejected"] = counts.get("rejected", 0) + fetched.garbage
        for result, n in counts.items():
            if n:
                self.metrics.recovered.labels(peer.label, result).inc(n)

    # ---- gossip
    async def _gossip(self) -> None:
        interval = self.settings.recon_gossip_seconds
        while True:
            await asyncio.sleep(interval * random.uniform(0.9, 1.1))
            await self._resolve_all()
            peer = random.choice(self.peers)
            try:
                await self.sync(peer)
            except Exception:  # a bad round must not end gossip for good
                log.exception("recon gossip with %s failed", peer.label)
