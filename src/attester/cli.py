"""The ``attester`` command: serve, import keyrings, manage the database."""

from __future__ import annotations

import functools
import logging
import os
import re
import socket
import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from attester.admin.cli import app as admin_app
from attester.config import ConfigError, Settings, load_settings

app = typer.Typer(
    help="Attester: an OpenPGP public key server that attests email identities.\n\n"
    "Configuration comes from the TOML file named by --config or $ATTESTER_CONFIG and from "
    "ATTESTER_* environment variables (see docs/configuration.md).",
    no_args_is_help=True,
    add_completion=False,
)
db_app = typer.Typer(help="Database maintenance.", no_args_is_help=True)
app.add_typer(db_app, name="db")
recon_app = typer.Typer(
    help="SKS reconciliation with SKS and Hockeypuck peers (docs/federation.md).",
    no_args_is_help=True,
)
app.add_typer(recon_app, name="recon")
app.add_typer(admin_app, name="admin")

err = Console(stderr=True)
_PEER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
log = logging.getLogger("attester")

ConfigOpt = Annotated[
    Path | None, typer.Option("--config", "-c", help="TOML configuration file.", exists=False)
]


def _settings(config: Path | None, **overrides: object) -> Settings:
    try:
        return load_settings(config, **{k: v for k, v in overrides.items() if v is not None})
    except ConfigError as e:
        err.print(f"[red]error:[/] {e}")
        raise typer.Exit(2) from e


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Address to listen on [127.0.0.1].")] = None,
    port: Annotated[
        int | None, typer.Option(help="Port to listen on (0: any free) [8080].")
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            min=0, help="Processes serving the port [0: one per core this process may use]."
        ),
    ] = None,
    config: ConfigOpt = None,
) -> None:
    """Run the key server (applies database migrations first)."""
    from attester.http.workers import cpu_count, supervise
    from attester.store.db import open_database, upgrade

    settings = _settings(config, host=host, port=port, workers=workers)
    _configure_logging(settings)
    count = settings.workers or cpu_count()
    if count == 1:
        if not _serve_one(settings, config, 0, None):
            raise typer.Exit(1)
        return
    # Migrate once, before the workers race to (they would take turns on PostgreSQL, and
    # SQLite's schema lock would make all but one wait).
    db = open_database(settings.database_url)
    upgrade(db)
    db.dispose()
    family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((settings.host, settings.port))
    except OSError as e:
        err.print(f"[red]error:[/] cannot listen on {settings.host}:{settings.port}: {e}")
        raise typer.Exit(1) from e
    sock.listen(2048)
    sock.set_inheritable(True)
    log.info("Attester starting %d workers", count)
    supervise(functools.partial(_worker, settings, config), sock, count)


def _configure_logging(settings: Settings) -> None:
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


def _worker(settings: Settings, config: Path | None, index: int, sock: socket.socket) -> None:
    """One worker process of ``serve --workers`` (spawned: configures itself)."""
    _configure_logging(settings)
    if not _serve_one(settings, config, index, sock):
        sys.exit(1)


def _serve_one(
    settings: Settings, config: Path | None, index: int, sock: socket.socket | None
) -> bool:
    """Serve until stopped; False when the server could not start. Worker 0 runs the jobs
    one server needs only once (``create_app``'s ``singletons``). SIGHUP and the admin API
    re-read the same file and environment (``reload``; not the flags, which set nothing the
    policy depends on)."""
    # Imported here: the other commands need no server (uvicorn is a tenth of a second
    # of every command's start).
    import uvicorn

    from attester.app import create_app
    from attester.http.server import ListeningServer, protocol

    server = ListeningServer(
        uvicorn.Config(
            create_app(
                settings, reload=functools.partial(load_settings, config), singletons=index == 0
            ),
            host=settings.host,
            port=settings.port,
            log_level=settings.log_level,
            # uvicorn builds each access line's parts before its logger checks the level:
            # at a level that drops them (warning and above) they are not built at all.
            access_log=settings.access_log and log.isEnabledFor(logging.INFO),
            proxy_headers=True,
            forwarded_allow_ips=list(settings.forwarded_allow_ips),
            server_header=False,
            # Front-end bounds (docs/security.md): a stalled request is dropped, headers
            # are bounded, connections capped (more get 503), idle keep-alive closed.
            http=protocol(settings.request_timeout_seconds, settings.max_header_bytes),
            limit_concurrency=settings.max_connections,
            timeout_keep_alive=settings.keep_alive_seconds,
            timeout_graceful_shutdown=10,
        )
    )
    server.run(sockets=[sock] if sock is not None else None)
    return bool(server.started)


