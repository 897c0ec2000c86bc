"""Writing dumps (``attester export``): binary shards other servers and ``sks build`` load."""

from __future__ import annotations

import gzip
import io
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from attester.openpgp._packets import decode
from attester.store.origins import ExportSelection, OriginStore


@dataclass
class ExportSummary:
    files: list[Path] = field(default_factory=list)
    keys: int = 0


class _Shards:
    """Shard files written under a temporary name and renamed once complete, so an
    interrupted export never leaves a truncated file that looks finished."""

    def __init__(self, directory: Path, prefix: str, compress: bool) -> None:
        self.directory = directory
        self.prefix = prefix
        self.compress = compress
        self.files: list[Path] = []
        self._out: gzip.GzipFile | io.BufferedWriter | None = None
        self._raw: io.BufferedWriter | None = None
        self._tmp: Path | None = None
        self.count = 0  # keys in the open shard

    def write(self, data: bytes) -> None:
        if self._out is None:
            name = f"{self.prefix}{len(self.files):04d}.pgp" + (".gz" if self.compress else "")
            self._tmp = self.directory / (name + ".part")
            self._raw = self._tmp.open("wb")
            self._out = self._raw
            if self.compress:
                self._out = gzip.GzipFile(fileobj=self._raw, mode="wb", compresslevel=6)
            self.count = 0
        self._out.write(data)
        self.count += 1

    def finish(self) -> None:
        if self._out is None or self._tmp is None:
            return
        self._close()
        final = self._tmp.with_name(self._tmp.name.removesuffix(".part"))
        os.replace(self._tmp, final)
        self.files.append(final)
        self._out = self._tmp = None

    def _close(self) -> None:
        assert self._out is not None and self._raw is not None
        self._out.close()
        self._raw.close()  # GzipFile does not close a file object it was given

    def abandon(self) -> None:
        if self._out is not None and self._tmp is not None:
            self._close()
            self._tmp.unlink(missing_ok=True)
        self._out = self._tmp = None


def export_dump(
    origins: OriginStore,
    directory: Path,
    *,
    selection: ExportSelection = ExportSelection.ALL,
    published_only: bool = False,
    shard_size: int = 15000,
    prefix: str = "keydump-",
    compress: bool = False,
    progress: Callable[[int], None] | None = None,
) -> ExportSummary:
    """Write the selected certificates as binary dumps of ``shard_size`` keys each
    (``{prefix}0000.pgp``, ...), the format ``attester import`` and ``sks build`` read.

    By default each certificate is written whole, as stored (every user ID and
    third-party signature), so its SKS digest is the one this server reports. With
    ``published_only`` it is written as lookups serve it: only the user IDs attested here
    (identity-free when none is).
    """
    directory.mkdir(parents=True, exist_ok=True)
    shards = _Shards(directory, prefix, compress)
    keys = 0
    try:
        for cert in origins.export(selection):
            if published_only:
                armored = cert.armored_published or cert.armored_identity_free
                shards.write(decode(armored.encode()))
            else:
                shards.write(cert.data)
            keys += 1
            if progress:
                progress(1)
            if shards.count >= shard_size:
                shards.finish()
        shards.finish()
    finally:
        shards.abandon()
    return ExportSummary(shards.files, keys)
