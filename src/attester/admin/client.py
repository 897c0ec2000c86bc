"""The two ways ``attester admin`` reaches a server: ``Local`` works on the database of
the configuration (``ATTESTER_DATABASE_URL``) through the service, ``Remote`` on a running
server through the admin API with a token. Both answer with the same JSON objects
(``operations.py``), so the commands print the same thing either way.
"""

from __future__ import annotations

import getpass
import json
from collections.abc import Iterator
from typing import Any, Protocol
from urllib.parse import quote

import httpx

from attester.admin import operations as ops
from attester.config import Settings
from attester.outbound import tls_context
from attester.service.attestation import Attestation
from attester.service.core import Core
from attester.service.errors import ServiceError
from attester.store.audit import Actor, ActorKind
from attester.store.db import Database, open_database, upgrade


class AdminError(Exception):
    """An operation refused or failed; the message is a sentence for the operator."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


class Admin(Protocol):
    def keys(self, params: dict[str, str | None]) -> dict[str, Any]: ...
    def key(self, fpr: str) -> dict[str, Any]: ...
    def attest(self, fpr: str, email: str, reason: str | None) -> dict[str, Any]: ...
    def unattest(self, fpr: str, email: str, reason: str | None) -> dict[str, Any]: ...
    def resend(self, fpr: str, email: str) -> dict[str, Any]: ...
    def remove(self, selector: dict[str, str], reason: str) -> dict[str, Any]: ...
    def restore(self, selector: dict[str, str], reason: str | None) -> dict[str, Any]: ...
    def removals(self) -> dict[str, Any]: ...
    def audit(self, params: dict[str, str | None]) -> Iterator[dict[str, Any]]: ...
    def policy(self) -> dict[str, Any]: ...
    def reload_policy(self) -> dict[str, Any]: ...
    def stats(self) -> dict[str, Any]: ...
    def close(self) -> None: ...


def cli_actor() -> Actor:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (containers)
        user = "unknown"
    return Actor(ActorKind.CLI, user)


class Local:
    """On the database itself, as the local OS user (``cli:<user>`` in the audit log)."""

    def __init__(self, settings: Settings) -> None:
        self.db: Database = open_database(settings.database_url, settings.database_pool_size)
        upgrade(self.db)
        self.core = Core(settings, self.db)
        self.admin = Attestation.build(self.core).admin
        self.actor = cli_actor()

    def _run(self, op: Any, *args: Any) -> Any:
        try:
            return op(self.admin, *args)
        except ServiceError as e:
            raise AdminError(e.message, e.status) from e

    def keys(self, params: dict[str, str | None]) -> dict[str, Any]:
        out: dict[str, Any] = self._run(ops.list_keys, params)
        return out

    def key(self, fpr: str) -> dict[str, Any]:
        out: dict[str, Any] = self._run(ops.show_key, fpr)
        return out

    def attest(self, fpr: str, email: str, reason: str | None) -> dict[str, Any]:
        out: dict[str, Any] = self._run(ops.attest, fpr, email, self.actor, reason)
        return out

    def unattest(self, fpr: str, email: str, reason: str | None) -> dict[str, Any]:
        out: dict[str, Any] = self._run(ops.unattest, fpr, email, self.actor, reason)
        return out

    def resend(self, fpr: str, email: str) -> dict[str, Any]:
        out: dict[str, Any] = self._run(ops.resend, fpr, email, self.actor)
        return out

    def remove(self, selector: dict[str, str], reason: str) -> dict[str, Any]:
        out: dict[str, Any] = self._run(ops.remove, selector, reason, self.actor)
        return out

    def restore(self, selector: dict[str, str], reason: str | None) -> dict[str, Any]:
        out: dict[str, Any] = self._run(ops.restore, selector, self.actor, reason)
        return out

    def removals(self) -> dict[str, Any]:
        out: dict[str, Any] = self._run(ops.removals)
        return out

    def audit(self, params: dict[str, str | None]) -> Iterator[dict[str, Any]]:
        lines: Iterator[dict[str, Any]] = self._run(ops.audit_lines, params)
        return lines

    def policy(self) -> dict[str, Any]:
        out: dict[str, Any] = self._run(ops.policy)
        return out

    def reload_policy(self) -> dict[str, Any]:
        raise AdminError(
            "A running server reloads its policy on SIGHUP, or through the admin API: "
            "attester admin --server URL --token TOKEN policy reload. "
            "(attester admin policy check validates the file.)",
            2,
        )

    def stats(self) -> dict[str, Any]:
        out: dict[str, Any] = self._run(ops.stats)
        return out

    def close(self) -> None:
        self.db.dispose()


class Remote:
    """Through the admin API of a running server (``--server URL --token TOKEN``)."""

    def __init__(
        self, server: str, token: str, *, transport: httpx.BaseTransport | None = None
    ) -> None:
        self.http = httpx.Client(
            base_url=server.rstrip("/") + "/admin/api/v1",
            headers={"Authorization": f"Bearer {token}"},
            timeout=60,
            transport=transport,
            verify=tls_context(),
        )

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            r = self.http.request(method, path, **kwargs)
        except httpx.HTTPError as e:
            raise AdminError(f"cannot reach the server: {e}") from e
        if r.status_code >= 400:
            try:
                message = r.json().get("error") or r.text
            except (json.JSONDecodeError, AttributeError):
                message = r.text.strip() or r.reason_phrase
            raise AdminError(f"{message} (HTTP {r.status_code})", r.status_code)
        return r.json()

    @staticmethod
    def _query(params: dict[str, str | None]) -> dict[str, str]:
        return {k: v for k, v in params.items() if v is not None}

    def keys(self, params: dict[str, str | None]) -> dict[str, Any]:
        out: dict[str, Any] = self._call("GET", "/keys", params=self._query(params))
        return out

    def key(self, fpr: str) -> dict[str, Any]:
        out: dict[str, Any] = self._call("GET", f"/keys/{quote(fpr, safe='')}")
        return out

    def _change(self, action: str, fpr: str, body: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = self._call("POST", f"/keys/{quote(fpr, safe='')}/{action}", json=body)
        return out

    def attest(self, fpr: str, email: str, reason: str | None) -> dict[str, Any]:
        return self._change("attest", fpr, {"email": email, "reason": reason})

    def unattest(self, fpr: str, email: str, reason: str | None) -> dict[str, Any]:
        return self._change("unattest", fpr, {"email": email, "reason": reason})

    def resend(self, fpr: str, email: str) -> dict[str, Any]:
        return self._change("resend", fpr, {"email": email})

    def remove(self, selector: dict[str, str], reason: str) -> dict[str, Any]:
        out: dict[str, Any] = self._call("POST", "/removals", json={**selector, "reason": reason})
        return out

    def restore(self, selector: dict[str, str], reason: str | None) -> dict[str, Any]:
        [(kind, value)] = selector.items()
        params = {"reason": reason} if reason else {}
        out: dict[str, Any] = self._call(
            "DELETE", f"/removals/{kind}/{quote(value, safe='@')}", params=params
        )
        return out

    def removals(self) -> dict[str, Any]:
        out: dict[str, Any] = self._call("GET", "/removals")
        return out

    def audit(self, params: dict[str, str | None]) -> Iterator[dict[str, Any]]:
        query = {**self._query(params), "format": "jsonl"}
        try:
            with self.http.stream("GET", "/audit", params=query) as r:
                if r.status_code >= 400:
                    r.read()
                    raise AdminError(
                        f"{r.json().get('error')} (HTTP {r.status_code})", r.status_code
                    )
                for line in r.iter_lines():
                    if line.strip():
                        yield json.loads(line)
        except httpx.HTTPError as e:
            raise AdminError(f"cannot reach the server: {e}") from e

    def policy(self) -> dict[str, Any]:
        out: dict[str, Any] = self._call("GET", "/policy")
        return out

    def reload_policy(self) -> dict[str, Any]:
        out: dict[str, Any] = self._call("POST", "/policy/reload")
        return out

    def stats(self) -> dict[str, Any]:
        out: dict[str, Any] = self._call("GET", "/stats")
        return out

    def close(self) -> None:
        self.http.close()
