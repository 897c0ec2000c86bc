"""No process the tests started may outlive the session: not the agents GnuPG starts on its
own (gpg-agent, dirmngr, keyboxd), not a real ``sks``, not a browser.

At the end of the session (the teardown of a session fixture that every test uses, so it
runs after every other fixture's; with pytest-xdist in every worker, whose error reaches
the controller like any other), ``left_over`` looks for processes that are still
children (or grandchildren) of this one, and for daemons that left the family (GnuPG's
agents detach) but name a directory of this session on their command line: pytest's
base temporary directory or one registered with ``watch`` (homes made outside it, such
as the short SKS paths). It gives them a few seconds to exit; ``kill`` ends the rest.
Linux only (``/proc``); elsewhere it finds nothing.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import time
from collections.abc import Iterable
from pathlib import Path

_PROC = Path("/proc")
# The forkserver and resource tracker that Python's multiprocessing starts once per process
# (the parsing pool's workers are forked from the former) live as long as their parent by
# design and end when it does; they are not left-over daemons.
_MULTIPROCESSING = (
    "from multiprocessing.forkserver import main",
    "from multiprocessing.resource_tracker import main",
)
_watched: set[str] = set()


def watch(path: str | Path) -> None:
    """Count daemons whose command line names ``path`` as this session's."""
    _watched.add(str(path))


def _processes() -> dict[int, tuple[int, str, str]]:
    """pid -> (parent pid, state, command line) of every process we can read."""
    out: dict[int, tuple[int, str, str]] = {}
    for entry in _PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue  # gone meanwhile, or not ours to read
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses.
        state, ppid = stat[stat.rindex(")") + 2 :].split()[:2]
        out[int(entry.name)] = (int(ppid), state, cmdline.strip())
    return out


def _running(basetemp: str) -> dict[int, str]:
    me = os.getpid()
    procs = _processes()
    # A directory named whole: /tmp/pytest-5 must not match /tmp/pytest-55 of another run.
    marks = [re.compile(re.escape(m) + r"(?=/|\s|$)") for m in (basetemp, *_watched)]
    found: dict[int, str] = {}
    for pid, (parent, state, cmdline) in procs.items():
        if pid == me or state == "Z":  # a zombie runs nothing
            continue
        if parent == me and any(m in cmdline for m in _MULTIPROCESSING):
            continue  # this process's own multiprocessing helpers: they end with it
        ancestor, seen = procs[pid][0], 0
        while ancestor not in (0, 1, me) and ancestor in procs and seen < 64:
            ancestor, seen = procs[ancestor][0], seen + 1
        if ancestor == me or any(m.search(cmdline) for m in marks):
            found[pid] = cmdline
    return found


def left_over(basetemp: Path, grace: float = 5.0) -> dict[int, str]:
    """pid -> command line of every process of this session still running, after giving
    them ``grace`` seconds (an agent told to stop may take a moment)."""
    if not _PROC.is_dir():
        return {}
    deadline = time.monotonic() + grace
    left = _running(str(basetemp))
    while left and time.monotonic() < deadline:
        time.sleep(0.1)
        left = _running(str(basetemp))
    return left


def kill(pids: Iterable[int]) -> None:
    for pid in pids:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
