"""What a running app serves of some keys, on every protocol and page: one snapshot per
call, so tests can say "removed everywhere" and "restored exactly" in one comparison."""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from attester.federation import export_dump
from attester.openpgp import parse_certificates
from attester.openpgp.wkd import wkd_hash
from attester.store.db import open_database
from attester.store.origins import OriginStore
from tests.support import hashquery
from tests.support.asgi import InProcess


@dataclass(frozen=True)
class Served:
    """Of one answer: the status, and per certificate served its fingerprint and the
    addresses on it (empty when nothing was served)."""

    status: int
    keys: frozenset[tuple[str, frozenset[str]]] = frozenset()

    @property
    def fingerprints(self) -> set[str]:
        return {f for f, _ in self.keys}

    @property
    def emails(self) -> set[str]:
        return {e for _, es in self.keys for e in es}


def certs_in(data: bytes) -> frozenset[tuple[str, frozenset[str]]]:
    if not data.strip():
        return frozenset()
    return frozenset(
        (c.fingerprint.hex, frozenset(e.address for e in c.emails))
        for c in parse_certificates(data)
    )


def _answer(r: Any) -> Served:
    if r.status_code != 200:
        return Served(r.status_code)
    return Served(200, certs_in(r.content))


def lookups(
    client: InProcess, *, email: str, fingerprint: str, headers: dict[str, str] | None = None
) -> dict[str, Served]:
    """Every surface that looks one address or one key up."""
    h = headers or {}
    kid = fingerprint[-16:]
    local, domain = email.split("@")
    out: dict[str, Served] = {}
    for name, path in (
        ("flowcrypt email", f"/pub/{email}"),
        ("flowcrypt fingerprint", f"/pub/{fingerprint}"),
        ("flowcrypt keyid", f"/pub/{kid}"),
        ("vks email", f"/vks/v1/by-email/{email}"),
        ("vks fingerprint", f"/vks/v1/by-fingerprint/{fingerprint}"),
        ("vks keyid", f"/vks/v1/by-keyid/{kid}"),
        ("hkp get email", f"/pks/lookup?op=get&options=mr&search={email}"),
        ("hkp get fingerprint", f"/pks/lookup?op=get&options=mr&search=0x{fingerprint}"),
        ("hkp get keyid", f"/pks/lookup?op=get&options=mr&search=0x{kid}"),
        ("wkd advanced", f"/.well-known/openpgpkey/{domain}/hu/{wkd_hash(local)}"),
        ("web download", f"/download/{fingerprint}"),
    ):
        out[name] = _answer(client.get(path, headers=h))
    r = client.request("POST", "/lookup/email", json={"email": email}, headers=h)
    pubkey = r.json().get("pubkey") if r.status_code == 200 else None
    out["flowcrypt lookup/email"] = Served(
        r.status_code if pubkey else 404, certs_in(pubkey.encode()) if pubkey else frozenset()
    )
    for name, search in (("hkp index email", email), ("hkp index fingerprint", f"0x{fingerprint}")):
        r = client.get(
            "/pks/lookup", params={"op": "index", "options": "mr", "search": search}, headers=h
        )
        out[name] = _index(r)
    for name, q in (("web search email", email), ("web search fingerprint", fingerprint)):
        r = client.get("/search", params={"q": q}, headers={"Accept": "text/html", **h})
        out[name] = _page(r, fingerprint, q)
    return out


_ADDRESS = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")


def _page(r: Any, fingerprint: str, query: str) -> Served:
    """A search page: the key when its fingerprint is shown, with the addresses shown
    (other than the one searched for, which the search box repeats)."""
    if r.status_code != 200:
        return Served(r.status_code)
    text = html.unescape(r.text)
    if fingerprint not in re.sub(r"\s", "", text):
        return Served(200)
    emails = frozenset(a.lower() for a in _ADDRESS.findall(text) if a.lower() != query.lower())
    return Served(200, frozenset({(fingerprint, emails)}))


def _index(r: Any) -> Served:
    """The machine-readable HKP index: the fingerprints and the addresses of the uids."""
    if r.status_code != 200:
        return Served(r.status_code)
    keys: dict[str, set[str]] = {}
    current = ""
    for line in r.text.splitlines():
        parts = line.split(":")
        if parts[0] == "pub":
            current = parts[1]
            keys[current] = set()
        elif parts[0] == "uid" and "<" in parts[1]:
            keys[current].add(parts[1].rsplit("<", 1)[1].rstrip(">").replace("%40", "@"))
    return Served(200, frozenset((f, frozenset(es)) for f, es in keys.items()))


def text_search(client: InProcess, words: str, headers: dict[str, str] | None = None) -> Served:
    r = client.get(
        "/pks/lookup",
        params={"op": "index", "options": "mr", "search": words},
        headers=headers or {},
    )
    return _index(r)


def hget(client: InProcess, digest: str) -> Served:
    return _answer(client.get("/pks/lookup", params={"op": "hget", "search": digest}))


def hashquery_keys(client: InProcess, digests: list[str]) -> frozenset[tuple[str, frozenset[str]]]:
    r = client.request("POST", "/pks/hashquery", content=hashquery.request(digests))
    assert r.status_code == 200, r.text
    return frozenset(k for data in hashquery.response_keys(r.content) for k in certs_in(data))


def stats(client: InProcess) -> dict[str, Any]:
    r = client.get("/pks/lookup", params={"op": "stats", "options": "mr"})
    assert r.status_code == 200
    body: dict[str, Any] = r.json()
    return body


def exported(database_url: str, directory: Path) -> frozenset[tuple[str, frozenset[str]]]:
    """What ``attester export`` writes (whole keys, as SKS dumps hold them)."""
    db = open_database(database_url)
    try:
        summary = export_dump(OriginStore(db), directory)
    finally:
        db.dispose()
    data = b"".join(f.read_bytes() for f in summary.files)
    return certs_in(data)
