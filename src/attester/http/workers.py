"""``attester serve --workers N``: N processes serving one listening socket.

The parent binds the socket, starts the workers (``spawn``: each imports Attester afresh),
restarts one that dies, passes SIGHUP on (each worker re-reads what it may reload) and
stops them on SIGINT/SIGTERM. Worker 0 also runs the jobs one server needs only once
(pull mirroring, reconciliation); every worker sends queued mail, since mail claims are
leased. The workers share nothing but the database: kept lookup answers follow its change
feed (``store.changes``), so N workers answer as one server.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import socket
import time
from collections.abc import Callable
from multiprocessing.context import SpawnProcess
from types import FrameType

log = logging.getLogger("attester")

Worker = Callable[[int, socket.socket], None]  # (index, listening socket)


def cpu_count() -> int:
    """The cores this process may run on (a taskset or cgroup pins fewer than exist)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def supervise(worker: Worker, sock: socket.socket, count: int) -> None:
    """Run ``count`` workers on ``sock`` until told to stop; returns when all have ended."""
    ctx = multiprocessing.get_context("spawn")
    procs: dict[int, SpawnProcess] = {}
    stopping = False

    def start(index: int) -> None:
        p = ctx.Process(target=worker, args=(index, sock), name=f"attester-worker-{index}")
        p.start()
        procs[index] = p

    def stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        for p in procs.values():
            if p.is_alive() and p.pid is not None:
                os.kill(p.pid, signal.SIGTERM)

    def hangup(signum: int, frame: FrameType | None) -> None:
        for p in procs.values():
            if p.is_alive() and p.pid is not None:
                os.kill(p.pid, signal.SIGHUP)

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGHUP, hangup)
    for i in range(count):
        start(i)
    while not stopping:
        time.sleep(0.5)
        for i, p in list(procs.items()):
            if not p.is_alive() and not stopping:
                log.warning("worker %d ended (exit code %s); starting it again", i, p.exitcode)
                start(i)
    for p in procs.values():
        p.join(15)
        if p.is_alive():
            p.kill()
