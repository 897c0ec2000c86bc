"""Keys, real SKS databases and a loaded Attester database for the reconciliation tests,
made once per run for every worker (``tests.support.shared``) and copied per test (making
and loading 1,300 keys takes a while)."""

from __future__ import annotations

import io
import shutil
import socket
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from pysequoia import Tsk
from sqlalchemy import delete, select

from attester.config import Settings, load_settings
from attester.federation import DumpImporter, DumpReader
from attester.openpgp import Limits, sks_digest
from attester.openpgp._keys import fingerprint_of
from attester.openpgp._packets import split_packets
from attester.recon.ptree import path
from attester.service.core import Core
from attester.store.db import Database, open_database, upgrade
from attester.store.keys import KeyStore
from attester.store.schema import certs
from tests.protocols.test_sks_digest import KEYRING, KNOWN_DIFFERENT, SKS, _slice
from tests.support.server import LiveServer
from tests.support.shared import built_once
from tests.support.sks import build_sks

needs_sks = [
    pytest.mark.skipif(not Path(SKS).exists(), reason="the sks binary is not installed"),
    pytest.mark.skipif(not KEYRING.exists(), reason="debian-keyring is not installed"),
]


@dataclass(frozen=True)
class Keys:
    """Certificates SKS and Attester store packet for packet, so both give them the
    same digest: ~230 from the Debian keyring (every 4th, less the known different
    ones: tests/protocols/test_sks_digest.py) and 1,100 made here."""

    debian: list[bytes]
    made: list[bytes]

    @property
    def full(self) -> list[bytes]:
        """What the "full" SKS database holds; ``extra`` are never on SKS at first."""
        return self.debian + self.made[:1060]

    @property
    def extra(self) -> list[bytes]:
        return self.made[1060:]

    @property
    def universe(self) -> list[str]:
        return sorted(digests(self.debian + self.made))


def digests(keys: Sequence[bytes]) -> set[str]:
    return {sks_digest(k) for k in keys}


def under(keys: Sequence[bytes], prefix: str) -> list[bytes]:
    """The keys whose digest lies below this prefix-tree node."""
    return [k for k in keys if path(bytes.fromhex(sks_digest(k))).startswith(prefix)]


@pytest.fixture
def db(settings: Settings) -> Iterator[Database]:
    """The test database, migrated, through a ``Database`` of its own."""
    d = open_database(settings.database_url)
    upgrade(d)
    yield d
    d.dispose()


def _make_keys(where: Path) -> None:
    made = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        for i in range(1100):
            tsk = Tsk.generate(user_ids=[f"Recon {i} <recon{i}@example.org>"])
            made.append(bytes(tsk.extract_certificate()))
    (where / "made.pgp").write_bytes(b"".join(made))


@pytest.fixture(scope="session")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    debian = [
        k
        for k in _slice(KEYRING.read_bytes())
        if fingerprint_of(split_packets(k)[0].body).hex not in KNOWN_DIFFERENT
    ]
    made = built_once(tmp_path_factory, "recon-keys", _make_keys) / "made.pgp"
    with made.open("rb") as f:  # the dump reader splits it, packets untouched
        return Keys(debian, [item.data for item in DumpReader(f, Limits())])


@pytest.fixture(scope="session")
def sks_db(keys: Keys, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """SKS databases: "debian", "full", and "no1" (full less every key under the root's
    child 1: a whole subtree missing)."""
    no1 = set(under(keys.full, "1"))
    sets = {
        "debian": keys.debian,
        "full": keys.full,
        "no1": [k for k in keys.full if k not in no1],
    }

    def build(where: Path) -> None:
        for name, held in sets.items():
            build_sks(held, where / f"sks-{name}")

    built = built_once(tmp_path_factory, "recon-sks", build)
    return {name: built / f"sks-{name}" for name in sets}


@pytest.fixture(scope="session")
def loaded_db(keys: Keys, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An Attester SQLite database holding every key (made once, copied per test)."""

    def build(where: Path) -> None:
        settings = load_settings(None, database_url=f"sqlite:///{where / 'attester-all.db'}")
        load(settings, keys.debian + keys.made)

    return built_once(tmp_path_factory, "recon-loaded", build) / "attester-all.db"


def free_port_on(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def load(settings: Settings, data: Sequence[bytes]) -> None:
    """Keys into a server's store through the import path (the tree follows)."""
    db = open_database(settings.database_url)
    upgrade(db)
    importer = DumpImporter(Core(settings, db))
    summary = importer.load(io.BytesIO(b"".join(data)))
    db.dispose()
    assert summary.rejected == 0 and summary.new == len(data), summary


def holding(loaded: Path, where: Path, keep: Sequence[bytes]) -> str:
    """A copy of the loaded database holding only ``keep``: the others are removed as
    a removal would remove them (the row, and the tree told in the same transaction)."""
    shutil.copyfile(loaded, where)
    settings = load_settings(None, database_url=f"sqlite:///{where}")
    db = open_database(settings.database_url)
    wanted = digests(keep)
    with KeyStore(db).write() as tx:
        gone = [r[0] for r in tx.conn.execute(select(certs.c.digest)) if r[0] not in wanted]
        tx.conn.execute(delete(certs).where(certs.c.digest.in_(gone)))
        for d in gone:
            tx.recon.change(removed=d)
    db.dispose()
    assert stored_digests(settings) == wanted
    return settings.database_url


def stored_digests(settings: Settings) -> set[str]:
    db = open_database(settings.database_url)
    with db.reader.connect() as conn:
        out = {r[0] for r in conn.execute(select(certs.c.digest))}
    db.dispose()
    return out


def recon_settings(
    database_url: str, tmp: Path, host: str, peers: list[dict[str, object]], **extra: object
) -> Settings:
    values: dict[str, object] = {
        "database_url": database_url,
        "mail_url": f"file:{tmp / 'outbox'}",
        "port": 0,
        "recon_address": host,
        "recon_port": free_port_on(host),
        "recon_peers": peers,
        "recon_gossip_seconds": 0,
        "recon_timeout_seconds": 15,
        "sync_peers": [],  # only recon peers may use /pks/hashquery
    }
    return load_settings(None, **{**values, **extra})


@contextmanager
def attester(settings: Settings, host: str) -> Iterator[LiveServer]:
    with LiveServer.start(settings, host=host) as live:
        yield live
