"""Fixtures of the OpenPGP core tests: real keys made at test time, and a real ``gpg`` in a
throw-away home directory to check our output against."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from pysequoia import Cert, Tsk

GPG = shutil.which("gpg")


def generate(*uids: str) -> Tsk:
    """A pysequoia key (Ed25519 primary with a direct-key signature, signing and encryption
    subkeys) with its secrets, so tests can sign with ``tsk.certifier()``."""
    return Tsk.generate(user_ids=list(uids)) if uids else Tsk.generate()


def public(tsk: Tsk) -> Cert:
    """The public certificate of ``tsk``; ``bytes()`` of it is what users upload."""
    return tsk.extract_certificate()


@pytest.fixture
def gnupghome(tmp_path: Path) -> Path:
    home = tmp_path / "gnupg"
    home.mkdir(mode=0o700)
    return home


GpgRun = Callable[..., subprocess.CompletedProcess[bytes]]


@pytest.fixture
def gpg(gnupghome: Path, tmp_path: Path) -> Iterator[GpgRun]:
    """``gpg(*args, data=bytes)``: run gpg in the throw-away home; ``data`` is written to a
    file whose path is appended to the arguments. Output stays bytes (exports are binary).
    The agents gpg starts in that home are stopped afterwards."""
    if GPG is None:
        pytest.skip("gpg is not installed")

    def run(*args: str, data: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
        argv = [GPG, "--homedir", str(gnupghome), "--batch", "--no-tty", *args]
        if data is not None:
            path = tmp_path / f"input-{os.urandom(4).hex()}.pgp"
            path.write_bytes(data)
            argv.append(str(path))
        return subprocess.run(argv, capture_output=True, timeout=120, check=False)

    yield run
    subprocess.run(
        ["gpgconf", "--homedir", str(gnupghome), "--kill", "all"],
        capture_output=True,
        timeout=30,
        check=False,
    )


def unescape(field: bytes) -> bytes:
    """A ``--with-colons`` field with GnuPG's ``\\xNN`` escapes undone."""
    return re.sub(rb"\\x([0-9a-fA-F]{2})", lambda m: bytes((int(m.group(1), 16),)), field)


def colons_uids(colons: bytes) -> list[bytes]:
    """User IDs of ``--with-colons`` output (field 10), as raw bytes."""
    return [
        unescape(line.split(b":")[9]) for line in colons.splitlines() if line.startswith(b"uid:")
    ]
