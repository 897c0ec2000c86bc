"""Knowing when stored keys may have changed, so answers computed from them can be reused
until then (``attester.http.cache``).

``Changes.current()`` is a number that moves whenever the data lookups read may have
changed, whoever changed it:

- a write transaction of this process (``KeyStore.write``) moves it when it commits;
- another process's writes (several ``attester serve`` workers, the CLI, another app
  server on the same PostgreSQL) move it too, once ``watch()`` runs: on SQLite through
  ``PRAGMA data_version``, which changes when another connection commits and costs a few
  microseconds to read, so it is read on every call; on PostgreSQL through
  ``LISTEN attester_changes``, which every write transaction notifies (the notification is
  delivered at commit, never for a rolled-back transaction).

On SQLite ``data_version`` is read at most once per ``SQLITE_RECHECK_SECONDS`` (2 ms):
read on every call it was a sixth of the time of answering a kept lookup, and another
process's write is seen within those 2 ms (PostgreSQL's notifications take about as long
to arrive).

While the PostgreSQL listener is not connected, nothing can be known about other
processes' writes, so ``current()`` answers a new number each time: nothing is reused.

Every ``Database`` of one process opened on the same database shares one feed
(``changes_for``): a write through any of them is known to all at once, as it is to the
app that shares its process with a CLI command or a test.
"""

from __future__ import annotations

import itertools
import logging
import os
import sqlite3
import threading
import time
import uuid
import weakref
from typing import Any

log = logging.getLogger("attester.store")

CHANNEL = "attester_changes"


class Changes:
    def __init__(self) -> None:
        self._counter = itertools.count(1)  # next() is atomic under the GIL
        self._value = next(self._counter)
        # Sent with this feed's own notifications: it bumped at commit already, and hearing
        # them later would throw away answers computed since.
        self.sender = uuid.uuid4().hex
        self._watchers = 0

    def bump(self) -> None:
        """Stored data may have changed (a write committed)."""
        self._value = next(self._counter)

    def current(self) -> int:
        return self._value

    def watch(self) -> None:
        """Start noticing other processes' writes (a running app calls this, and
        ``unwatch`` when it stops; the feed watches while anyone wants it)."""
        with _REGISTRY_LOCK:
            self._watchers = self._watchers + 1
            if self._watchers == 1:
                self._start()

    def unwatch(self) -> None:
        with _REGISTRY_LOCK:
            self._watchers = self._watchers - 1
            if self._watchers == 0:
                self._stop()

    def _start(self) -> None:
        pass

    def _stop(self) -> None:
        pass


SQLITE_RECHECK_SECONDS = 0.002


class SQLiteChanges(Changes):
    def __init__(self, path: str) -> None:
        super().__init__()
        self._path = path
        self._conn: sqlite3.Connection | None = None
        self._seen: int | None = None
        self._checked = 0.0  # time.monotonic() of the last read of data_version
        self._lock = threading.Lock()

    def _start(self) -> None:
        conn = sqlite3.connect(self._path, check_same_thread=False, isolation_level=None)
        conn.execute("PRAGMA busy_timeout=1000")
        self._conn = conn
        self._seen = self._data_version()

    def _data_version(self) -> int | None:
        if self._conn is None:
            return None
        try:
            row = self._conn.execute("PRAGMA data_version").fetchone()
        except sqlite3.Error:
            return None  # unknown: treated as a change
        return int(row[0])

    def current(self) -> int:
        if self._conn is not None:
            now = time.monotonic()
            if now - self._checked >= SQLITE_RECHECK_SECONDS:
                with self._lock:
                    self._checked = now
                    seen = self._data_version()
                    if seen is None or seen != self._seen:
                        self._seen = seen
                        self.bump()
        return self._value

    def _stop(self) -> None:
        if self._conn is not None:
            with self._lock:
                self._conn.close()
                self._conn = None


class PostgresChanges(Changes):
    def __init__(self, url: str) -> None:
        super().__init__()
        self._url = url  # a libpq URL (postgresql://...), for psycopg directly
        self._thread: threading.Thread | None = None
        self._stop_event = threading.Event()
        self._listening = False

    def _start(self) -> None:
        self._stop_event = threading.Event()
        self._thread = threading.Thread(target=self._listen, name="changes", daemon=True)
        self._thread.start()

    def current(self) -> int:
        if not self._listening and self._thread is not None:
            self.bump()  # blind while the listener is down: reuse nothing
        return self._value

    def _listen(self) -> None:
        import psycopg

        while not self._stop_event.is_set():
            try:
                with psycopg.connect(self._url, autocommit=True, connect_timeout=5) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    self._listening = True
                    self.bump()  # whatever happened while it was down
                    while not self._stop_event.is_set():
                        for note in conn.notifies(timeout=1.0):
                            if note.payload != self.sender:
                                self.bump()
            except Exception as e:  # reconnect; meanwhile current() reuses nothing
                if self._listening:
                    log.warning("lost the change notifications of the database: %s", e)
                self._listening = False
                self._stop_event.wait(1.0)
            finally:
                self._listening = False

    def _stop(self) -> None:
        self._stop_event.set()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None


_REGISTRY_LOCK = threading.RLock()
_FEEDS: weakref.WeakValueDictionary[str, Changes] = weakref.WeakValueDictionary()


def changes_for(url: Any) -> Changes:
    """The change feed of the database at a SQLAlchemy URL (``sqlalchemy.engine.URL``),
    one per database in this process."""
    if url.get_backend_name() == "sqlite":
        if url.database in (None, "", ":memory:"):
            return Changes()
        key = "sqlite:" + os.path.realpath(url.database)
    else:
        key = url.set(drivername="postgresql").render_as_string(hide_password=False)
    with _REGISTRY_LOCK:
        feed = _FEEDS.get(key)
        if feed is None:
            feed = (
                SQLiteChanges(key[len("sqlite:") :])
                if key.startswith("sqlite:")
                else (PostgresChanges(key))
            )
            _FEEDS[key] = feed
        return feed
