"""Keys and real SKS databases for the reconciliation tests, made once per session."""

from __future__ import annotations

import io
import socket
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from pysequoia import Tsk
from sqlalchemy import select

from attester.config import Settings, load_settings
from attester.federation import DumpImporter
from attester.openpgp import parse_certificate, sks_digest
from attester.openpgp._keys import fingerprint_of
from attester.openpgp._packets import PUBLIC_KEY, RawPacket, encode_packets, split_packets
from attester.service.attestation import Attestation, mail_settings
from attester.service.core import Core
from attester.store.db import open_database, upgrade
from attester.store.schema import certs
from tests.protocols.test_sks_digest import KNOWN_DIFFERENT, SKS
from tests.support.server import LiveServer
from tests.support.sks import build_sks

KEYRING = Path("/usr/share/keyrings/debian-keyring.gpg")
needs_sks = [
    pytest.mark.skipif(not Path(SKS).exists(), reason="the sks binary is not installed"),
    pytest.mark.skipif(not KEYRING.exists(), reason="debian-keyring is not installed"),
]


@dataclass(frozen=True)
class Keys:
    """Certificates both SKS and Attester store packet for packet (so both give them
    the same digest): ~300 from the Debian keyring, 1,300 made here."""

    debian: list[bytes]
    made: list[bytes]

    def digests(self, keys: Sequence[bytes]) -> set[str]:
        return {sks_digest(k) for k in keys}

    @property
    def universe(self) -> list[str]:
        return sorted(self.digests(self.debian + self.made))


def _debian_slice() -> list[bytes]:
    certs_: list[list[RawPacket]] = []
    for p in split_packets(KEYRING.read_bytes()):
        if p.tag == PUBLIC_KEY:
            certs_.append([])
        if certs_:
            certs_[-1].append(p)
    out = []
    for i, c in enumerate(certs_):
        if i % 3 or fingerprint_of(c[0].body).hex in KNOWN_DIFFERENT:
            continue
        data = encode_packets(c)
        if parse_certificate(data, Settings().limits).digest == sks_digest(data):
            out.append(data)
    return out


@pytest.fixture(scope="session")
def keys() -> Keys:
    made = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        for i in range(1300):
            tsk = Tsk.generate(user_ids=[f"Recon {i} <recon{i}@example.org>"])
            made.append(bytes(tsk.extract_certificate()))
    return Keys(_debian_slice(), made)


@pytest.fixture(scope="session")
def sks_db(keys: Keys) -> Iterator[dict[str, Path]]:
    """SKS databases, built once: "debian" (the Debian keys) and "full" (those and the
    first 1,200 made keys)."""
    with tempfile.TemporaryDirectory(prefix="sksdb", dir="/tmp") as tmp:
        yield {
            "debian": build_sks(keys.debian, Path(tmp) / "debian"),
            "full": build_sks(keys.debian + keys.made[:1200], Path(tmp) / "full"),
        }


def free_port_on(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def load(settings: Settings, data: Sequence[bytes]) -> None:
    """Keys into a server's store through the import path (the tree follows)."""
    db = open_database(settings.database_url)
    upgrade(db)
    importer = DumpImporter(Attestation(Core(settings, db), mail_settings(settings)))
    summary = importer.load(io.BytesIO(b"".join(data)))
    db.dispose()
    assert summary.rejected == 0 and summary.new == len(data), summary


def stored_digests(settings: Settings) -> set[str]:
    db = open_database(settings.database_url)
    with db.reader.connect() as conn:
        out = {r[0] for r in conn.execute(select(certs.c.digest))}
    db.dispose()
    return out


def recon_settings(
    database_url: str, tmp: Path, host: str, peers: list[dict[str, object]], **extra: object
) -> Settings:
    return load_settings(
        None,
        database_url=database_url,
        mail_url=f"file:{tmp / 'outbox'}",
        port=0,
        recon_address=host,
        recon_port=free_port_on(host),
        recon_peers=peers,
        recon_gossip_seconds=0,
        recon_timeout_seconds=15,
        sync_peers=[],  # only recon peers may use /pks/hashquery
        **extra,
    )


@contextmanager
def attester(settings: Settings, host: str) -> Iterator[LiveServer]:
    with LiveServer.start(settings, host=host) as live:
        yield live
