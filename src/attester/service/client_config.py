"""FlowCrypt client configuration: how an organisation's FlowCrypt apps must behave.

FlowCrypt's browser extension and its iOS and Android apps ask an enterprise server
(FlowCrypt calls it FES, found at ``https://fes.<domain>/api/``) for the rules of the
user's domain and obey them: whether to publish the user's key, where to look keys up,
which algorithm to generate... (``../shared/specs/flowcrypt-attester-api.md``, "Enterprise
client configuration"). The operator writes one table per domain under
``[client_configuration]``; this module validates them when the configuration is loaded
(a flag no client knows, a field of the wrong type, or two rules that contradict each other
stop Attester with a sentence naming the rule) and renders the JSON the clients parse.

The field names and flags are the ones the clients' own code reads
(``client-configuration.ts`` in flowcrypt-browser, ``RawClientConfiguration.swift`` in
flowcrypt-ios, ``ClientConfiguration.kt`` in flowcrypt-android); anything else is refused
rather than silently ignored by every client.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from attester.openpgp.certificates import parse_certificate
from attester.openpgp.errors import InvalidEmail, OpenPGPError
from attester.openpgp.types import Email

# Every flag some FlowCrypt client reads. The browser, iOS and Android each know a subset
# and ignore the others, so a flag only one platform knows is still worth sending.
FLAGS: dict[str, str] = {
    "NO_PRV_CREATE": "users may not generate keys in the app, only import them",
    "NO_PRV_BACKUP": "the app makes no backups of private keys",
    "PRV_AUTOIMPORT_OR_AUTOGEN": "take the private key from the key manager, or generate it "
    "and store it there (needs key_manager_url)",
    "PASS_PHRASE_QUIET_AUTOGEN": "with the key manager, generate the pass phrase and never "
    "show it (needs key_manager_url)",
    "ENFORCE_ATTESTER_SUBMIT": "always publish the user's public key; a failed submission "
    "stops the setup",
    "NO_ATTESTER_SUBMIT": "never publish the user's public key",
    "USE_LEGACY_ATTESTER_SUBMIT": "deprecated: submit through the legacy endpoint (iOS, Android)",
    "SETUP_ENSURE_IMPORTED_PRV_MATCH_LDAP_PUB": "the imported private key must match the "
    "public key the company LDAP directory has (the browser asks /ldap-relay)",
    "DEFAULT_REMEMBER_PASS_PHRASE": "'remember pass phrase' is ticked by default",
    "HIDE_ARMOR_META": "no version or comment headers in armored output",
    "FORBID_STORING_PASS_PHRASE": "the pass phrase is never stored",
    "DISABLE_FLOWCRYPT_HOSTED_PASSWORD_MESSAGES": "no password-protected messages through "
    "FlowCrypt's shared service",
    "DISABLE_FES_PRESIGNED_URLS": "upload password-protected messages directly, not through "
    "pre-signed URLs (browser)",
    "NO_KEY_MANAGER_PUB_LOOKUP": "do not look public keys up on the key manager (iOS, Android)",
    "RESTRICT_ANDROID_ATTACHMENT_HANDLING": "restrict how attachments open (Android)",
}

# Flags that mean something only together with a key manager, and what clients do without.
_NEEDS_KEY_MANAGER = {
    "PRV_AUTOIMPORT_OR_AUTOGEN": "the browser stops the setup with an error",
    "PASS_PHRASE_QUIET_AUTOGEN": "clients ignore it",
    "NO_KEY_MANAGER_PUB_LOOKUP": "clients ignore it",
}

# Pairs of flags that cannot both hold, with the rule the sentence names.
_CONTRADICTIONS: tuple[tuple[str, str, str], ...] = (
    (
        "NO_ATTESTER_SUBMIT",
        "ENFORCE_ATTESTER_SUBMIT",
        "one forbids publishing the user's public key, the other requires it",
    ),
    (
        "FORBID_STORING_PASS_PHRASE",
        "DEFAULT_REMEMBER_PASS_PHRASE",
        "one forbids storing the pass phrase, the other stores it by default",
    ),
    (
        "FORBID_STORING_PASS_PHRASE",
        "PASS_PHRASE_QUIET_AUTOGEN",
        "one forbids storing the pass phrase, the other generates one and stores it",
    ),
)

# The value of ``custom_keyserver_url`` that stands for this server's own HKP interface.
SELF = "self"

DEFAULT = "*"  # the table answered for domains that have none of their own


def normalise_domain(text: str) -> str:
    """A domain as clients compare it: lowercase, IDNA ASCII form, no trailing dot."""
    try:
        return Email.parse(f"x@{text.strip()}").domain
    except InvalidEmail as e:
        raise ValueError(f"{text!r} is not a domain name") from e


def _domains(values: tuple[str, ...], field: str, star: bool) -> tuple[str, ...]:
    out: list[str] = []
    for v in values:
        if v.strip() == "*":
            if not star:
                raise ValueError(
                    f"{field} does not understand '*' (clients compare each recipient's "
                    "domain with the list exactly); leave the field out to allow every domain"
                )
            out.append("*")
        else:
            out.append(normalise_domain(v))
    return tuple(dict.fromkeys(out))


def _url(value: str, field: str) -> str:
    v = value.strip()
    if not v.lower().startswith(("https://", "http://")):
        raise ValueError(f"{field} must be an https:// (or http://) URL")
    return v.rstrip("/")


class ClientConfiguration(BaseModel):
    """The rules of one domain, as FlowCrypt's clients read them (all optional but
    ``flags``, which clients require and which is ``[]`` when nothing is set)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    flags: tuple[str, ...] = ()
    # An HKP keyserver the apps trust above Attester (FlowCrypt appends /pks/lookup).
    # "self": this server's own public URL (base_url).
    custom_keyserver_url: str | None = None
    key_manager_url: str | None = None  # FlowCrypt Email Key Manager
    allow_attester_search_only_for_domains: tuple[str, ...] | None = None
    disallow_attester_search_for_domains: tuple[str, ...] | None = None
    allow_keys_openpgp_org_search_only_for_domains: tuple[str, ...] | None = None
    disallow_keys_openpgp_org_search_for_domains: tuple[str, ...] | None = None
    enforce_keygen_algo: Literal["curve25519", "rsa2048", "rsa3072", "rsa4096"] | None = None
    enforce_keygen_expire_months: int | None = Field(None, ge=1, le=1200)
    in_memory_pass_phrase_session_length: int | None = Field(None, ge=1, le=2**31 - 1)
    prv_backup_to_designated_mailbox: str | None = None  # an armored public key
    disallow_password_messages_for_terms: tuple[str, ...] | None = None
    disallow_password_messages_error_text: str | None = None

    @field_validator("flags")
    @classmethod
    def _flags(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for flag in v:
            if flag not in FLAGS:
                raise ValueError(
                    f"{flag!r} is no flag FlowCrypt's clients know (they know "
                    f"{', '.join(sorted(FLAGS))})"
                )
        return tuple(dict.fromkeys(v))

    @field_validator("custom_keyserver_url")
    @classmethod
    def _keyserver(cls, v: str | None) -> str | None:
        if v is None or v.strip() == SELF:
            return None if v is None else SELF
        return _url(v, "custom_keyserver_url")

    @field_validator("key_manager_url")
    @classmethod
    def _key_manager(cls, v: str | None) -> str | None:
        return None if v is None else _url(v, "key_manager_url")

    @field_validator(
        "allow_attester_search_only_for_domains", "allow_keys_openpgp_org_search_only_for_domains"
    )
    @classmethod
    def _allow(cls, v: tuple[str, ...] | None, info: Any) -> tuple[str, ...] | None:
        return None if v is None else _domains(v, info.field_name, star=False)

    @field_validator(
        "disallow_attester_search_for_domains", "disallow_keys_openpgp_org_search_for_domains"
    )
    @classmethod
    def _disallow(cls, v: tuple[str, ...] | None, info: Any) -> tuple[str, ...] | None:
        return None if v is None else _domains(v, info.field_name, star=True)

    @field_validator("disallow_password_messages_for_terms")
    @classmethod
    def _terms(cls, v: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if v is not None and any(not t.strip() for t in v):
            raise ValueError("an empty term would match every subject")
        return v

    @field_validator("prv_backup_to_designated_mailbox")
    @classmethod
    def _backup_key(cls, v: str | None) -> str | None:
        # The apps encrypt private key backups to this key: a typo would lose them.
        if v is None:
            return None
        try:
            cert = parse_certificate(v.encode())
        except OpenPGPError as e:
            raise ValueError(f"is not an armored OpenPGP public key: {e}") from e
        if not cert.can_encrypt(datetime.now(UTC)):
            raise ValueError(
                f"key {cert.fingerprint} cannot encrypt (revoked, expired, or no key for it)"
            )
        return v.strip() + "\n"

    @model_validator(mode="after")
    def _rules(self) -> ClientConfiguration:
        flags = set(self.flags)
        for a, b, rule in _CONTRADICTIONS:
            if a in flags and b in flags:
                raise ValueError(f"flags {a} and {b} contradict each other: {rule}")
        if not self.key_manager_url:
            for flag, without in _NEEDS_KEY_MANAGER.items():
                if flag in flags:
                    raise ValueError(
                        f"flag {flag} needs key_manager_url: without a key manager {without}"
                    )
        for allow, disallow in (
            ("allow_attester_search_only_for_domains", "disallow_attester_search_for_domains"),
            (
                "allow_keys_openpgp_org_search_only_for_domains",
                "disallow_keys_openpgp_org_search_for_domains",
            ),
        ):
            if getattr(self, allow) is not None and getattr(self, disallow):
                raise ValueError(
                    f"{disallow} has no effect next to {allow}: clients ignore the disallow "
                    "list when the allow list is present; keep one of them"
                )
        return self

    def as_json(self, public_url: str) -> dict[str, Any]:
        """The ``clientConfiguration`` object: ``flags`` always, the other fields only when
        set (clients treat a missing field as "no rule")."""
        out: dict[str, Any] = {"flags": list(self.flags)}
        for name, value in self.model_dump(exclude_none=True, exclude={"flags"}).items():
            if name == "custom_keyserver_url" and value == SELF:
                value = public_url
            out[name] = list(value) if isinstance(value, tuple) else value
        return out


def normalise_table(value: Any) -> Any:
    """The ``[client_configuration]`` table with its keys normalised (domains lowercase
    and IDNA, ``*`` kept); two keys naming one domain are refused."""
    if not isinstance(value, Mapping):
        return value
    out: dict[str, Any] = {}
    for key, entry in value.items():
        domain = DEFAULT if str(key).strip() == DEFAULT else normalise_domain(str(key))
        if domain in out:
            raise ValueError(f"two entries name the domain {domain}")
        out[domain] = entry
    return out


class ClientConfigurations:
    """The configured rules, rendered once: what ``GET /api/v1/client-configuration``
    answers for each domain."""

    def __init__(self, table: Mapping[str, ClientConfiguration], public_url: str) -> None:
        self._json = {d: c.as_json(public_url) for d, c in table.items()}
        # A domain without rules gets what FlowCrypt's own server answers then: no flags,
        # no fields. (A 404 here would make the browser's setup fail.)
        self._default = self._json.get(DEFAULT, {"flags": []})

    @property
    def enabled(self) -> bool:
        """Whether this server acts as the enterprise server at all (something configured)."""
        return bool(self._json)

    def serves(self, domain: str) -> bool:
        """Whether clients of ``domain`` should use this server as their enterprise server:
        it has rules for the domain, or a default for every domain."""
        return domain in self._json or DEFAULT in self._json

    def for_domain(self, domain: str) -> dict[str, Any]:
        return self._json.get(domain, self._default)
