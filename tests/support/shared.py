"""Test data built once per run and shared by every pytest-xdist worker.

A session fixture runs once per worker: data that takes seconds of CPU to make (a thousand
generated keys, SKS databases, a loaded store) was made up to four times a run. The first
worker to ask builds it under a file lock, in the run's common temporary folder; the others
wait for that lock and use what it built. Users treat it as read-only (copy to change)."""

from __future__ import annotations

import fcntl
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest


def built_once(factory: pytest.TempPathFactory, name: str, build: Callable[[Path], None]) -> Path:
    """The folder ``build`` filled for ``name`` in this run, built now if no worker has."""
    root = factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # the run's folder, above each worker's own
    target = root / f"shared-{name}"
    with (root / f"shared-{name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if not (target / ".built").exists():
            shutil.rmtree(target, ignore_errors=True)  # a build that failed half-way
            target.mkdir()
            build(target)
            (target / ".built").touch()
    return target
