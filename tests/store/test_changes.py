"""The change feed of a SQLite database: another connection's commit moves it within
``SQLITE_RECHECK_SECONDS``; this process's own writes move it at once."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from attester.store.changes import SQLITE_RECHECK_SECONDS, SQLiteChanges


def test_another_connections_commit_is_seen_within_the_recheck_interval(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("PRAGMA journal_mode=WAL")
    other.execute("CREATE TABLE t (x INTEGER)")
    feed = SQLiteChanges(str(path))
    feed.watch()
    try:
        before = feed.current()
        time.sleep(SQLITE_RECHECK_SECONDS * 2)
        assert feed.current() == before  # nothing written: the same number
        other.execute("INSERT INTO t VALUES (1)")
        time.sleep(SQLITE_RECHECK_SECONDS * 2)
        moved = feed.current()
        assert moved != before
        feed.bump()  # a write of this process: at once, whatever the interval
        assert feed.current() != moved
    finally:
        feed.unwatch()
        other.close()