@app.command("import")
def import_(
    files: Annotated[
        list[str],
        typer.Argument(
            help="Keyrings or keyserver dumps (binary or armored; gzip and bzip2 are "
            "unpacked); - for stdin."
        ),
    ],
    attest_emails: Annotated[
        bool,
        typer.Option(
            "--attest-emails",
            help="Vouch for the email user IDs as the operator (directory import): they become "
            "findable by email. Without it nothing becomes findable by email.",
        ),
    ] = False,
    domain: Annotated[
        list[str] | None,
        typer.Option(
            "--domain", help="With --attest-emails: only addresses of this domain (repeatable)."
        ),
    ] = None,
    mirror: Annotated[
        str | None,
        typer.Option(
            "--mirror",
            help="The dump is a copy of this keyserver (e.g. keyserver.ubuntu.com): keys keep "
            "it as their origin, and its user IDs are served by email, marked with it, "
            "while no address is attested here. Never attested.",
        ),
    ] = None,
    batch_size: Annotated[
        int, typer.Option("--batch-size", min=1, help="Certificates per transaction.")
    ] = 100,
    config: ConfigOpt = None,
) -> None:
    """Merge certificates from keyrings or keyserver dumps into the store, streaming, and
    print a summary. A rerun skips what is already stored unchanged, so an interrupted
    import resumes."""
    from attester.admin.client import cli_actor
    from attester.federation import DumpImporter, DumpSummary, DumpUnreadable
    from attester.service.core import Core
    from attester.service.errors import ServiceError
    from attester.service.parsing import ParsePool
    from attester.store.audit import Actor, ActorKind
    from attester.store.db import open_database, upgrade

    if domain and not attest_emails:
        err.print("[red]error:[/] --domain only makes sense with --attest-emails")
        raise typer.Exit(2)
    if mirror and attest_emails:
        err.print("[red]error:[/] mirrored keys are never attested: drop --attest-emails")
        raise typer.Exit(2)
    if mirror and not _PEER_NAME.match(mirror):
        err.print("[red]error:[/] --mirror takes a name of letters, digits, '.', '_' and '-'")
        raise typer.Exit(2)
    settings = _settings(config)
    db = open_database(settings.database_url)
    upgrade(db)
    core = Core(settings, db)
    # Parsing on every core (``parse_workers``) while this process writes.
    pool = ParsePool(settings.parse_workers, settings.parse_timeout_seconds).start()
    core.use_parser(pool)
    importer = DumpImporter(
        core,
        mirror=mirror,
        attest_emails=attest_emails,
        domains=domain,
        batch_size=batch_size,
        actor=Actor(ActorKind.IMPORT, cli_actor().name),
    )
    summary = DumpSummary()
    failed = False
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TextColumn("{task.fields[keys]} keys, {task.fields[rate]} keys/s"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=err,
        transient=False,
    ) as progress:
        for name in files:
            try:
                f = sys.stdin.buffer if name == "-" else open(name, "rb")  # noqa: SIM115 - closed below
            except OSError as e:
                err.print(f"[red]error:[/] cannot read {name}: {e.strerror}")
                failed = True
                continue
            size = None if name == "-" else os.fstat(f.fileno()).st_size
            task = progress.add_task(Path(name).name, total=size, keys=0, rate="-")
            started = time.monotonic()
            done = 0

            def advance(
                n: int, position: int, task: TaskID = task, started: float = started
            ) -> None:
                nonlocal done
                done += n
                rate = done / max(time.monotonic() - started, 1e-6)
                progress.update(task, completed=position, keys=done, rate=f"{rate:.0f}")

            try:
                importer.load(f, summary, advance)
            except DumpUnreadable as e:
                err.print(f"[red]error:[/] {name}: {e}")
                failed = True
            except ServiceError as e:
                err.print(f"[red]error:[/] {name}: {e.message}")
                failed = True
            except OSError as e:
                err.print(f"[red]error:[/] cannot read {name}: {e.strerror or e}")
                failed = True
            finally:
                if f is not sys.stdin.buffer:
                    f.close()
    pool.close()
    db.dispose()
    table = Table(title="Import summary")
    table.add_column("result")
    table.add_column("certificates", justify="right")
    for label, n in (
        ("new", summary.new),
        ("updated", summary.updated),
        ("unchanged", summary.unchanged),
        ("rejected", summary.rejected),
    ):
        table.add_row(label, str(n))
    if summary.skipped:
        table.add_row("(already stored, skipped)", str(summary.skipped))
    if attest_emails:
        table.add_row("addresses attested", str(summary.attested))
        if summary.refused:
            table.add_row("addresses refused (policy, removals)", str(summary.refused))
    Console().print(table)
    for reason, n in summary.reasons.most_common():
        Console().print(f"  rejected {n} x: {reason}")
    if failed:
        raise typer.Exit(1)


