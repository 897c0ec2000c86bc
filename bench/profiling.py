"""Where the time goes: profiles of today's code for the cases of ``./bench/run``.

    .venv/bin/python bench/profiling.py serve hkp-get [--seconds 20] [--backend sqlite]
    .venv/bin/python bench/profiling.py import [--attest-emails] [--keys N]

``serve CASE``: Attester serving the Debian keyring (imported with ``--attest-emails``
once, cached in bench/.cache/), pinned to CPU 0, under ``wrk -t1 -c16`` on CPU 1 rotating
over every key or address, sampled by py-spy (installed from PyPI into
bench/.cache/ceiling-venv). Prints the functions with most own time and most inclusive
time, and the share of each layer (uvicorn, Starlette, SQLAlchemy, the database driver,
thread-pool hops, Attester's own code). A flame graph (SVG) is written beside.

``import``: ``attester import`` of the keyring under cProfile; prints the top functions
and how many times each certificate is canonicalised by Sequoia and walked.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench as b

PYSPY = b.CEILING_VENV / "bin" / "py-spy"
RATE = 250  # samples per second

# Layers, by the file a frame comes from (first match wins).
LAYERS = [
    ("uvicorn (HTTP parsing, protocol)", ("uvicorn/", "httptools", "uvloop")),
    ("Starlette (routing, middleware, responses)", ("starlette/",)),
    (
        "anyio / thread-pool hops",
        ("anyio/", "concurrent/futures", "(threading.py", "(queue.py"),
    ),
    ("SQLAlchemy (statement building, execution, rows)", ("sqlalchemy/",)),
    ("database driver (sqlite3 / psycopg)", ("sqlite3/", "psycopg")),
    ("asyncio event loop", ("asyncio/",)),
    ("Attester: store", ("attester/store/",)),
    ("Attester: service", ("attester/service/",)),
    ("Attester: protocols", ("attester/protocols/",)),
    ("Attester: openpgp", ("attester/openpgp/",)),
    ("Attester: other", ("attester/",)),
    ("logging", ("logging/",)),
]


def ensure_pyspy() -> None:
    if not PYSPY.exists():
        subprocess.run([sys.executable, "-m", "venv", str(b.CEILING_VENV)], check=True)
        subprocess.run([str(b.CEILING_VENV / "bin/pip"), "install", "-q", "py-spy"], check=True)


def layer(frame: str) -> str:
    for name, needles in LAYERS:
        if any(n in frame for n in needles):
            return name
    return "other (stdlib, C)"


def summarise_collapsed(path: Path, top: int = 25, expected: int | None = None) -> str:
    """Own and inclusive shares per function, and own time per layer, from py-spy's
    collapsed stacks (``frame;frame;... count``; the leaf is the last frame)."""
    own: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    layers: Counter[str] = Counter()
    layer_incl: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack:
            continue
        count = int(n)
        frames = stack.split(";")
        # py-spy's first frame is the thread ("process 123:..." / "thread (0x..)").
        frames = [f for f in frames if not f.startswith(("process ", "thread "))]
        if not frames:
            continue
        total += count
        own[frames[-1]] += count
        layers[layer(frames[-1])] += count
        for f in set(frames):
            incl[f] += count
        for name in {layer(f) for f in frames}:
            layer_incl[name] += count
    out = io.StringIO()
    out.write(f"{total} samples with the GIL held")
    if expected:
        out.write(f" of {expected} taken ({100 * total / expected:.0f}% of the time)")
    out.write("\n\nown time by layer (leaf frame):\n")
    for name, n in layers.most_common():
        out.write(f"  {100 * n / total:5.1f}%  {name}\n")
    out.write("\nstacks that pass through each layer (inclusive):\n")
    for name, n in layer_incl.most_common():
        out.write(f"  {100 * n / total:5.1f}%  {name}\n")
    out.write(f"\ntop {top} functions by own time:\n")
    for f, n in own.most_common(top):
        out.write(f"  {100 * n / total:5.1f}%  {f}\n")
    out.write(f"\ntop {top} functions by inclusive time:\n")
    for f, n in incl.most_common(top):
        out.write(f"  {100 * n / total:5.1f}%  {f}\n")
    return out.getvalue()


def served_database(backend: str, bench: b.Bench, keyring: Path) -> str:
    """The keyring imported with --attest-emails, cached (SQLite) so profiling starts fast."""
    if backend == "sqlite":
        cached = b.CACHE / "profile-keyring.db"
        if not cached.exists():
            b.log("importing the keyring with --attest-emails once (cached)")
            url = f"sqlite:///{cached}"
            subprocess.run(
                [str(b.ATTESTER), "import", "--attest-emails", str(keyring)],
                env=bench.env(url),
                check=True,
                capture_output=True,
            )
        shutil.copy(cached, bench.tmp / "served.db")
        return f"sqlite:///{bench.tmp / 'served.db'}"
    url = bench.fresh_database("postgresql", "profile")
    subprocess.run(
        [str(b.ATTESTER), "import", "--attest-emails", str(keyring)],
        env=bench.env(url),
        check=True,
        capture_output=True,
    )
    return url


def profile_serve(args: argparse.Namespace) -> None:
    ensure_pyspy()
    ns = argparse.Namespace(
        quick=True,
        runs=1,
        duration=args.seconds,
        backends=[args.backend],
        server_cpus=None,
        wrk_cpus=None,
        sample=None,
        cases=None,
        keys=None,
        keep=False,
    )
    bench = b.Bench(ns)
    try:
        data = b.KEYRING.read_bytes()
        info = b.read_keyring(data)
        keyring = bench.tmp / "keyring.pgp"
        keyring.write_bytes(data)
        url = served_database(args.backend, bench, keyring)
        server = bench.start_attester(args.backend, url)
        www = bench.tmp / "www"
        www.mkdir()
        files = bench.prepare_paths([b.CASE[args.case]], info, [server], None, www)
        out = Path(args.out or (b.RESULTS / f"profile-{args.case}-{args.backend}"))
        out.parent.mkdir(parents=True, exist_ok=True)
        assert server.proc is not None
        # taskset is the group leader; the Python process is its exec'd self (same pid).
        spy = subprocess.Popen(
            [
                str(PYSPY),
                "record",
                "--pid",
                str(server.proc.pid),
                "--rate",
                str(RATE),
                "--duration",
                str(args.seconds),
                "--format",
                "raw",
                "--output",
                f"{out}.txt",
                "--nonblocking",
                # Only the thread holding the GIL: where the one core runs Python (C code
                # called with the GIL held counts for its Python caller). Threads waiting
                # for work and the event loop waiting in epoll are left out.
                "--gil",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        time.sleep(1)
        r = bench.wrk(server, files[args.case], args.conns)
        spy.wait(args.seconds + 30)
        print(
            f"{args.case} on {args.backend}, {args.conns} connections, under py-spy: "
            f"{r['rps']:.0f} req/s, p50 {r['p50_us'] / 1000:.1f} ms, "
            f"p99 {r['p99_us'] / 1000:.1f} ms, {r['errors']} errors\n"
        )
        print(summarise_collapsed(Path(f"{out}.txt"), args.top, RATE * args.seconds))
        b.log(f"collapsed stacks in {out}.txt (flamegraph.pl or speedscope read them)")
    finally:
        bench.cleanup()


def profile_import(args: argparse.Namespace) -> None:
    data = b.KEYRING.read_bytes()
    if args.keys:
        data, _ = b.cut_keyring(data, args.keys)
    tmp = Path(tempfile.mkdtemp(prefix="attester-profile-", dir="/tmp"))
    try:
        keyring = tmp / "keyring.pgp"
        keyring.write_bytes(data)
        os.environ.update(
            ATTESTER_DATABASE_URL=f"sqlite:///{tmp / 'import.db'}",
            ATTESTER_MAIL_URL=f"file://{tmp / 'outbox'}",
        )
        from attester.cli import app

        argv = ["import", *(["--attest-emails"] if args.attest_emails else []), str(keyring)]
        prof = cProfile.Profile()
        started = time.monotonic()
        prof.enable()
        try:
            app(argv, standalone_mode=False)
        finally:
            prof.disable()
        elapsed = time.monotonic() - started
        out = Path(
            args.out
            or (b.RESULTS / f"profile-import{'-attest' if args.attest_emails else ''}.pstats")
        )
        out.parent.mkdir(parents=True, exist_ok=True)
        prof.dump_stats(out)
        n = b.read_keyring(data).certificates
        print(
            f"attester import {' '.join(argv[1:-1])} of {n} certificates: {elapsed:.1f} s "
            f"under cProfile ({n / elapsed:.0f} keys/s)\n"
        )
        st = pstats.Stats(str(out))
        calls = {
            f"{Path(k[0]).parent.name}/{Path(k[0]).name}:{k[2]}": v[1]
            for k, v in st.stats.items()  # type: ignore[attr-defined]
        }
        for name in (
            "_sequoia.py:canonicalise",
            "_walk.py:walk",
            "certificates.py:_parse_one",
            "certificates.py:publishable",
            "keys.py:refresh_published",
        ):
            hits = {k: c for k, c in calls.items() if k.endswith(name)}
            for k, c in hits.items():
                print(f"  {k}: {c} calls, {c / n:.1f} per certificate")
        print()
        for sort in ("tottime", "cumulative"):
            s = io.StringIO()
            pstats.Stats(str(out), stream=s).sort_stats(sort).print_stats(args.top)
            print(s.getvalue())
        b.log(f"profile in {out} (python -m pstats, snakeviz)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(prog="bench/profiling.py", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="what", required=True)
    s = sub.add_parser("serve", help="py-spy on the server under wrk")
    s.add_argument("case", choices=[c.key for c in b.CASES])
    s.add_argument("--backend", choices=["sqlite", "postgresql"], default="sqlite")
    s.add_argument("--seconds", type=int, default=20)
    s.add_argument("--conns", type=int, default=16)
    s.add_argument("--top", type=int, default=25)
    s.add_argument("--out")
    m = sub.add_parser("summary", help="summarise a collapsed-stack file again")
    m.add_argument("file", type=Path)
    m.add_argument("--top", type=int, default=25)
    m.add_argument("--expected", type=int)
    i = sub.add_parser("import", help="cProfile of attester import")
    i.add_argument("--attest-emails", action="store_true")
    i.add_argument("--keys", type=int)
    i.add_argument("--top", type=int, default=40)
    i.add_argument("--out")
    args = ap.parse_args()
    if args.what == "serve":
        profile_serve(args)
    elif args.what == "summary":
        print(summarise_collapsed(args.file, args.top, args.expected))
    else:
        profile_import(args)


if __name__ == "__main__":
    main()
