"""Company directories over LDAP, read as GnuPG's ``dirmngr`` reads them.

Many organisations keep their people's public keys in an LDAP directory with the OpenPGP
keyserver schema that PGP Inc. defined and GnuPG extended (``doc/ldap/`` in GnuPG's
sources): ``pgpKeyInfo`` entries below a *key space*, each holding one keyblock in
``pgpKey`` (``pgpKeyV2`` on PGP's own keyservers), its long key id in ``pgpCertID``, its
user IDs in ``pgpUserID``, and in the schema's second version (``pgpSoftware: GnuPG``,
``pgpVersion: 2 ...``) fingerprints (``gpgFingerprint``, ``gpgSubFingerprint``) and
addresses (``gpgMailbox``). Where the key space is, a ``cn=pgpServerInfo`` entry of a
naming context says (``pgpBaseKeySpaceDN``).

One lookup, as dirmngr does it:

1. connect (``ldap://`` or ``ldaps://``), upgrade with StartTLS when configured (a server
   that cannot is an error, never a silent plain-text fallback), and bind as ``bind_dn``
   when configured (else anonymously);
2. learn where the keys are and which schema version is served, once per process: from
   ``cn=pgpServerInfo`` in the root DSE's naming contexts, or below ``base_dn``;
3. search the key space for the query (by address, fingerprint or key id), reading at most
   ``ldap_max_results`` entries;
4. hand each entry's keyblock back separately, so ``upstream.check`` judges each on its own
   exactly as it judges an HTTP upstream's answer.

``LdapDirectory`` does the blocking I/O (python-ldap over OpenLDAP's libldap, the library
dirmngr and slapd use) and is meant to run in a worker thread; ``LdapUpstream`` plugs it
into the federation machinery (``GuardedUpstream``: breaker, metrics, checks), so the
fallback, the mirrors and the ``/ldap-relay`` treat a directory like any upstream.
``ldap`` exceptions become federation errors in one place (``_mapped``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any

import ldap
import ldap.dn
from ldap.filter import escape_filter_chars

from attester.config import LdapRelayServer, Upstream
from attester.federation.breaker import CircuitBreaker
from attester.federation.errors import (
    UpstreamRefused,
    UpstreamTimeout,
    UpstreamUnreachable,
)
from attester.federation.metrics import Metrics
from attester.federation.upstream import GuardedUpstream, Lookup
from attester.openpgp import Limits
from attester.service.query import EmailQuery, FingerprintQuery, KeyIDQuery

log = logging.getLogger("attester.federation")

_SERVER_INFO = "cn=pgpServerInfo"


@dataclass(frozen=True)
class LdapTarget:
    """Where a directory is and how to talk to it (from an ``ldap`` upstream or a relay
    server of the configuration)."""

    url: str  # ldap://host:port or ldaps://host:port
    bind_dn: str = ""
    bind_password: str = ""  # the secret itself: never logged, never in a message
    starttls: bool = False
    base_dn: str = ""
    ca_file: str = ""

    @classmethod
    def of(cls, config: Upstream | LdapRelayServer) -> LdapTarget:
        url = config.url if isinstance(config, Upstream) else config.connect_url
        password = config.bind_password.get_secret_value() if config.bind_password else ""
        return cls(url, config.bind_dn, password, config.starttls, config.base_dn, config.ca_file)

    def __repr__(self) -> str:
        return f"LdapTarget({self.url!r}, bind_dn={self.bind_dn!r}, starttls={self.starttls})"


@dataclass(frozen=True)
class ServerInfo:
    """What a directory told about itself (``cn=pgpServerInfo``)."""

    key_space: str  # the DN below which pgpKeyInfo entries are searched
    schema_v2: bool = False  # GnuPG's extension: gpgFingerprint, gpgSubFingerprint, gpgMailbox
    key_attribute: str = "pgpKey"  # "pgpKeyV2" on PGP's own keyservers of version > 1


def server_info(software: str, version: str, key_space: str) -> ServerInfo:
    """Read ``pgpSoftware``/``pgpVersion`` as dirmngr does: the schema's second version
    only when the software is GnuPG and the version's first field is above 1."""
    fields = version.split()
    v2 = software.strip().lower() == "gnupg" and bool(fields) and _int(fields[0]) > 1
    return ServerInfo(key_space, schema_v2=v2)


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        return 0