@app.command("export")
def export(
    directory: Annotated[Path, typer.Argument(help="Folder to write the dump files into.")],
    select: Annotated[
        str,
        typer.Option(
            "--select",
            help="all: every key; local: keys no mirror or upstream supplied; attested: keys "
            "with an address attested here.",
        ),
    ] = "all",
    published_only: Annotated[
        bool,
        typer.Option(
            "--published-only",
            help="Write each key as lookups serve it (only user IDs attested here) instead "
            "of whole (every user ID and third-party signature, as SKS dumps do).",
        ),
    ] = False,
    shard_size: Annotated[
        int, typer.Option("--shard-size", min=1, help="Keys per dump file.")
    ] = 15000,
    prefix: Annotated[str, typer.Option(help="Dump file name prefix.")] = "keydump-",
    gzip_: Annotated[bool, typer.Option("--gzip", help="Compress each file with gzip.")] = False,
    config: ConfigOpt = None,
) -> None:
    """Write the stored keys as keyserver dumps (binary certificates, PREFIX0000.pgp...),
    which attester import and sks build read."""
    from attester.federation import export_dump
    from attester.store.db import open_database, upgrade
    from attester.store.origins import ExportSelection, OriginStore

    try:
        selection = ExportSelection(select)
    except ValueError as e:
        err.print("[red]error:[/] --select is one of all, local, attested")
        raise typer.Exit(2) from e
    settings = _settings(config)
    db = open_database(settings.database_url)
    upgrade(db)
    with Progress(
        TextColumn("exporting"),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=False,
    ) as progress:
        task = progress.add_task("export", total=None)
        summary = export_dump(
            OriginStore(db),
            directory,
            selection=selection,
            published_only=published_only,
            shard_size=shard_size,
            prefix=prefix,
            compress=gzip_,
            progress=lambda n: progress.advance(task, n),
        )
    db.dispose()
    Console().print(f"{summary.keys} keys written to {len(summary.files)} file(s) in {directory}")


@app.command("mirror-refresh")
def mirror_refresh(
    name: Annotated[str, typer.Argument(help="A configured upstream (see upstreams).")],
    fingerprints: Annotated[
        list[str] | None,
        typer.Argument(help="Fingerprints to fetch now (seeds a mirror of a VKS server)."),
    ] = None,
    limit: Annotated[
        int, typer.Option(help="At most this many known keys that are due, besides those.")
    ] = 1000,
    config: ConfigOpt = None,
) -> None:
    """Pull-mirror once: fetch the given fingerprints and the known keys of this upstream
    that are due, at its configured rate, merging updates such as revocations."""
    from attester.federation import Federation
    from attester.openpgp.errors import InvalidIdentifier
    from attester.openpgp.types import Fingerprint
    from attester.service.core import Core
    from attester.store.db import open_database, upgrade

    settings = _settings(config)
    if name not in {u.name for u in settings.upstreams}:
        err.print(f"[red]error:[/] {name!r} is not a configured upstream")
        raise typer.Exit(2)
    try:
        seeds = [Fingerprint.parse(f) for f in fingerprints or []]
    except InvalidIdentifier as e:
        err.print(f"[red]error:[/] {e}")
        raise typer.Exit(2) from e
    db = open_database(settings.database_url)
    upgrade(db)
    federation = Federation(settings, Core(settings, db))
    try:
        mirror = federation.mirror(name)
        summary = mirror.refresh([*seeds, *(f for f in mirror.due(limit) if f not in seeds)])
    finally:
        federation.close()
        db.dispose()
    Console().print(
        f"{name}: {summary.new} new, {summary.updated} updated, {summary.unchanged} unchanged, "
        f"{summary.withdrawn} withdrawn, {summary.failed} failed"
    )
    if summary.failed:
        raise typer.Exit(1)


@db_app.command("upgrade")
def db_upgrade(config: ConfigOpt = None) -> None:
    """Apply pending schema migrations (the server also does this on start)."""
    from attester.store.db import open_database, upgrade

    settings = _settings(config)
    db = open_database(settings.database_url)
    upgrade(db)
    db.dispose()
    Console().print("database is up to date")


