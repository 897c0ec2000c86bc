"""Keyserver dumps in and out: the streaming reader, ``attester import`` as a resumable
bulk loader, ``attester export``, and a real ``sks build`` of our export."""

from __future__ import annotations

import bz2
import gzip
import io
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, func, select

from attester.config import Settings
from attester.federation import DumpImporter, DumpReader, DumpUnreadable, export_dump
from attester.openpgp import Limits, parse_certificates
from attester.openpgp._packets import PUBLIC_KEY, USER_ATTRIBUTE, encode_packet, split_packets
from attester.openpgp.types import Email
from attester.service.attestation import Attestation
from attester.store.db import normalise_url, open_database
from attester.store.origins import ExportSelection, OriginStore
from tests.federation.peers import sks_build, sks_dump, sks_serving
from tests.support.keys import TestKey

DEBIAN = Path("/usr/share/keyrings/debian-keyring.gpg")
DEBIAN_KEYS = 905
SLICE = 360  # the keyring's first certificates, for the loader's round trips


def _first_certificates(n: int) -> bytes:
    """The first ``n`` certificates of Debian's keyring, byte for byte."""
    with DEBIAN.open("rb") as f:
        return b"".join(item.data for item, _ in zip(DumpReader(f, BIG), range(n), strict=False))


ATTESTER = [sys.executable, "-m", "attester"]
BIG = Limits(max_input_bytes=1 << 30, max_packet_bytes=1 << 30)  # reading SKS's own dumps


