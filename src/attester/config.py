"""Configuration: one frozen ``Settings`` object built once and passed down explicitly.

Sources, later ones winning: built-in defaults, the TOML file named by ``ATTESTER_CONFIG``
(or given to ``load_settings``), then ``ATTESTER_<NAME>`` environment variables, one per
setting (``ATTESTER_DATABASE_URL`` sets ``database_url``). Every setting is documented in
``docs/configuration.md``; ``tests/test_config.py`` checks that the document lists them all.
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from attester.openpgp.model import Limits
from attester.service.client_config import SELF, ClientConfiguration, normalise_table
from attester.service.policy import Policy, PolicySettings


class ConfigError(Exception):
    """The configuration cannot be used; the message says which setting and why."""


_UPSTREAM_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


class _LdapFields(BaseModel):
    """How to talk to an LDAP directory (GnuPG's keyserver schema; docs/federation.md)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    bind_dn: str = ""  # simple bind as this DN; empty: anonymous
    bind_password: SecretStr | None = None  # never logged or shown
    starttls: bool = False  # ldap:// upgraded with StartTLS (required, never skipped)
    base_dn: str = ""  # the key space; empty: read from cn=pgpServerInfo, as dirmngr does
    ca_file: str = ""  # PEM CA certificates for TLS; empty: the system's

    @model_validator(mode="after")
    def _ldap_fields(self) -> _LdapFields:
        if self.bind_password is not None and not self.bind_dn:
            raise ValueError("bind_password is set but bind_dn is not")
        url = str(getattr(self, "url", "") or "")
        if self.starttls and url.startswith("ldaps://"):
            raise ValueError("starttls is for ldap:// URLs; ldaps:// is TLS from the start")
        return self


class LdapRelayServer(_LdapFields):
    """A directory FlowCrypt's browser may ask about through ``/ldap-relay``."""

    server: str  # the host name clients send as ?server=
    url: str = ""  # where to connect; empty: ldap://{server} (port 389)
    timeout_seconds: float = Field(3.0, gt=0)

    @field_validator("server")
    @classmethod
    def _server(cls, v: str) -> str:
        v = v.strip().lower().rstrip(".")
        if not re.fullmatch(r"[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?", v):
            raise ValueError(f"{v!r} is not a host name")
        return v

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        v = v.strip().rstrip("/")
        if v and not v.startswith(("ldap://", "ldaps://")):
            raise ValueError("a relay server's URL starts with ldap:// or ldaps://")
        return v

    @property
    def connect_url(self) -> str:
        return self.url or f"ldap://{self.server}"


class Upstream(_LdapFields):
    """A keyserver (or LDAP directory) asked when a lookup misses locally, and optionally
    pull-mirrored (``attester.federation``; docs/federation.md)."""

    name: str  # shown to users ("found on keys.openpgp.org") and stored as the origin
    kind: Literal["vks", "hkp", "ldap"]
    # base URL: https://keys.openpgp.org, http://sks.internal:11371, ldap://ldap.corp:389
    url: str
    timeout_seconds: float = Field(2.0, gt=0)
    lookups: tuple[Literal["email", "fingerprint", "keyid"], ...] = (
        "email",
        "fingerprint",
        "keyid",
    )
    refresh_seconds: int = Field(0, ge=0)  # pull mirroring: re-fetch known keys this often
    refresh_per_second: float = Field(1.0, gt=0)  # pull mirroring: request rate

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not _UPSTREAM_NAME.match(v):
            raise ValueError("an upstream name is letters, digits, '.', '_' and '-'")
        return v

    @field_validator("url")
    @classmethod
    def _url(cls, v: str, info: ValidationInfo) -> str:
        v = v.strip().rstrip("/")
        if info.data.get("kind") == "ldap":
            if not v.startswith(("ldap://", "ldaps://")):
                raise ValueError("an ldap upstream's URL starts with ldap:// or ldaps://")
        elif not v.startswith(("http://", "https://")):
            raise ValueError("an upstream URL starts with http:// or https://")
        return v

    @model_validator(mode="after")
    def _ldap_only(self) -> Upstream:
        if self.kind != "ldap":
            for f in ("bind_dn", "bind_password", "starttls", "base_dn", "ca_file"):
                if getattr(self, f):
                    raise ValueError(f"{f} is a setting of ldap upstreams, not of {self.kind}")
        return self


_SKS_FILTERS = "yminsky.dedup,yminsky.merge"


def split_address(address: str) -> tuple[str, int]:
    """``host:port`` or ``[v6]:port`` into its parts; ``ValueError`` otherwise."""
    host, sep, port = address.strip().rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{address!r} is not host:port")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError(f"{address!r}: write an IPv6 address in brackets, [::1]:11370")
    return host, int(port)


class ReconPeer(BaseModel):
    """An SKS or Hockeypuck server reconciled with (``attester.recon``;
    docs/federation.md, "Reconciliation")."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    address: str  # its recon address, host:port (SKS and Hockeypuck listen on 11370)
    name: str = ""  # shown in metrics and stored as the origin (recon:<name>); the address
    # Where it answers /pks/hashquery; None: the HTTP port it announces when reconciling.
    http_port: int | None = Field(None, ge=1, le=65535)
    filters: str = _SKS_FILTERS  # announced to it; Hockeypuck >= 2.2 wants its own exactly
    version: str = "1.1.6"  # announced to it; Hockeypuck >= 2.2 wants exactly 1.1.6
    serve_emails: bool = False  # find its keys by email (SKS peers verify no address)

    @field_validator("address")
    @classmethod
    def _address(cls, v: str) -> str:
        split_address(v)
        return v.strip()

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if v and not _UPSTREAM_NAME.match(v):
            raise ValueError("a peer name is letters, digits, '.', '_' and '-'")
        return v

    @property
    def host(self) -> str:
        return split_address(self.address)[0]

    @property
    def port(self) -> int:
        return split_address(self.address)[1]

    @property
    def label(self) -> str:
        """Its name, or its address when it has none."""
        return self.name or self.address


# Named in ``upstreams`` by their name alone, or as a table with the name and overrides.
UPSTREAM_PRESETS: dict[str, dict[str, Any]] = {
    "keys.openpgp.org": {
        "name": "keys.openpgp.org",
        "kind": "vks",
        "url": "https://keys.openpgp.org",
    },
    "keyserver.ubuntu.com": {
        "name": "keyserver.ubuntu.com",
        "kind": "hkp",
        "url": "https://keyserver.ubuntu.com",
    },
}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="ATTESTER_", frozen=True, extra="forbid", validate_default=True
    )

    # --- server
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    base_url: str = ""  # public URL used in links; empty: http://{host}:{port}{path_prefix}
    path_prefix: str = ""  # e.g. "/attester": every route is served below it
    cors_origins: tuple[str, ...] = ("*",)
    # Clients whose X-Forwarded-For/-Proto headers are believed (the reverse proxy); "*"
    # trusts everyone, which is only right when nothing but the proxy can reach us.
    forwarded_allow_ips: tuple[str, ...] = ("127.0.0.1", "::1")
    # Processes serving the port (attester serve); 0: one per core the server may use.
    workers: int = Field(0, ge=0, le=256)
    # Blocking work (database, OpenPGP parsing) runs in at most this many threads.
    threads: int = Field(40, ge=1, le=1000)
    # Text search (HKP ``search=`` words, the web search box): the longest word must have
    # at least this many characters.
    search_min_chars: int = Field(3, ge=1, le=64)
    # Front end (attester serve): a request must arrive whole within this time; headers
    # are bounded; connections beyond max_connections get 503; idle keep-alive closes.
    request_timeout_seconds: float = Field(30.0, gt=0, le=300)
    max_header_bytes: int = Field(32 * 1024, ge=4096, le=1024 * 1024)
    max_connections: int = Field(1000, ge=1)
    keep_alive_seconds: int = Field(5, ge=1, le=300)
    # Lookup answers kept until the stored keys change (http/cache.py); 0 entries: none.
    answer_cache_entries: int = Field(20000, ge=0)
    answer_cache_bytes: int = Field(64 * 1024 * 1024, ge=0)
    answer_cache_seconds: float = Field(600.0, gt=0)
    # What a 503 (database unavailable) tells clients to wait before retrying.
    retry_after_seconds: int = Field(5, ge=1, le=3600)

    # --- storage
    database_url: str = "sqlite:///var/attester.db"
    database_pool_size: int = Field(5, ge=1)

    # --- mail
    mail_url: str = "file:var/outbox"
    mail_sender_name: str = "Attester"
    mail_sender_address: str = "attester@localhost"
    service_name: str = "Attester"
    mail_poll_seconds: float = Field(1.0, gt=0)
    mail_retry_base_seconds: float = Field(30.0, gt=0)
    mail_max_attempts: int = Field(10, ge=1)
    mail_retry_max_seconds: float = Field(6 * 3600.0, gt=0)  # backoff grows up to this
    mail_lease_seconds: float = Field(300.0, gt=0)  # a claimed mail is one worker's this long

    # --- OpenPGP input limits
    max_input_bytes: int = Field(1024 * 1024, ge=1024)
    max_user_ids: int = Field(100, ge=1)
    max_subkeys: int = Field(100, ge=1)
    max_signatures_per_component: int = Field(5000, ge=1)
    max_packet_bytes: int = Field(64 * 1024, ge=1024)
    max_unbound_components: int = Field(10, ge=0, le=1000)
    # The work of canonicalising one certificate (``openpgp/_work.py``): signatures that
    # do not verify where they sit are tried against every component.
    max_signatures: int = Field(10_000, ge=1)
    max_self_signatures: int = Field(250, ge=1)
    max_misplaced_signatures: int = Field(100, ge=0)
    max_component_bytes: int = Field(16 * 1024, ge=1024)
    # Uploads and imports are parsed in worker processes (``service/parsing.py``), so a
    # slow one never holds the GIL of the process that answers lookups.
    parse_workers: int = Field(default_factory=lambda: os.cpu_count() or 1, ge=1, le=256)
    parse_timeout_seconds: float = Field(10.0, gt=0, le=600)

    # --- attestation
    verify_token_seconds: int = Field(7 * 24 * 3600, ge=60)
    manage_token_seconds: int = Field(3600, ge=60)
    upload_token_seconds: int = Field(3600, ge=60)
    mail_rate_window_seconds: int = Field(3600, ge=0)
    # Verification mails per window: per mailbox (sub-addresses folded), per key, and
    # per request (one /pks/add of a keyring); one per (address, key) always.
    mail_per_mailbox_limit: int = Field(3, ge=1)
    mail_per_key_limit: int = Field(10, ge=1)
    mail_per_request_limit: int = Field(10, ge=1)
    multiple_keys_per_address: bool = False

    # --- OIDC
    oidc_issuers: tuple[str, ...] = ()
    oidc_audiences: tuple[str, ...] = ()
    oidc_leeway_seconds: int = Field(60, ge=0, le=600)
    oidc_jwks_cache_seconds: int = Field(3600, ge=60)  # issuer keys are fetched again after

    # --- protocols
    hkp_text_search: bool = True
    hkp_add_sends_mail: bool = True
    search_result_limit: int = Field(100, ge=1, le=10000)
    # Per client address (``service/client_limits.py``): "N/second|minute|hour|day",
    # as the ``limits`` library parses them; counters in memory or shared in Redis.
    rate_limit_storage_url: str = "memory://"
    rate_limit_key_prefix: str = "attester"
    rate_limit_mail_requests: str = "10/minute"
    rate_limit_text_search: str = "30/minute"
    # Bytes of armor one key answer (HKP op=get, VKS) carries; a text search past it is
    # refused, other lookups serve what fits.
    max_answer_bytes: int = Field(4 * 1024 * 1024, ge=64 * 1024)
    wkd_domains: tuple[str, ...] = ("*",)
    wkd_policy_keywords: tuple[str, ...] = ()
    wkd_submission_address: str = ""
    # /pks/hashquery serves full stored certificates, unverified user IDs included (sync
    # peers need every packet to reach the same digest), so only these clients may ask.
    sync_peers: tuple[str, ...] = ("127.0.0.1", "::1")
    # A hashquery answer is built in memory; past this many bytes of certificates the rest
    # is left out, as unknown hashes are, and the peer asks again in its next round.
    hashquery_max_bytes: int = Field(32 * 1024 * 1024, ge=1024 * 1024)
    # Web forms: how long a page's form token stays valid.
    csrf_token_seconds: int = Field(6 * 3600, ge=300)

    # --- federation (docs/federation.md): nothing leaves the server unless configured
    upstreams: tuple[Upstream, ...] = ()
    upstream_deadline_seconds: float = Field(3.0, gt=0)
    upstream_hit_ttl_seconds: int = Field(3600, ge=0)
    upstream_miss_ttl_seconds: int = Field(300, ge=0)
    upstream_allow_domains: tuple[str, ...] = ("*",)
    upstream_deny_domains: tuple[str, ...] = ()
    upstream_breaker_failures: int = Field(5, ge=1)
    upstream_breaker_reset_seconds: float = Field(30.0, gt=0)
    upstream_concurrency: int = Field(16, ge=1, le=1024)  # upstream requests at once
    upstream_max_connections: int = Field(64, ge=1)  # HTTP connections to all upstreams
    upstream_keepalive_connections: int = Field(16, ge=0)  # of those, kept open when idle
    metrics_enabled: bool = True
    ldap_max_results: int = Field(16, ge=1, le=1000)  # directory entries one LDAP lookup reads
    # /ldap-relay (FlowCrypt's browser): only these directories, never one a client names.
    ldap_relay_servers: tuple[LdapRelayServer, ...] = ()
    ldap_relay_concurrency: int = Field(8, ge=1, le=1000)

    # --- enterprise: FlowCrypt client configuration per domain ("*": every other domain)
    client_configuration: dict[str, ClientConfiguration] = {}
    # --- enterprise: deployment modes and rules per domain (service/policy.py); reloaded
    # by SIGHUP and the admin API without a restart
    policy: PolicySettings = PolicySettings()
    # --- administration (docs/enterprise.md): bounds of the admin API and CLI
    admin_page_size: int = Field(1000, ge=1, le=100000)  # most rows one listing returns
    admin_reason_max_chars: int = Field(1000, ge=10, le=100000)  # a removal's reason

    # --- SKS reconciliation (docs/federation.md, "Reconciliation")
    recon_address: str = ""  # listen here (and connect out from here); empty: no listener
    recon_port: int = Field(11370, ge=0, le=65535)
    recon_peers: tuple[ReconPeer, ...] = ()
    recon_http_port: int = Field(0, ge=0, le=65535)  # announced HTTP port; 0: ``port``
    recon_gossip_seconds: float = Field(60.0, ge=0)  # 0: never start a session
    recon_timeout_seconds: float = Field(45.0, gt=0)  # every read from a peer
    recon_session_seconds: float = Field(600.0, gt=0)  # one whole session
    recon_max_message_bytes: int = Field(1024 * 1024, ge=1024)
    recon_max_missing: int = Field(20000, ge=1)  # elements learnt as missing per session
    recon_max_sessions: int = Field(4, ge=1)  # concurrent incoming sessions

    # --- logging
    log_level: str = "info"
    access_log: bool = True  # one line per request (tokens in paths are redacted)

    # --- web pages: branding and the operator's statements (docs/configuration.md, "Web pages")
    web_logo_file: str = ""  # image file shown beside the service name, served by us
    web_accent_color: str = "#0a5ad4"
    web_footer_links: tuple[tuple[str, str], ...] = ()  # (text, URL) pairs
    web_contact: str = ""  # how to reach the operator, shown on the About page
    web_privacy_statement: str = ""  # replaces the built-in statement when set

    @field_validator("path_prefix")
    @classmethod
    def _prefix(cls, v: str) -> str:
        v = v.strip().rstrip("/")
        if v and not v.startswith("/"):
            v = "/" + v
        return v

    @field_validator("upstreams", mode="before")
    @classmethod
    def _presets(cls, v: Any) -> Any:
        """A preset's name stands for the preset; a table naming a preset without a
        ``url`` takes the preset's values and overrides some of them."""
        if isinstance(v, str | dict):
            v = [v]
        if not isinstance(v, list | tuple):
            return v
        out: list[Any] = []
        for item in v:
            if isinstance(item, str):
                if item not in UPSTREAM_PRESETS:
                    raise ValueError(
                        f"{item!r} is no upstream preset (presets: "
                        f"{', '.join(sorted(UPSTREAM_PRESETS))}); give a table with "
                        "name, kind and url"
                    )
                item = UPSTREAM_PRESETS[item]
            elif isinstance(item, dict) and "url" not in item:
                item = {**UPSTREAM_PRESETS.get(str(item.get("name")), {}), **item}
            out.append(item)
        names = [i.name if isinstance(i, Upstream) else i.get("name") for i in out]
        if len(set(names)) != len(names):
            raise ValueError("two upstreams have the same name")
        return out

    @field_validator("recon_peers", mode="before")
    @classmethod
    def _recon_peers(cls, v: Any) -> Any:
        if isinstance(v, dict):
            v = [v]
        if isinstance(v, list | tuple):
            labels = [
                p.label if isinstance(p, ReconPeer) else (p.get("name") or p.get("address"))
                for p in v
                if isinstance(p, ReconPeer | dict)
            ]
            if len(set(labels)) != len(labels):
                raise ValueError("two recon peers have the same name or address")
        return v

    @field_validator("base_url")
    @classmethod
    def _base(cls, v: str) -> str:
        return v.strip().rstrip("/")

    @field_validator("ldap_relay_servers", mode="before")
    @classmethod
    def _relay_names(cls, v: Any) -> Any:
        """A host name alone means ``ldap://HOST``, anonymous."""
        if isinstance(v, str | dict):
            v = [v]
        if isinstance(v, list | tuple):
            return [{"server": i} if isinstance(i, str) else i for i in v]
        return v

    @field_validator("client_configuration", mode="before")
    @classmethod
    def _client_domains(cls, v: Any) -> Any:
        return normalise_table(v)

    @model_validator(mode="after")
    def _cross_checks(self) -> Settings:
        servers = [s.server for s in self.ldap_relay_servers]
        if len(set(servers)) != len(servers):
            raise ValueError("ldap_relay_servers names a server twice")
        names = {u.name for u in self.upstreams}
        for i, rule in enumerate(self.policy.domains):
            unknown = [iss for iss in rule.oidc_issuers if iss not in self.oidc_issuers]
            if unknown:
                raise ValueError(
                    f"policy.domains[{i}] ({rule.domain}): oidc issuer {unknown[0]!r} is not "
                    "in oidc_issuers, so its id tokens are never accepted"
                )
            if isinstance(rule.upstream, tuple):
                missing = [n for n in rule.upstream if n not in names]
                if missing:
                    raise ValueError(
                        f"policy.domains[{i}] ({rule.domain}): upstream {missing[0]!r} is not "
                        "one of the configured upstreams"
                    )
        if not self.base_url and any(
            c.custom_keyserver_url == SELF for c in self.client_configuration.values()
        ):
            raise ValueError(
                'client_configuration: custom_keyserver_url = "self" needs base_url, the '
                "URL FlowCrypt's apps reach this server at"
            )
        return self

    @field_validator("web_accent_color")
    @classmethod
    def _accent(cls, v: str) -> str:
        # Only a hex colour: the value is written into the served stylesheet.
        v = v.strip().lower()
        if not re.fullmatch(r"#[0-9a-f]{6}|#[0-9a-f]{3}", v):
            raise ValueError("must be a hex colour such as #0a5ad4")
        return v

    @field_validator("rate_limit_mail_requests", "rate_limit_text_search")
    @classmethod
    def _rate(cls, v: str) -> str:
        from limits import parse

        try:
            parse(v)
        except ValueError as e:
            raise ValueError(f"{v!r} is no rate such as '10/minute' or '100 per hour'") from e
        return v

    @field_validator("rate_limit_storage_url")
    @classmethod
    def _rate_storage(cls, v: str) -> str:
        if not re.match(r"(memory|redis|rediss|redis\+sentinel|redis\+cluster)://", v):
            raise ValueError("rate_limit_storage_url must be memory:// or a redis:// URL")
        return v

    @field_validator("web_footer_links")
    @classmethod
    def _footer_links(cls, v: tuple[tuple[str, str], ...]) -> tuple[tuple[str, str], ...]:
        # Pages link them: refuse javascript: and other schemes that would run in our origin.
        for _text, url in v:
            if not re.match(r"(https?://|mailto:|/(?!/))", url.strip(), re.IGNORECASE):
                raise ValueError(f"link {url!r} must start with https://, http://, mailto: or /")
        return tuple((t.strip(), u.strip()) for t, u in v)

    @property
    def limits(self) -> Limits:
        return Limits(
            max_input_bytes=self.max_input_bytes,
            max_user_ids=self.max_user_ids,
            max_subkeys=self.max_subkeys,
            max_signatures_per_component=self.max_signatures_per_component,
            max_packet_bytes=self.max_packet_bytes,
            max_unbound_components=self.max_unbound_components,
            max_signatures=self.max_signatures,
            max_self_signatures=self.max_self_signatures,
            max_misplaced_signatures=self.max_misplaced_signatures,
            max_component_bytes=self.max_component_bytes,
        )

    def make_policy(self) -> Policy:
        """The policy these settings describe, with the older settings as its defaults."""
        return Policy(
            self.policy,
            upstream_allow=self.upstream_allow_domains,
            upstream_deny=self.upstream_deny_domains,
            multiple_keys_per_address=self.multiple_keys_per_address,
        )

    @property
    def public_url(self) -> str:
        """Where links in mails and pages point: the configured base URL, or our own address."""
        if self.base_url:
            return self.base_url
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}{self.path_prefix}"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Environment beats explicit init values (which carry the TOML file), as documented.
        return (env_settings, init_settings)


def load_settings(path: str | Path | None = None, **overrides: Any) -> Settings:
    """Build the settings from the TOML file (``path`` or ``$ATTESTER_CONFIG``), the
    environment, and ``overrides`` (tests and CLI flags; they beat everything)."""
    values: dict[str, Any] = {}
    path = path or os.environ.get("ATTESTER_CONFIG") or None
    if path:
        p = Path(path)
        try:
            with p.open("rb") as f:
                values = tomllib.load(f)
        except FileNotFoundError as e:
            raise ConfigError(f"configuration file {p} does not exist") from e
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"configuration file {p} is not valid TOML: {e}") from e
    try:
        settings = Settings(**values)
        if overrides:
            settings = _Overridden(**{**settings.model_dump(), **overrides})
    except ValidationError as e:
        problems = "; ".join(
            f"{'.'.join(str(x) for x in err['loc'])}: {err['msg']}" if err["loc"] else err["msg"]
            for err in e.errors()
        )
        raise ConfigError(f"invalid configuration: {problems}") from e
    return settings


class _Overridden(Settings):
    """Settings where explicit values (CLI flags, tests) beat the environment."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)
