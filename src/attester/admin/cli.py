"""``attester admin``: the admin operations on the local database (the configuration's
``database_url``), or on a running server through its admin API with ``--server URL
--token TOKEN`` (or ``ATTESTER_ADMIN_SERVER`` / ``ATTESTER_ADMIN_TOKEN``). Rich tables for
people; ``--json`` for scripts (one JSON object, or JSON lines for lists)."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from attester.admin.client import Admin, AdminError, Local, Remote, cli_actor
from attester.config import ConfigError, Settings, load_settings
from attester.store.errors import StoreError

app = typer.Typer(
    help="Administration: keys, attestations, removals from distribution, the policy, the "
    "audit log and access tokens. Works on the database of the configuration, or with "
    "--server and --token on a running server through its admin API.",
    no_args_is_help=True,
)
token_app = typer.Typer(help="Access tokens (on the database itself).", no_args_is_help=True)
policy_app = typer.Typer(
    help="The policy: deployment modes and the rules per domain.", no_args_is_help=True
)
app.add_typer(token_app, name="token")
app.add_typer(policy_app, name="policy")

out = Console()
err = Console(stderr=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
ReasonOpt = Annotated[str | None, typer.Option("--reason", help="Why (kept in the audit log).")]


class _Target:
    """Where commands go: set by the group's options."""

    server: str | None = None
    token: str | None = None
    config: Path | None = None


@app.callback()
def _options(
    server: Annotated[
        str | None,
        typer.Option(
            "--server",
            envvar="ATTESTER_ADMIN_SERVER",
            help="Base URL of a running server (with its path prefix); default: the local "
            "database.",
        ),
    ] = None,
    token: Annotated[
        str | None,
        typer.Option("--token", envvar="ATTESTER_ADMIN_TOKEN", help="Admin token for --server."),
    ] = None,
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="TOML configuration file.")
    ] = None,
) -> None:
    _Target.server, _Target.token, _Target.config = server, token, config


def _settings() -> Settings:
    try:
        return load_settings(_Target.config)
    except ConfigError as e:
        err.print(f"[red]error:[/] {e}")
        raise typer.Exit(2) from e


@contextmanager
def _admin() -> Iterator[Admin]:
    if _Target.server:
        if not _Target.token:
            err.print("[red]error:[/] --server needs --token (or ATTESTER_ADMIN_TOKEN)")
            raise typer.Exit(2)
        client: Admin = Remote(_Target.server, _Target.token)
    else:
        client = Local(_settings())
    try:
        yield client
    except AdminError as e:
        err.print(f"[red]error:[/] {e.message}")
        raise typer.Exit(1) from e
    except StoreError as e:
        err.print(f"[red]error:[/] {e}")
        raise typer.Exit(1) from e
    finally:
        client.close()


def _print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, sort_keys=True) + "\n")


def _selector(fingerprint: str | None, email: str | None, domain: str | None) -> dict[str, str]:
    given = {
        k: v for k, v in (("fingerprint", fingerprint), ("email", email), ("domain", domain)) if v
    }
    if len(given) != 1:
        err.print("[red]error:[/] give exactly one of --fingerprint, --email, --domain")
        raise typer.Exit(2)
    return given


FprOpt = Annotated[
    str | None, typer.Option("--fingerprint", help="A key (any of its fingerprints).")
]
EmailOpt = Annotated[str | None, typer.Option("--email", help="An address, on every key.")]
DomainOpt = Annotated[str | None, typer.Option("--domain", help="Every address of a domain.")]


# ---- keys


def _yes(v: bool) -> str:
    return "yes" if v else ""


def _key_table(keys: list[dict[str, Any]], title: str) -> Table:
    table = Table(title=title)
    # A fingerprint cut short is of no use: it keeps its width, the others wrap.
    table.add_column("fingerprint", no_wrap=True, min_width=40)
    for col in ("addresses", "attested", "removed", "source", "updated"):
        table.add_column(col, overflow="fold")
    for k in keys:
        removed = "key" if k["removed"] else ", ".join(k["removed_addresses"])
        table.add_row(
            k["fingerprint"],
            "\n".join(k["addresses"]),
            "\n".join(k["attested"]),
            removed,
            k["source"],
            k["updated"] or "",
        )
    return table


