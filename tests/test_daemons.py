"""The session's leftover-process check (``tests.support.daemons``) finds what it must: a
child still running, and a detached daemon that names a directory of the session, but
not a process of another run whose directory merely starts the same way."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import daemons

pytestmark = pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc (Linux)")

SLEEPER = [sys.executable, "-c", "import sys, time; time.sleep(60)"]


def test_a_child_left_running_is_found_and_killed(tmp_path: Path) -> None:
    child = subprocess.Popen(SLEEPER)
    try:
        assert child.pid in daemons.left_over(tmp_path, grace=0)
        daemons.kill([child.pid])
        assert child.wait(10) != 0
        assert child.pid not in daemons.left_over(tmp_path, grace=0)
    finally:
        child.kill()
        child.wait()


def test_a_detached_daemon_naming_the_session_directory_is_found(tmp_path: Path) -> None:
    mine, other = tmp_path / "run", tmp_path / "run2"  # "run2" must not count as "run"
    daemons.watch(mine)
    # setsid, and the launcher exits at once: the daemon is no child of this process, as
    # gpg-agent is not.
    spawn = "import subprocess, sys; subprocess.Popen(sys.argv[1:], start_new_session=True)"
    for directory in (mine, other):
        subprocess.run([sys.executable, "-c", spawn, *SLEEPER, str(directory)], check=True)
    found = daemons.left_over(tmp_path / "elsewhere", grace=0)
    try:
        assert [cmd for cmd in found.values() if str(other) in cmd] == []
        [cmd] = [cmd for cmd in found.values() if str(mine) in cmd]
        assert cmd.endswith(str(mine))
    finally:
        # Only these two: left_over also lists the session's own children (slapd...).
        found = daemons.left_over(tmp_path, grace=0)
        daemons.kill(pid for pid, cmd in found.items() if str(tmp_path) in cmd)
