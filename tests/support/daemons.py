"""No process the tests started may outlive the session: not the agents GnuPG starts on its
own (gpg-agent, dirmngr, keyboxd), not a real ``sks``, not a browser.

When the session ends, ``check_none_left`` looks for processes that are still children
(or grandchildren) of this one, and for daemons that left the family (GnuPG's agents
detach) but name a directory of this session on their command line: pytest's base
temporary directory or one registered with ``watch`` (homes made outside it, such as the
short SKS paths). It waits a few seconds for them to exit, then reports and kills the rest
and fails the session. Linux only (``/proc``); elsewhere it checks nothing.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

import pytest

_PROC = Path("/proc")
_watched: set[str] = set()
_basetemp: str | None = None


def watch(path: str | Path) -> None:
    """Count daemons whose command line names ``path`` as this session's."""
    _watched.add(str(path))


def session_started(session: pytest.Session) -> None:
    global _basetemp
    factory = getattr(session.config, "_tmp_path_factory", None)
    if factory is not None:
        _basetemp = str(factory.getbasetemp())


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


def _left_over() -> dict[int, str]:
    me = os.getpid()
    procs = _processes()
    marks = [m for m in (_basetemp, *_watched) if m]
    found: dict[int, str] = {}
    for pid, (_, state, cmdline) in procs.items():
        if pid == me or state == "Z":  # a zombie runs nothing
            continue
        ancestor, seen = procs[pid][0], 0
        while ancestor not in (0, 1, me) and ancestor in procs and seen < 64:
            ancestor, seen = procs[ancestor][0], seen + 1
        if ancestor == me or any(m in cmdline for m in marks):
            found[pid] = cmdline
    return found


def check_none_left(session: pytest.Session) -> None:
    if not _PROC.is_dir():
        return
    deadline = time.monotonic() + 5  # an agent told to stop may take a moment
    left = _left_over()
    while left and time.monotonic() < deadline:
        time.sleep(0.1)
        left = _left_over()
    if not left:
        return
    for pid in left:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    report = "\n".join(f"  {pid}: {cmd}" for pid, cmd in sorted(left.items()))
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    message = f"processes started by the tests were still running (now killed):\n{report}"
    if reporter is not None:
        reporter.write_sep("=", "leftover processes", red=True)
        reporter.write_line(message)
    else:
        print(message)
    session.exitstatus = pytest.ExitCode.TESTS_FAILED