def search_filter(query: Lookup, info: ServerInfo) -> str:
    """The LDAP filter for ``query``. Entries the directory marks disabled are never read;
    by address revoked ones neither (they answer no address). By fingerprint the key id is
    asked too (the first schema has no fingerprints), and ``check`` keeps only a
    certificate that really carries the fingerprint."""
    enabled = "(!(pgpDisabled=1))"
    match query:
        case EmailQuery(email):
            a = escape_filter_chars(email.address)
            alternatives = f"(pgpUserID=*<{a}>*)(pgpUserID={a})"
            if info.schema_v2:
                alternatives = f"(gpgMailbox={a}){alternatives}"
            return f"(&(|{alternatives})(!(|(pgpRevoked=1)(pgpDisabled=1))))"
        case FingerprintQuery(fpr):
            kid = fpr.key_id.hex
            alternatives = f"(pgpCertID={kid})(pgpSubKeyID={kid})"
            if info.schema_v2:
                alternatives = f"(gpgFingerprint={fpr.hex})(gpgSubFingerprint={fpr.hex})" + (
                    alternatives
                )
            return f"(&(|{alternatives}){enabled})"
        case KeyIDQuery(kid):
            return f"(&(|(pgpCertID={kid.hex})(pgpSubKeyID={kid.hex})){enabled})"


@contextmanager
def _mapped(name: str) -> Iterator[None]:
    """The one place ``ldap`` exceptions become federation errors. Messages carry the
    library's description of the problem, never the bind password."""
    try:
        yield
    except (ldap.TIMEOUT, ldap.TIMELIMIT_EXCEEDED) as e:
        raise UpstreamTimeout(name, "no answer in time") from e
    except (ldap.SERVER_DOWN, ldap.CONNECT_ERROR) as e:
        raise UpstreamUnreachable(name, f"cannot connect ({_describe(e)})") from e
    except (
        ldap.INVALID_CREDENTIALS,
        ldap.INAPPROPRIATE_AUTH,
        ldap.STRONG_AUTH_REQUIRED,
        ldap.CONFIDENTIALITY_REQUIRED,
        ldap.INSUFFICIENT_ACCESS,
        ldap.UNWILLING_TO_PERFORM,
        ldap.AUTH_METHOD_NOT_SUPPORTED,
    ) as e:
        raise UpstreamRefused(name, f"refused access ({_describe(e)})") from e
    except ldap.LDAPError as e:
        raise UpstreamRefused(name, f"answered with an LDAP error ({_describe(e)})") from e


def _describe(e: Exception) -> str:
    info: Any = e.args[0] if e.args else {}
    if isinstance(info, dict):
        desc = str(info.get("desc", type(e).__name__))
        extra = str(info.get("info", "")).strip()
        return f"{desc}: {extra}" if extra else desc
    return type(e).__name__


def _parent(dn: str) -> str:
    parts = ldap.dn.str2dn(dn)
    return str(ldap.dn.dn2str(parts[1:])) if len(parts) > 1 else ""


