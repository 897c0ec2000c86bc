"""The ``attester`` command: serve, import keyrings, manage the database."""

from __future__ import annotations

import logging
import socket
import sys
from pathlib import Path
from typing import Annotated

import typer
import uvicorn
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

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

err = Console(stderr=True)
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


class _Server(uvicorn.Server):
    """Logs where it listens only once the socket accepts connections (port 0 resolved)."""

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started and self.servers:
            for s in self.servers[0].sockets:
                host, port = s.getsockname()[:2]
                shown = f"[{host}]" if ":" in host else host
                log.info("Attester listening on http://%s:%d", shown, port)


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Address to listen on [127.0.0.1].")] = None,
    port: Annotated[
        int | None, typer.Option(help="Port to listen on (0: any free) [8080].")
    ] = None,
    config: ConfigOpt = None,
) -> None:
    """Run the key server (applies database migrations first)."""
    from attester.app import create_app

    settings = _settings(config, host=host, port=port)
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    server = _Server(
        uvicorn.Config(
            create_app(settings),
            host=settings.host,
            port=settings.port,
            log_level=settings.log_level,
            proxy_headers=True,
            server_header=False,
        )
    )
    server.run()
    if not server.started:
        raise typer.Exit(1)


@app.command("import")
def import_(
    files: Annotated[
        list[str], typer.Argument(help="Keyring files (armored or binary); - for stdin.")
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
    config: ConfigOpt = None,
) -> None:
    """Merge certificates from keyrings into the store and print a summary."""
    from attester.service.attestation import Attestation, mail_settings
    from attester.service.core import Core, ImportSummary
    from attester.service.errors import ServiceError
    from attester.store.db import open_database, upgrade

    if domain and not attest_emails:
        err.print("[red]error:[/] --domain only makes sense with --attest-emails")
        raise typer.Exit(2)
    settings = _settings(config)
    db = open_database(settings.database_url)
    upgrade(db)
    service = Attestation(Core(settings, db), mail_settings(settings))
    summary = ImportSummary()
    failed = False
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]} keys/s"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=False,
    ) as progress:
        for name in files:
            task = progress.add_task(name, total=None, rate="-")

            def advance(n: int, total: int, task: TaskID = task) -> None:
                progress.update(task, total=total, advance=n)
                speed = next(t for t in progress.tasks if t.id == task).speed
                progress.update(task, rate=f"{speed:.0f}" if speed else "-")

            try:
                data = sys.stdin.buffer.read() if name == "-" else Path(name).read_bytes()
                service.import_keyring(
                    data,
                    source="import",
                    attest_emails=attest_emails,
                    domains=domain,
                    summary=summary,
                    progress=advance,
                )
            except OSError as e:
                err.print(f"[red]error:[/] cannot read {name}: {e.strerror}")
                failed = True
            except ServiceError as e:
                err.print(f"[red]error:[/] {name}: {e.message}")
                failed = True
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
    if attest_emails:
        table.add_row("addresses attested", str(summary.attested))
    Console().print(table)
    for reason, n in summary.reasons.most_common():
        Console().print(f"  rejected {n} x: {reason}")
    if failed:
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


def main() -> None:
    app()