def _env(database_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ATTESTER_")}
    env["ATTESTER_DATABASE_URL"] = database_url
    return env


def _digests(files: list[Path]) -> list[str]:
    out: list[str] = []
    for f in files:
        with f.open("rb") as fh:
            out += [c.digest for c in DumpReader(fh, BIG)]
    return out


def _stored_digests(settings: Settings) -> set[str]:
    from attester.store.schema import certs

    engine = create_engine(normalise_url(settings.database_url))
    try:
        with engine.connect() as c:
            return {r[0] for r in c.execute(select(certs.c.digest))}
    finally:
        engine.dispose()


def _count(database_url: str) -> int:
    from attester.store.schema import certs

    engine = create_engine(normalise_url(database_url))
    try:
        with engine.connect() as c:
            return int(c.execute(select(func.count()).select_from(certs)).scalar_one())
    except Exception:
        return 0  # not migrated yet
    finally:
        engine.dispose()


def _children_cpu() -> float:
    """CPU seconds used so far by the finished child processes of this one."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _row(table: str, label: str) -> int:
    m = re.search(rf"{re.escape(label)}\s+│\s+(\d+)", table)
    assert m, table
    return int(m[1])


# ---- the reader


def test_reader_takes_every_dump_format() -> None:
    keys = [TestKey.generate(f"K{i} <k{i}@example.org>") for i in range(3)]
    binary = b"".join(k.public for k in keys)
    fprs = [k.fingerprint for k in keys]

    def read(data: bytes) -> list[str]:
        certs = list(DumpReader(io.BytesIO(data), Limits()))
        return [c.fingerprint.hex for item in certs for c in parse_certificates(item.data)]

    assert read(binary) == fprs
    assert read(gzip.compress(binary)) == fprs
    assert read(bz2.compress(binary)) == fprs
    armored = "Keys:\n" + keys[0].armored + "\nand more\n" + keys[1].armored + keys[2].armored
    assert read(armored.encode()) == fprs
    assert read(b"") == []
    with pytest.raises(DumpUnreadable, match="neither binary OpenPGP"):
        read(b"this is not a key")
    # A truncated dump yields what came before the damage, then says so.
    reader = iter(DumpReader(io.BytesIO(binary[:-10]), Limits()))
    assert next(reader).digest and next(reader).digest
    with pytest.raises(DumpUnreadable, match="truncated"):
        next(reader)


def test_reader_refuses_certificates_over_the_limits_without_holding_them() -> None:
    good, flooded, secret, after = (TestKey.generate(f"K{i} <k{i}@example.org>") for i in range(4))
    (primary, *rest) = split_packets(flooded.public)
    assert primary.tag == PUBLIC_KEY
    huge = encode_packet(USER_ATTRIBUTE, b"\x00" * 70000)
    flooded_data = primary.serialize() + huge + b"".join(p.serialize() for p in rest)
    data = good.public + flooded_data + bytes(secret.tsk) + after.public
    items = list(DumpReader(io.BytesIO(data), Limits()))
    assert [i.rejected for i in items] == [
        None,
        "a packet of 70000 bytes exceeds the limit of 65536 bytes per packet",
        "a secret key; secret keys are never accepted",
        None,
    ]
    small = list(DumpReader(io.BytesIO(good.public), Limits(max_input_bytes=200)))
    assert small[0].rejected and "more than 200 bytes" in small[0].rejected


_PEAK = """
import resource, sys
from attester.federation import DumpReader
from attester.openpgp import Limits
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
with open(sys.argv[1], "rb") as f:
    n = sum(1 for _ in DumpReader(f, Limits()))
print(n, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)
"""


@pytest.mark.slow
def test_memory_stays_flat_whatever_the_dump_size(tmp_path: Path) -> None:
    """The reader's peak memory, as the kernel counts it (the growth of the process's
    maximum resident set while reading; tracemalloc would make the reading five times
    slower), for a 115 MB dump."""
    dump = tmp_path / "big.pgp.gz"
    data = DEBIAN.read_bytes()
    with gzip.open(dump, "wb", compresslevel=1) as f:
        for _ in range(4):  # 115 MB of certificates
            f.write(data)
    del data
    r = subprocess.run(
        [sys.executable, "-c", _PEAK, str(dump)], capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 0, r.stderr
    n, grown_kib = map(int, r.stdout.split())
    assert n == 4 * DEBIAN_KEYS
    assert grown_kib < 16 * 1024, grown_kib  # the largest key is 364 kB


# ---- loading


@pytest.mark.slow
def test_import_is_a_resumable_bulk_loader_and_sks_builds_from_our_export(
    settings: Settings, database_url: str, tmp_path: Path
) -> None:
    """SKS-style dump, gzip-compressed, loaded as a mirror; killed halfway, run again. Then
    exported, and a real ``sks build`` of the export holds the same keys under the same
    digests. (Two tests once, each loading Debian keys, which is their slow part: one load
    now serves both checks; and a slice of the keyring, since loading all of it proves
    nothing more here; ``tests/test_cli.py`` imports all of it.)"""
    # 1. The resumable load.
    dump = tmp_path / "keydump-0000.pgp.gz"
    dump.write_bytes(gzip.compress(_first_certificates(SLICE), compresslevel=1))
    env = {**_env(database_url), "COLUMNS": "160"}  # a terminal wide enough for the bar
    cmd = [*ATTESTER, "import", "--mirror", "keyserver.ubuntu.com", "--batch-size", "20"]
    proc = subprocess.Popen(
        [*cmd, str(dump)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 300  # a guard against a hang, not a speed test
    while _count(database_url) < 100:
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)  # the hardest interruption: no cleanup at all
    proc.communicate()
    done = _count(database_url)
    assert 100 <= done < SLICE
    r = subprocess.run([*cmd, str(dump)], env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    new = _row(r.stdout, "new")
    skipped = _row(r.stdout, "(already stored, skipped)")
    assert skipped == done and new == SLICE - done, r.stdout
    assert "keys/s" in r.stderr and "ETA" in r.stderr  # the progress bar
    # A third run only reads: nothing is parsed or written. (Its CPU time, not the wall
    # clock, so that a machine busy with other work does not fail the test.)
    start = _children_cpu()
    r = subprocess.run([*cmd, str(dump)], env=env, capture_output=True, text=True, timeout=600)
    assert re.search(rf"unchanged\s+│\s+{SLICE}\b", r.stdout), r.stdout
    # (About 2 s: starting the process and reading; parsing the slice again would add 4.)
    assert _children_cpu() - start < 5
    # Mirrored keys keep their source and are never attested.
    from tests.federation.conftest import stored

    held = stored(settings)
    assert set(held.sources.values()) == {"mirror:keyserver.ubuntu.com"}
    assert held.attested == []

    # 2. SKS built from our export holds the same keys.
    db = open_database(database_url)
    try:
        exported = export_dump(OriginStore(db), tmp_path / "export", shard_size=100)
    finally:
        db.dispose()
    assert len(exported.files) == 4 and exported.keys == SLICE
    base, port = sks_build(exported.files)
    try:
        theirs = _digests(sks_dump(base, tmp_path / "sks-dump"))
        ours = _stored_digests(settings)
        assert len(theirs) == len(ours) == SLICE
        assert set(theirs) == ours
        with sks_serving(base, port) as sks:
            for digest in sorted(ours)[:25]:  # SKS names each key by the same digest
                r2 = httpx.get(
                    f"{sks.url}/pks/lookup", params={"op": "hget", "search": digest}, timeout=10
                )
                assert r2.status_code == 200, digest
                (cert,) = parse_certificates(r2.content, BIG)
                assert cert.digest == digest
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_rejected_keys_are_summarised_by_reason(database_url: str, tmp_path: Path) -> None:
    good = [TestKey.generate(f"G{i} <g{i}@example.org>") for i in range(2)]
    secret = TestKey.generate("S <s@example.org>")
    bare = split_packets(TestKey.generate("B <b@example.org>").public)[0].serialize()
    dump = tmp_path / "dump.pgp"
    dump.write_bytes(good[0].public + bytes(secret.tsk) + bare + good[1].public)
    r = subprocess.run(
        [*ATTESTER, "import", str(dump)],
        env=_env(database_url),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    assert re.search(r"new\s+│\s+2", r.stdout) and re.search(r"rejected\s+│\s+2", r.stdout)
    assert "rejected 1 x: a secret key" in r.stdout
    assert "rejected 1 x: the certificate has no user ID, subkey" in r.stdout
    r = subprocess.run(
        [*ATTESTER, "import", "--mirror", "x", "--attest-emails", str(dump)],
        env=_env(database_url),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2 and "never attested" in r.stderr


def test_directory_import_of_a_dump_attests_through_the_service(
    attestation: Attestation, tmp_path: Path
) -> None:
    keys = [TestKey.generate(f"U{i} <u{i}@corp.example>") for i in range(5)]
    # Stored exactly so already by a plain import: not skipped, its address is attested.
    DumpImporter(attestation.core).load(io.BytesIO(keys[0].public))
    dump = io.BytesIO(gzip.compress(b"".join(k.public for k in keys)))
    summary = DumpImporter(
        attestation.core, attest_emails=True, domains=["corp.example"], batch_size=2
    ).load(dump)
    assert (summary.new, summary.unchanged, summary.attested) == (4, 1, 5)
    assert attestation.core.store.by_email(Email.parse("u0@corp.example"))


# ---- writing


def _seed(attestation: Attestation) -> dict[str, TestKey]:
    keys = {
        "attested": TestKey.generate("A <a@example.org>").with_user_id("A <a@hidden.example>"),
        "uploaded": TestKey.generate("U <u@example.org>"),
        "mirrored": TestKey.generate("M <m@example.org>"),
    }
    attestation.imports.keyring(
        keys["attested"].public, attest_emails=True, domains=["example.org"]
    )
    attestation.imports.keyring(keys["uploaded"].public)
    DumpImporter(attestation.core, mirror="keys.openpgp.org").load(
        io.BytesIO(keys["mirrored"].public)
    )
    return keys


def test_export_selects_shards_and_reduces(attestation: Attestation, tmp_path: Path) -> None:
    keys = _seed(attestation)
    origins = attestation.core.origins

    def fprs(files: list[Path]) -> list[str]:
        out = []
        for f in files:
            with f.open("rb") as fh:
                for item in DumpReader(fh, Limits()):
                    out += [c.fingerprint.hex for c in parse_certificates(item.data)]
        return out

    every = export_dump(origins, tmp_path / "all", shard_size=2)
    assert [f.name for f in every.files] == ["keydump-0000.pgp", "keydump-0001.pgp"]
    assert sorted(fprs(every.files)) == sorted(k.fingerprint for k in keys.values())
    local = export_dump(origins, tmp_path / "local", selection=ExportSelection.LOCAL)
    assert sorted(fprs(local.files)) == sorted(
        [keys["attested"].fingerprint, keys["uploaded"].fingerprint]
    )
    attested = export_dump(
        origins, tmp_path / "att", selection=ExportSelection.ATTESTED, compress=True
    )
    assert attested.files[0].name == "keydump-0000.pgp.gz"
    assert fprs(attested.files) == [keys["attested"].fingerprint]
    # Whole by default (every user ID, as SKS dumps are), or as lookups serve it.
    whole = attested.files[0].read_bytes()
    assert b"a@hidden.example" in gzip.decompress(whole)
    served = export_dump(
        origins, tmp_path / "pub", selection=ExportSelection.ATTESTED, published_only=True
    )
    data = served.files[0].read_bytes()
    assert b"a@example.org" in data and b"a@hidden.example" not in data
    assert not list((tmp_path / "all").glob("*.part"))


def test_two_attesters_seed_each_other(
    settings: Settings, attestation: Attestation, tmp_path: Path
) -> None:
    _seed(attestation)
    out = tmp_path / "export"
    r = subprocess.run(
        [*ATTESTER, "export", str(out), "--shard-size", "2", "--gzip"],
        env=_env(settings.database_url),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    assert "3 keys written to 2 file(s)" in r.stdout
    other = f"sqlite:///{tmp_path / 'other.db'}"
    files = sorted(str(f) for f in out.iterdir())
    r = subprocess.run(
        [*ATTESTER, "import", *files], env=_env(other), capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 0 and re.search(r"new\s+│\s+3", r.stdout), r.stdout
    theirs = settings.model_copy(update={"database_url": other})
    assert _stored_digests(theirs) == _stored_digests(settings)