class LdapDirectory:
    """Blocking lookups in one directory. Each lookup opens its own connection and closes
    it (directories are asked on local misses only, and a connection never outlives the
    time a lookup may take); what ``cn=pgpServerInfo`` says is kept for the process."""

    def __init__(
        self,
        name: str,
        target: LdapTarget,
        *,
        max_results: int,
        max_bytes: int,
    ) -> None:
        self.name = name
        self.target = target
        self.max_results = max_results
        self.max_bytes = max_bytes
        self._info: ServerInfo | None = None

    def keyblocks(self, query: Lookup, timeout: float) -> list[bytes]:
        """The keyblocks of the entries that match ``query`` (empty when none). Raises
        ``UpstreamError`` when the directory cannot be asked or answers with an error."""
        deadline = time.monotonic() + timeout
        with _mapped(self.name):
            conn = self._connect(deadline)
            try:
                info = self._server_info(conn, deadline)
                try:
                    return self._search(conn, info, query, deadline)
                except ldap.NO_SUCH_OBJECT:
                    self._info = None  # the directory changed: learn it again next time
                    raise
            finally:
                with suppress(ldap.LDAPError):
                    conn.unbind_s()

    def _left(self, deadline: float) -> float:
        left = deadline - time.monotonic()
        if left <= 0:
            raise UpstreamTimeout(self.name, "no answer in time")
        return left

    def _connect(self, deadline: float) -> Any:
        conn = ldap.initialize(self.target.url)
        left = self._left(deadline)
        conn.set_option(ldap.OPT_PROTOCOL_VERSION, ldap.VERSION3)
        # Only the configured server is ever contacted: no referral is followed.
        conn.set_option(ldap.OPT_REFERRALS, 0)
        conn.set_option(ldap.OPT_NETWORK_TIMEOUT, left)
        conn.set_option(ldap.OPT_TIMEOUT, left)
        conn.set_option(ldap.OPT_X_TLS_REQUIRE_CERT, ldap.OPT_X_TLS_DEMAND)
        if self.target.ca_file:
            conn.set_option(ldap.OPT_X_TLS_CACERTFILE, self.target.ca_file)
        conn.set_option(ldap.OPT_X_TLS_NEWCTX, 0)  # apply the TLS options to this connection
        if self.target.starttls:
            conn.start_tls_s()
        if self.target.bind_dn:
            conn.set_option(ldap.OPT_TIMEOUT, self._left(deadline))
            conn.simple_bind_s(self.target.bind_dn, self.target.bind_password)
        return conn

    def _server_info(self, conn: Any, deadline: float) -> ServerInfo:
        if self._info is None:
            self._info = self._discover(conn, deadline)
            log.info(
                "LDAP upstream %s: keys below %r, schema %s, attribute %s",
                self.name,
                self._info.key_space,
                2 if self._info.schema_v2 else 1,
                self._info.key_attribute,
            )
        return self._info

    def _discover(self, conn: Any, deadline: float) -> ServerInfo:
        """Step 2: where the keys are. A configured ``base_dn`` is the key space; its
        ``cn=pgpServerInfo`` (there or one level up, as dirmngr looks) only tells the
        schema version. Otherwise every naming context is tried, as dirmngr does."""
        if self.target.base_dn:
            for dn in (self.target.base_dn, _parent(self.target.base_dn)):
                found = self._interrogate(conn, dn, deadline) if dn else None
                if found is not None:
                    return ServerInfo(self.target.base_dn, schema_v2=found.schema_v2)
            return ServerInfo(self.target.base_dn)
        try:
            root = self._search_base(conn, "", ["namingContexts"], deadline)
        except ldap.LDAPError as e:
            if isinstance(e, ldap.SERVER_DOWN | ldap.TIMEOUT | ldap.CONNECT_ERROR):
                raise
            root = None
        if root is None:
            # No root DSE: one of PGP's own keyservers, which answer for cn=pgpServerInfo.
            pgp = self._search_base(
                conn, _SERVER_INFO, ["baseKeySpaceDN", "version", "software"], deadline
            )
            if pgp is not None and pgp.get("basekeyspacedn"):
                version = _int(_text(pgp.get("version")).split(" ")[0] or "0")
                return ServerInfo(
                    _text(pgp["basekeyspacedn"]),
                    key_attribute="pgpKeyV2" if version > 1 else "pgpKey",
                )
        else:
            for context in root.get("namingcontexts", []):
                found = self._interrogate(conn, context.decode("utf-8", "replace"), deadline)
                if found is not None:
                    return found
        raise UpstreamRefused(
            self.name,
            "is not an OpenPGP directory: no cn=pgpServerInfo entry names a key space "
            "(set base_dn to where the keys are)",
        )

    def _interrogate(self, conn: Any, dn: str, deadline: float) -> ServerInfo | None:
        entry = self._search_base(
            conn,
            f"{_SERVER_INFO},{dn}",
            ["pgpBaseKeySpaceDN", "pgpSoftware", "pgpVersion"],
            deadline,
        )
        if entry is None or not entry.get("pgpbasekeyspacedn"):
            return None
        return server_info(
            _text(entry.get("pgpsoftware")),
            _text(entry.get("pgpversion")),
            _text(entry["pgpbasekeyspacedn"]),
        )

    def _search_base(
        self, conn: Any, dn: str, attrs: list[str], deadline: float
    ) -> dict[str, list[bytes]] | None:
        """One entry's attributes (names lowercased), or None when it does not exist."""
        left = self._left(deadline)
        conn.set_option(ldap.OPT_TIMEOUT, left)
        try:
            found = conn.search_ext_s(
                dn, ldap.SCOPE_BASE, "(objectClass=*)", attrs, timeout=max(1, int(left))
            )
        except ldap.NO_SUCH_OBJECT:
            return None
        for _dn, entry in found:
            if isinstance(entry, dict):
                return {k.lower(): v for k, v in entry.items()}
        return None

    def _search(self, conn: Any, info: ServerInfo, query: Lookup, deadline: float) -> list[bytes]:
        """Step 3: the matching entries' keyblocks, at most ``max_results`` entries and
        ``max_bytes`` in all."""
        attribute = info.key_attribute.lower()
        left = self._left(deadline)
        msgid = conn.search_ext(
            info.key_space,
            ldap.SCOPE_SUBTREE,
            search_filter(query, info),
            [info.key_attribute, "pgpCertID"],
            timeout=max(1, int(left)),
            sizelimit=self.max_results,
        )
        blocks: list[bytes] = []
        size = 0
        while True:
            try:
                kind, entries, _, _ = conn.result3(msgid, all=0, timeout=self._left(deadline))
            except ldap.SIZELIMIT_EXCEEDED:
                log.warning(
                    "LDAP upstream %s has more than %d entries for a lookup; read only those",
                    self.name,
                    self.max_results,
                )
                break
            except UpstreamTimeout:
                conn.abandon(msgid)
                raise
            if kind == ldap.RES_SEARCH_RESULT:
                break
            if kind != ldap.RES_SEARCH_ENTRY:
                continue  # a search reference: never followed
            for _dn, entry in entries:
                values = {k.lower(): v for k, v in entry.items()}.get(attribute, [])
                for value in values:
                    size += len(value)
                    if size > self.max_bytes:
                        conn.abandon(msgid)
                        raise UpstreamRefused(
                            self.name, f"answered more than {self.max_bytes} bytes"
                        )
                    blocks.append(value)
        return blocks


def _text(values: list[bytes] | None) -> str:
    return values[0].decode("utf-8", "replace").strip() if values else ""


class LdapUpstream(GuardedUpstream):
    """An ``ldap`` upstream: a directory asked like a keyserver (policy, deadline, cache,
    breaker and origin marking come from the fallback and ``GuardedUpstream``)."""

    def __init__(
        self,
        config: Upstream,
        limits: Limits,
        metrics: Metrics,
        breaker: CircuitBreaker,
        *,
        max_results: int,
        name: str | None = None,
    ) -> None:
        super().__init__(config, limits, metrics, breaker, name=name)
        self.directory = LdapDirectory(
            self.name, LdapTarget.of(config), max_results=max_results, max_bytes=self.max_body
        )

    def _answer(self, query: Lookup, timeout: float) -> list[bytes] | None:
        # Blocking: the fallback and the relay call this from worker threads.
        return self.directory.keyblocks(query, timeout) or None
