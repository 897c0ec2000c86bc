"""Synthetic certificates for the import benchmark, generated once with pysequoia and cached.

A realistic mix for a public keyserver of today's clients: one user ID with an address, a
signing and an encryption subkey (what ``Tsk.generate`` makes), mostly Curve25519, some
NIST curves and a few RSA keys. RSA is rare here only because generating it is slow
(about 0.3 s per 2048-bit key, three keys per certificate); what import costs is
verifying self-signatures, which is cheap for RSA too.

    python bench/synthetic.py COUNT OUT.pgp      # binary certificates, concatenated

Generation runs in one process per core; the same COUNT always yields the same user IDs
and algorithm mix (keys differ: they are random), so a cached file can be reused.
"""

from __future__ import annotations

import os
import random
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

# (suite name in pysequoia.CipherSuite, share of certificates)
MIX = [("Cv25519", 0.855), ("P256", 0.09), ("P384", 0.04), ("P521", 0.01), ("RSA2k", 0.005)]
FIRST = [
    "Alice",
    "Bob",
    "Carol",
    "Dave",
    "Erin",
    "Frank",
    "Grace",
    "Heidi",
    "Ivan",
    "Judy",
    "Mallory",
    "Niaj",
    "Olivia",
    "Peggy",
    "Rupert",
    "Sybil",
    "Trent",
    "Victor",
    "Walter",
    "Zoë",
    "José",
    "Łukasz",
    "Søren",
    "Mei",
    "Arjun",
]
LAST = [
    "Smith",
    "Jones",
    "Müller",
    "García",
    "Kowalski",
    "Nguyen",
    "Rossi",
    "Dubois",
    "Tanaka",
    "Ivanova",
    "Öztürk",
    "Silva",
    "Cohen",
    "Novák",
    "Larsen",
]
DOMAINS = [
    f"{w}.example"
    for w in (
        "mail",
        "corp",
        "uni",
        "dev",
        "post",
        "web",
        "net",
        "org",
        "lab",
        "team",
        "home",
        "shop",
        "news",
        "cloud",
        "secure",
        "office",
        "school",
        "city",
        "health",
        "bank",
    )
]


def plan(count: int) -> list[tuple[str, str]]:
    """(suite, user ID) for each certificate: deterministic for a given count."""
    rng = random.Random(11)
    suites = [name for name, _ in MIX]
    weights = [w for _, w in MIX]
    out = []
    for i in range(count):
        first, last = rng.choice(FIRST), rng.choice(LAST)
        local = f"{first.lower()}.{last.lower()}.{i}"
        domain = rng.choice(DOMAINS)
        comment = " (work)" if rng.random() < 0.1 else ""
        out.append((rng.choices(suites, weights)[0], f"{first} {last}{comment} <{local}@{domain}>"))
    return out


def _generate(items: list[tuple[str, str]]) -> bytes:
    import pysequoia

    parts = []
    for suite, uid in items:
        tsk = pysequoia.Tsk.generate(
            user_id=uid,
            cipher_suite=getattr(pysequoia.CipherSuite, suite),
            profile=pysequoia.Profile.RFC4880,
        )
        # Re-parse the public part so no secret key material can reach the file.
        public = pysequoia.Cert.from_bytes(bytes(tsk.extract_certificate()))
        assert not public.has_secret_keys
        parts.append(bytes(public))
    return b"".join(parts)


def generate(count: int, out: Path, progress: bool = True) -> None:
    items = plan(count)
    chunk = 500
    chunks = [items[i : i + chunk] for i in range(0, len(items), chunk)]
    tmp = out.with_name(out.name + ".part")
    started = time.monotonic()
    done = 0
    with tmp.open("wb") as f, ProcessPoolExecutor(os.cpu_count() or 1) as pool:
        for data in pool.map(_generate, chunks):
            f.write(data)
            done += chunk
            if progress:
                rate = min(done, count) / (time.monotonic() - started)
                print(
                    f"\r  generated {min(done, count)}/{count} ({rate:.0f}/s)",
                    end="",
                    file=sys.stderr,
                    flush=True,
                )
    if progress:
        print(file=sys.stderr)
    tmp.rename(out)


if __name__ == "__main__":
    import warnings

    warnings.simplefilter("ignore", DeprecationWarning)
    generate(int(sys.argv[1]), Path(sys.argv[2]))
