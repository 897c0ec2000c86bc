"""Parsing certificates in a pool of worker processes (issue 10 item 7, issue 11).

Sequoia canonicalises holding the GIL, so a slow upload parsed in one of the app's threads
stalls every lookup of that process. Here parsing runs in other processes: a slow input
costs one worker, the event loop and the lookup threads keep running, and imports use
every core (``map_batches``) while the main process writes.

- ``call(fn, *args)``: run one pure function of ``attester.openpgp`` (``parse_certificate``,
  ``parse_keyring``, ``merge``...) in a worker and wait for it; for the service layer,
  which runs in threads. At most ``workers`` calls are in the pool at a time, so the
  ``timeout`` counts from when a worker takes the input: a worker that runs longer is
  killed with the rest of its pool (``ProcessPoolExecutor`` cannot kill one worker),
  a fresh pool takes over, and the input is refused (``ParseTimeout``). Calls that were
  running beside it are run again once on the fresh pool.
- ``parse(fn, *args)``: the same from async code, without holding a thread.
- ``map_batches(fn, batches)``: one call per batch, ``(batch, result)`` in input order, with at most
  ``in_flight`` batches submitted and not yet consumed, so memory stays flat however long
  the input.

``InProcess`` has the same interface and runs everything in the calling thread (tests and
tools that need no pool).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Protocol, TypeVar

from attester.openpgp import CertificateError, Limits, ParsedCert, Rejected, parse_keyring
from attester.service.errors import BadRequest, Unavailable

T = TypeVar("T")
B = TypeVar("B")
M = TypeVar("M")


class ParseTimeout(BadRequest):
    """The input took longer to parse than ``parse_timeout_seconds``."""

    status = 413


class Parser(Protocol):
    workers: int  # how many inputs it parses at once

    def call(self, fn: Callable[..., T], *args: Any) -> T: ...

    async def parse(self, fn: Callable[..., T], *args: Any) -> T: ...

    def map_batches(
        self, fn: Callable[[B], T], batches: Iterable[tuple[M, B]], in_flight: int = ...
    ) -> Iterator[tuple[M, T]]: ...


class InProcess:
    """Parsing in the calling thread: no isolation, no timeout."""

    workers = 1

    def call(self, fn: Callable[..., T], *args: Any) -> T:
        return fn(*args)

    async def parse(self, fn: Callable[..., T], *args: Any) -> T:
        return fn(*args)

    def map_batches(
        self, fn: Callable[[B], T], batches: Iterable[tuple[M, B]], in_flight: int = 0
    ) -> Iterator[tuple[M, T]]:
        for meta, batch in batches:
            yield meta, fn(batch)


def parse_each(
    blobs: Sequence[bytes], limits: Limits
) -> list[list[ParsedCert | Rejected] | CertificateError]:
    """``parse_keyring`` of each blob (one certificate of a dump each, usually), or the
    error that refused it whole: one batch of an import, run in a worker."""
    out: list[list[ParsedCert | Rejected] | CertificateError] = []
    for blob in blobs:
        try:
            out.append(parse_keyring(blob, limits))
        except CertificateError as e:
            out.append(e)
    return out


# Workers yield the CPU to the process answering lookups when cores are short: a parse
# may take a while longer, a lookup may not.
WORKER_NICENESS = 10


def _init_worker() -> None:
    """Worker initializer: lower priority (``WORKER_NICENESS``), and exit when the process
    that started the pool is gone."""
    os.nice(WORKER_NICENESS)
    _watch_owner()


def _watch_owner() -> None:
    """Exit when the process that started the pool is gone, killed
    with SIGKILL, say. ``ProcessPoolExecutor`` workers otherwise wait for work forever,
    orphaned: each holds both ends of its call queue and the write end of the
    forkserver's liveness pipe (so the forkserver stays too), and the dead process's
    output pipes with them. ``parent_process()`` is the pool's owner (the forkserver only
    forked us), and its sentinel is a pipe that closes when the owner dies, even while it
    is a zombie nobody reaped yet."""
    owner = multiprocessing.parent_process()
    if owner is None:
        return

    def watch() -> None:
        assert owner is not None
        owner.join()
        os._exit(0)

    threading.Thread(target=watch, name="attester-owner-watch", daemon=True).start()


def _warm() -> int:
    # Imported once per worker before the first input, so the first upload does not pay
    # for loading pysequoia.
    import attester.openpgp  # noqa: F401

    return os.getpid()


class ParsePool:
    def __init__(self, workers: int | None = None, timeout: float = 10.0) -> None:
        self.workers = workers or os.cpu_count() or 1
        self.timeout = timeout
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(self.workers)
        self._executor: ProcessPoolExecutor | None = None
        self._closed = False

    # ---- lifecycle
    def _new_executor(self) -> ProcessPoolExecutor:
        # forkserver: workers start from a clean process that imported only the OpenPGP
        # core, never a copy of the app's threads, sockets or database connections.
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(["attester.openpgp"])
        return ProcessPoolExecutor(
            max_workers=self.workers,
            mp_context=ctx,
            initializer=_init_worker,
        )

    def start(self) -> ParsePool:
        """Start the workers (and wait until each has loaded the OpenPGP core)."""
        ex = self._current()
        for f in [ex.submit(_warm) for _ in range(self.workers)]:
            f.result()
        return self

    def close(self) -> None:
        with self._lock:
            self._closed = True
            ex, self._executor = self._executor, None
        if ex is not None:
            ex.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> ParsePool:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _current(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._closed:
                raise Unavailable("The server is shutting down; try again shortly.")
            if self._executor is None:
                self._executor = self._new_executor()
            return self._executor

    def _replace(self, broken: ProcessPoolExecutor) -> None:
        """Kill ``broken``'s workers (one of them is stuck) and start a fresh pool, unless
        another caller did so already."""
        fresh = None
        with self._lock:
            if self._executor is broken and not self._closed:
                self._executor = fresh = self._new_executor()
        processes = list((getattr(broken, "_processes", None) or {}).values())
        for p in processes:
            if p.is_alive():
                p.kill()
        broken.shutdown(wait=False, cancel_futures=True)
        if fresh is not None:
            # Workers start now, not inside the next caller's timeout.
            for f in [fresh.submit(_warm) for _ in range(self.workers)]:
                f.result()

    # ---- one input
    def call(self, fn: Callable[..., T], *args: Any) -> T:
        with self._slots:
            for attempt in (1, 2):
                ex = self._current()
                try:
                    future = ex.submit(fn, *args)
                    return future.result(timeout=self.timeout)
                except FutureTimeout:
                    self._replace(ex)
                    raise ParseTimeout(
                        f"The key took longer than {self.timeout:g} seconds to read and was "
                        "refused; it is too large or too complex for this server."
                    ) from None
                except BrokenProcessPool:
                    # Killed beside a timed-out input, or this input crashed its worker:
                    # try once more on a fresh pool.
                    self._replace(ex)
                    if attempt == 2:
                        raise BadRequest(
                            "The key could not be read: parsing it stopped its worker."
                        ) from None
        raise AssertionError("unreachable")

    async def parse(self, fn: Callable[..., T], *args: Any) -> T:
        # The wait happens in a thread of its own, not in the app's thread pool, so
        # uploads waiting for a worker never hold a thread that lookups need.
        loop = asyncio.get_running_loop()
        done: asyncio.Future[T] = loop.create_future()

        def run() -> None:
            try:
                result = self.call(fn, *args)
            except BaseException as e:  # handed to the waiting coroutine
                loop.call_soon_threadsafe(_settle, done, None, e)
            else:
                loop.call_soon_threadsafe(_settle, done, result, None)

        threading.Thread(target=run, name="attester-parse", daemon=True).start()
        return await done

    # ---- batches (imports)
    def map_batches(
        self, fn: Callable[[B], T], batches: Iterable[tuple[M, B]], in_flight: int = 0
    ) -> Iterator[tuple[M, T]]:
        """For each ``(meta, batch)``, ``(meta, fn(batch))`` in input order: ``fn`` runs in
        a worker and only ``batch`` travels there. At most ``in_flight`` (default twice the
        workers) batches are submitted ahead of the one the caller is consuming. No
        timeout: imports are the operator's own input; a batch that breaks the pool is run
        again once."""
        limit = in_flight or 2 * self.workers
        pending: deque[tuple[M, B, Future[T]]] = deque()
        it = iter(batches)
        exhausted = False
        while True:
            while not exhausted and len(pending) < limit:
                try:
                    meta, batch = next(it)
                except StopIteration:
                    exhausted = True
                    break
                pending.append((meta, batch, self._current().submit(fn, batch)))
            if not pending:
                return
            meta, batch, future = pending.popleft()
            try:
                result = future.result()
            except BrokenProcessPool:
                self._replace(self._current())
                result = self._current().submit(fn, batch).result()
                # Everything submitted to the broken pool goes again, in order.
                pending = deque((m, b, self._current().submit(fn, b)) for m, b, _ in pending)
            yield meta, result


def _settle(done: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if done.cancelled():
        return
    if error is not None:
        done.set_exception(error)
    else:
        done.set_result(result)