@app.command("keys")
def keys(
    domain: Annotated[
        str | None, typer.Option(help="An address of the key is at this domain.")
    ] = None,
    origin: Annotated[
        str | None, typer.Option(help="local, upstream, mirror, upstream:NAME or mirror:NAME.")
    ] = None,
    attested: Annotated[
        bool | None,
        typer.Option("--attested/--not-attested", help="Some address is attested here."),
    ] = None,
    removed: Annotated[
        bool | None,
        typer.Option("--removed/--not-removed", help="The key or an address on it is removed."),
    ] = None,
    search: Annotated[
        str | None, typer.Option("--search", help="Text in a user ID, or a fingerprint's start.")
    ] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="At most this many.")] = None,
    after: Annotated[int | None, typer.Option(help="Continue after this cursor (next).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """List stored keys, with filters."""
    params = {
        "domain": domain,
        "origin": origin,
        "attested": None if attested is None else str(attested).lower(),
        "removed": None if removed is None else str(removed).lower(),
        "q": search,
        "limit": str(limit) if limit else None,
        "after": str(after) if after else None,
    }
    with _admin() as admin:
        page = admin.keys(params)
    if as_json:
        for k in page["keys"]:
            _print_json(k)
        return
    out.print(_key_table(page["keys"], f"{len(page['keys'])} key(s)"))
    if page.get("next"):
        out.print(f"more: --after {page['next']}")


def _show_key(k: dict[str, Any]) -> None:
    out.print(f"[bold]{k['fingerprint']}[/]  {k['algorithm']} {k['bits']}  source {k['source']}")
    flags = [f for f, on in (("revoked", k["revoked"]), ("REMOVED", k["removed"])) if on]
    if flags:
        out.print("  " + ", ".join(flags))
    uids = Table(title="user IDs")
    for col in ("user ID", "attested", "at", "revoked", "removed"):
        uids.add_column(col)
    for u in k["user_ids"]:
        uids.add_row(
            u["uid"],
            u["attested_by"] or "",
            u["attested_at"] or "",
            _yes(u["revoked"]),
            _yes(u["removed"]),
        )
    out.print(uids)
    for r in k.get("removals", []):
        out.print(f"  removal in force: {r['kind']} {r['value']}: {r['reason']} ({r['actor']})")
    if k.get("history"):
        out.print(_audit_table(k["history"], "history"))


@app.command("key")
def key(
    fingerprint: Annotated[str, typer.Argument(help="Fingerprint of the key or a subkey.")],
    as_json: JsonOpt = False,
) -> None:
    """One key: its user IDs, attestations, removals and full audit history."""
    with _admin() as admin:
        k = admin.key(fingerprint)
    if as_json:
        _print_json(k)
    else:
        _show_key(k)


@app.command("attest")
def attest(
    fingerprint: Annotated[str, typer.Argument()],
    email: Annotated[str, typer.Argument()],
    reason: ReasonOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Attest an address of a key as the operator (policy and removals apply)."""
    with _admin() as admin:
        k = admin.attest(fingerprint, email, reason)
    if as_json:
        _print_json(k)
    else:
        done = "attested" if k["changed"] else "was attested already"
        out.print(f"{email} {done} on {k['fingerprint']}")


@app.command("unattest")
def unattest(
    fingerprint: Annotated[str, typer.Argument()],
    email: Annotated[str, typer.Argument()],
    reason: ReasonOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Withdraw an attested address from a key."""
    with _admin() as admin:
        k = admin.unattest(fingerprint, email, reason)
    if as_json:
        _print_json(k)
    else:
        out.print(f"{email} is no longer attested on {k['fingerprint']}")


@app.command("resend")
def resend(
    fingerprint: Annotated[str, typer.Argument()],
    email: Annotated[str, typer.Argument()],
    as_json: JsonOpt = False,
) -> None:
    """Mail a fresh verification link for an address of a key now."""
    with _admin() as admin:
        result = admin.resend(fingerprint, email)
    if as_json:
        _print_json(result)
    else:
        out.print(f"a verification link for {email} is queued")


# ---- removals


def _outcome(result: dict[str, Any], verb: str) -> None:
    r = result["removal"]
    if not result["changed"]:
        out.print(f"{r['kind']} {r['value']} was removed already ({r['reason']}); nothing changed")
        return
    out.print(f"{r['kind']} {r['value']} {verb}; {result['certificates']} stored key(s) affected")


@app.command("remove")
def remove(
    fingerprint: FprOpt = None,
    email: EmailOpt = None,
    domain: DomainOpt = None,
    reason: Annotated[str, typer.Option("--reason", help="Why (kept in the audit log).")] = "",
    as_json: JsonOpt = False,
) -> None:
    """Remove a key, an address or a whole domain from distribution (every protocol, at
    once, on every running server), until restored."""
    selector = _selector(fingerprint, email, domain)
    if not reason.strip():
        err.print("[red]error:[/] --reason is required: say why (it is kept in the audit log)")
        raise typer.Exit(2)
    with _admin() as admin:
        result = admin.remove(selector, reason)
    if as_json:
        _print_json(result)
    else:
        _outcome(result, "removed from distribution")


@app.command("restore")
def restore(
    fingerprint: FprOpt = None,
    email: EmailOpt = None,
    domain: DomainOpt = None,
    reason: ReasonOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Lift a removal: what is attested is served again."""
    selector = _selector(fingerprint, email, domain)
    with _admin() as admin:
        result = admin.restore(selector, reason)
    if as_json:
        _print_json(result)
    else:
        _outcome(result, "restored")


@app.command("removals")
def removals(as_json: JsonOpt = False) -> None:
    """The removals in force."""
    with _admin() as admin:
        found = admin.removals()["removals"]
    if as_json:
        for r in found:
            _print_json(r)
        return
    table = Table(title=f"{len(found)} removal(s) in force")
    for col in ("kind", "value", "reason", "since", "by"):
        table.add_column(col, overflow="fold")
    for r in found:
        table.add_row(
            r["kind"], r["value"], r["reason"], r["created"], f"{r['actor_kind']}:{r['actor']}"
        )
    out.print(table)


# ---- audit, stats, policy


def _audit_table(entries: list[dict[str, Any]], title: str) -> Table:
    table = Table(title=title)
    for col in ("at", "who", "from", "action", "what", "reason", "detail"):
        table.add_column(col, overflow="fold")
    for e in entries:
        what = " ".join(x for x in (e["fingerprint"], e["email"], e["domain"]) if x)
        table.add_row(
            e["at"][:19].replace("T", " "),
            f"{e['actor_kind']}:{e['actor']}",
            e["client_address"] or "",
            e["action"],
            what,
            e["reason"] or "",
            _detail(e["detail"]),
        )
    return table


def _detail(text: str | None) -> str:
    """A JSON detail as ``key value`` lines, for people."""
    if not text:
        return ""
    try:
        value = json.loads(text)
    except ValueError:
        return text
    if not isinstance(value, dict):
        return text
    return "\n".join(
        f"{k} {', '.join(map(str, v)) if isinstance(v, list) else v}" for k, v in value.items()
    )


@app.command("audit")
def audit(
    as_json: Annotated[
        bool, typer.Option("--json", help="JSON lines, one entry per line.")
    ] = False,
    since: Annotated[str | None, typer.Option(help="From this ISO 8601 time.")] = None,
    until: Annotated[str | None, typer.Option(help="Before this ISO 8601 time.")] = None,
    action: Annotated[str | None, typer.Option(help="remove, restore, attest, ...")] = None,
    actor: Annotated[str | None, typer.Option(help="Token name, OS user, address...")] = None,
    actor_kind: Annotated[
        str | None,
        typer.Option("--actor-kind", help="token, cli, email, oidc, import, owner, system."),
    ] = None,
    fingerprint: FprOpt = None,
    email: EmailOpt = None,
    domain: DomainOpt = None,
) -> None:
    """The audit log, oldest first: who changed what, when, from where, and why."""
    params: dict[str, str | None] = {
        "since": since,
        "until": until,
        "action": action,
        "actor": actor,
        "actor_kind": actor_kind,
        "fingerprint": fingerprint,
        "email": email,
        "domain": domain,
    }
    with _admin() as admin:
        if as_json:
            for entry in admin.audit(params):
                _print_json(entry)
            return
        entries = list(admin.audit(params))
    out.print(_audit_table(entries, f"audit log: {len(entries)} entries"))


@app.command("stats")
def stats(as_json: JsonOpt = False) -> None:
    """What is served and what is stored."""
    with _admin() as admin:
        result = admin.stats()
    if as_json:
        _print_json(result)
        return
    table = Table(title="statistics")
    table.add_column("")
    table.add_column("count", justify="right")
    for group, counts in result.items():
        for name, n in counts.items():
            table.add_row(f"{group}: {name.replace('_', ' ')}", str(n))
    out.print(table)


@policy_app.command("show")
def policy_show(as_json: JsonOpt = False) -> None:
    """The policy in force (on --server) or in the configuration (locally)."""
    with _admin() as admin:
        result = admin.policy()
    if as_json:
        _print_json(result)
        return
    _policy_table(result)


def _policy_table(p: dict[str, Any]) -> None:
    out.print("modes: " + ", ".join(f"{k} {v}" for k, v in p["modes"].items()))
    out.print("internal networks: " + (", ".join(p["internal_networks"]) or "none"))
    table = Table(title="rules per domain (first match wins)")
    for col in ("domain", "submit", "oidc", "upstream", "outside", "several keys"):
        table.add_column(col)
    for r in p["domains"]:
        table.add_row(
            r["domain"],
            ", ".join(r["submit"]) or "nothing",
            f"{r['oidc_publish']} {' '.join(r['oidc_issuers'])}".strip(),
            _upstream(r["upstream"]),
            _yes(r["serve_outside"]) or "no",
            "default"
            if r["multiple_keys_per_address"] is None
            else str(r["multiple_keys_per_address"]),
        )
    out.print(table)


def _upstream(value: bool | list[str] | None) -> str:
    if value is None:
        return "default"
    if isinstance(value, list):
        return ", ".join(value) or "no"
    return "yes" if value else "no"


@policy_app.command("check")
def policy_check(as_json: JsonOpt = False) -> None:
    """Validate the configuration file's policy (what a reload would load)."""
    policy = _settings().make_policy().describe()
    if as_json:
        _print_json(policy)
    else:
        _policy_table(policy)
        out.print("the policy is valid")


@policy_app.command("reload")
def policy_reload(as_json: JsonOpt = False) -> None:
    """Make a running server (--server) re-read its policy; an invalid file is refused
    with a sentence naming the rule, and the policy in force stays."""
    with _admin() as admin:
        result = admin.reload_policy()
    if as_json:
        _print_json(result)
    else:
        out.print("policy reloaded")
        _policy_table(result["policy"])


# ---- tokens (the database only)


def _local_only() -> Local:
    if _Target.server:
        err.print(
            "[red]error:[/] tokens are made and revoked on the server's database: run this "
            "there, without --server"
        )
        raise typer.Exit(2)
    return Local(_settings())


@token_app.command("create")
def token_create(
    name: Annotated[str, typer.Argument(help="Who or what holds it (kept in the audit log).")],
    scope: Annotated[
        str, typer.Option("--scope", help="Comma-separated: read, write, policy, access.")
    ] = "read",
) -> None:
    """Make an access token. It is printed once, alone on the last line of stdout."""
    from attester.service.access import parse_scopes
    from attester.service.errors import ServiceError

    local = _local_only()
    try:
        token = local.admin.tokens.create(name, parse_scopes(scope), cli_actor())
    except ServiceError as e:
        err.print(f"[red]error:[/] {e.message}")
        raise typer.Exit(1) from e
    finally:
        local.close()
    err.print(f"token {name!r} created; it is shown only now:")
    sys.stdout.write(token + "\n")


@token_app.command("revoke")
def token_revoke(name: Annotated[str, typer.Argument()]) -> None:
    """Revoke a token at once."""
    from attester.service.errors import ServiceError

    local = _local_only()
    try:
        local.admin.tokens.revoke(name, cli_actor())
    except ServiceError as e:
        err.print(f"[red]error:[/] {e.message}")
        raise typer.Exit(1) from e
    finally:
        local.close()
    out.print(f"token {name!r} revoked")


@token_app.command("list")
def token_list(as_json: JsonOpt = False) -> None:
    """The tokens by name and scopes (never the tokens themselves)."""
    local = _local_only()
    try:
        found = [t.as_json() for t in local.admin.tokens.list()]
    finally:
        local.close()
    if as_json:
        for t in found:
            _print_json(t)
        return
    table = Table(title=f"{len(found)} token(s)")
    for col in ("name", "scopes", "created", "by"):
        table.add_column(col)
    for t in found:
        table.add_row(t["name"], ", ".join(t["scopes"]), t["created"], t["created_by"])
    out.print(table)