@recon_app.command("rebuild")
def recon_rebuild(config: ConfigOpt = None) -> None:
    """Build the reconciliation prefix tree afresh from the stored keys (streaming)."""
    from attester.store.db import open_database, upgrade
    from attester.store.recon import ReconStore

    settings = _settings(config)
    db = open_database(settings.database_url)
    upgrade(db)
    started = time.monotonic()
    with Progress(
        TextColumn("rebuilding"),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=False,
    ) as progress:
        tree = ReconStore(db)
        task = progress.add_task("rebuild", total=tree.digest_count())
        summary = tree.rebuild(progress=lambda n: progress.advance(task, n))
    db.dispose()
    Console().print(
        f"recon tree rebuilt: {summary.elements} keys, {summary.nodes} nodes "
        f"in {time.monotonic() - started:.1f} s"
    )


@recon_app.command("check")
def recon_check(config: ConfigOpt = None) -> None:
    """Verify the reconciliation prefix tree against the stored key digests; exit 1 and
    list the differences when they disagree."""
    from attester.store.db import open_database, upgrade
    from attester.store.recon import ReconStore

    settings = _settings(config)
    db = open_database(settings.database_url)
    upgrade(db)
    report = ReconStore(db).check()
    db.dispose()
    out = Console()
    out.print(
        f"{report.digests} stored digests, {report.elements} tree elements, "
        f"{report.nodes} nodes checked"
    )
    if report.ok:
        out.print("the recon tree matches the stored keys")
        return
    out.print(f"{report.missing} stored digest(s) missing from the tree")
    out.print(f"{report.extra} tree element(s) no stored key has")
    for line in report.samples:
        out.print(f"  {line}")
    out.print(f"{report.problem_count} node problem(s)")
    for line in report.problems:
        out.print(f"  {line}")
    out.print("run `attester recon rebuild` to rebuild the tree")
    raise typer.Exit(1)


@recon_app.command("sync")
def recon_sync(
    peer: Annotated[
        str,
        typer.Argument(
            help="HOST:PORT of the peer's recon port (its recon_peers entry is used when "
            "there is one, else SKS's defaults)."
        ),
    ],
    config: ConfigOpt = None,
) -> None:
    """Run one reconciliation session with a peer (we connect, it drives), fetch the keys
    we lack from it, and print what was exchanged. Exits 0 when the session completed."""
    import asyncio

    from prometheus_client import CollectorRegistry

    from attester.config import ReconPeer
    from attester.service.core import Core
    from attester.service.parsing import ParsePool
    from attester.service.recon import prepare_tree, recon_service
    from attester.store.db import open_database, upgrade

    settings = _settings(config)
    db = open_database(settings.database_url)
    upgrade(db)
    core = Core(settings, db)
    prepare_tree(core)
    # The peer's keys are parsed as uploads are: in worker processes, on every core, each
    # share within ``parse_timeout_seconds``.
    pool = ParsePool(settings.parse_workers, settings.parse_timeout_seconds)
    core.use_parser(pool)

    async def run() -> object:
        service = recon_service(core, CollectorRegistry())
        try:
            target = service.find(peer)
            if target is None:
                try:
                    target = ReconPeer.model_validate({"address": peer})
                except ValueError as e:
                    err.print(f"[red]error:[/] {peer!r} is not HOST:PORT")
                    raise typer.Exit(2) from e
            return await service.sync(target)
        finally:
            await service.close()

    from attester.recon.service import Report

    try:
        report = asyncio.run(run())
    finally:
        pool.close()
        db.dispose()
    assert isinstance(report, Report)
    out = Console()
    out.print(
        f"peer {report.peer}: {report.outcome}" + (f" ({report.problem})" if report.problem else "")
    )
    if report.remote is not None:
        r = report.remote
        out.print(
            f"  peer announces version {r.version}, http port {r.http_port}, filters {r.filters}"
        )
    out.print(
        f"  {report.requests} requests answered in {report.seconds:.2f} s"
        + (" (stopped at recon_max_missing)" if report.truncated else "")
    )
    out.print(f"  keys the peer has and we lacked: {report.missing_here}")
    for k in ("new", "updated", "unchanged", "rejected", "known", "not_returned", "unrequested"):
        if report.recovered.get(k):
            out.print(f"    {k}: {report.recovered[k]}")
    out.print(f"  keys we told the peer it lacks (it fetches them from us): {report.missing_there}")
    for d in report.sample_there:
        out.print(f"    {d}")
    if not report.completed:
        raise typer.Exit(1)


def main() -> None:
    app()
