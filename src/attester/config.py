"""Configuration: one frozen ``Settings`` object built once and passed down explicitly.

Sources, later ones winning: built-in defaults, the TOML file named by ``ATTESTER_CONFIG``
(or given to ``load_settings``), then ``ATTESTER_<NAME>`` environment variables, one per
setting (``ATTESTER_DATABASE_URL`` sets ``database_url``). Every setting is documented in
``docs/configuration.md``; ``tests/test_config.py`` checks that the document lists them all.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from attester.openpgp.model import Limits


class ConfigError(Exception):
    """The configuration cannot be used; the message says which setting and why."""


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

    # --- OpenPGP input limits
    max_input_bytes: int = Field(1024 * 1024, ge=1024)
    max_user_ids: int = Field(100, ge=1)
    max_subkeys: int = Field(100, ge=1)
    max_signatures_per_component: int = Field(5000, ge=1)
    max_packet_bytes: int = Field(64 * 1024, ge=1024)

    # --- attestation
    verify_token_seconds: int = Field(7 * 24 * 3600, ge=60)
    manage_token_seconds: int = Field(3600, ge=60)
    upload_token_seconds: int = Field(3600, ge=60)
    mail_rate_window_seconds: int = Field(3600, ge=0)
    multiple_keys_per_address: bool = False
    token_secret: SecretStr | None = None  # reserved for signed tokens; tokens are random today

    # --- OIDC
    oidc_issuers: tuple[str, ...] = ()
    oidc_audiences: tuple[str, ...] = ()
    oidc_leeway_seconds: int = Field(60, ge=0, le=600)

    # --- protocols
    hkp_text_search: bool = True
    hkp_add_sends_mail: bool = True
    search_result_limit: int = Field(100, ge=1, le=10000)
    wkd_domains: tuple[str, ...] = ("*",)
    wkd_policy_keywords: tuple[str, ...] = ()
    wkd_submission_address: str = ""

    # --- logging
    log_level: str = "info"

    @field_validator("path_prefix")
    @classmethod
    def _prefix(cls, v: str) -> str:
        v = v.strip().rstrip("/")
        if v and not v.startswith("/"):
            v = "/" + v
        return v

    @field_validator("base_url")
    @classmethod
    def _base(cls, v: str) -> str:
        return v.strip().rstrip("/")

    @property
    def limits(self) -> Limits:
        return Limits(
            max_input_bytes=self.max_input_bytes,
            max_user_ids=self.max_user_ids,
            max_subkeys=self.max_subkeys,
            max_signatures_per_component=self.max_signatures_per_component,
            max_packet_bytes=self.max_packet_bytes,
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
            f"{'.'.join(str(x) for x in err['loc'])}: {err['msg']}" for err in e.errors()
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
