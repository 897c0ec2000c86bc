"""The operator's policy (docs/enterprise.md): how each protocol is deployed, and the rules
per recipient domain. The ``[policy]`` section of the configuration:

    [policy]
    internal_networks = ["10.0.0.0/8", "fd00::/8"]

    [policy.modes]                     # public (default) or internal, per protocol
    flowcrypt = "internal"
    web = "internal"

    [[policy.domains]]                 # first match wins; "*" (last) is the default rule
    domain = "example.com"             # exact, or "*.example.com" for its subdomains
    submit = ["oidc", "operator"]      # how its addresses may be published
    oidc_issuers = ["https://login.example.com"]
    oidc_publish = "at_once"           # or "after_email"
    upstream = ["directory"]           # asked only of these upstreams (true: all, false: none)
    serve_outside = false              # served only to internal clients
    multiple_keys_per_address = true

``PolicySettings`` validates what the operator wrote (an invalid rule is refused with a
sentence naming it); ``Policy`` is what the rules say, evaluated for one domain or client
address; ``PolicyHolder`` keeps the policy in force and swaps it whole on a reload, so a
request sees one policy from start to end and a refused reload changes nothing.

The settings that came before the policy keep working as its defaults:
``upstream_allow_domains`` / ``upstream_deny_domains`` decide ``upstream`` where no rule
says, and ``multiple_keys_per_address`` decides where no rule says.
"""

from __future__ import annotations

import enum
import ipaddress
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, field_validator, model_validator

from attester.openpgp.errors import InvalidEmail
from attester.openpgp.types import Email

DEFAULT_RULE = "*"

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class Protocol(enum.StrEnum):
    """The surfaces a deployment mode applies to (``http.access`` maps routes to them)."""

    FLOWCRYPT = "flowcrypt"  # /pub, /lookup/email, /welcome-message, /ldap-relay, FES /api/
    VKS = "vks"  # /vks/v1/...
    HKP = "hkp"  # /pks/...
    WKD = "wkd"  # /.well-known/openpgpkey/...
    WEB = "web"  # the pages: search, download, upload, verification and management links


class Mode(enum.StrEnum):
    PUBLIC = "public"  # anyone
    INTERNAL = "internal"  # clients in internal_networks, or holding an access token


class Method(enum.StrEnum):
    """How an address gets published (attested)."""

    EMAIL = "email"  # the link mailed to the address
    OIDC = "oidc"  # an OpenID Connect id token for the address
    OPERATOR = "operator"  # the operator: directory import, admin attest


class Audience(enum.Enum):
    """Who a lookup is answered for."""

    INTERNAL = "internal"  # from an internal network, or with an access token
    OUTSIDE = "outside"  # anyone else (the default: forgetting to say hides, never leaks)


def _domain_part(text: str) -> str:
    try:
        return Email.parse(f"x@{text.strip()}").domain
    except InvalidEmail as e:
        raise ValueError(f"{text.strip()!r} is not a domain name") from e


def normalise_pattern(text: str) -> str:
    """A domain pattern as rules compare it: ``*``, ``example.com``, ``*.example.com``
    (lowercase, IDNA ASCII form, no trailing dot)."""
    t = text.strip().rstrip(".")
    if t == DEFAULT_RULE:
        return t
    if t.startswith("*."):
        return "*." + _domain_part(t[2:])
    if "*" in t:
        raise ValueError(
            f"{text.strip()!r}: a wildcard is '*' alone (every domain) or '*.' in front "
            "of a domain (its subdomains)"
        )
    return _domain_part(t)


def pattern_matches(pattern: str, domain: str) -> bool:
    """``*`` every domain; ``*.example.com`` its subdomains, not itself; else exactly."""
    if pattern == DEFAULT_RULE:
        return True
    if pattern.startswith("*."):
        return domain.endswith(pattern[1:])
    return domain == pattern


class DomainRule(BaseModel):
    """The rule for the addresses of one domain (or subdomains, or every domain)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    domain: str
    # Which ways of publishing an address of the domain are allowed; [] forbids them all,
    # and keys whose addresses are all of such domains are not even accepted from uploads.
    submit: tuple[Method, ...] = (Method.EMAIL, Method.OIDC, Method.OPERATOR)
    # Issuers (of oidc_issuers) whose id tokens count for the domain; empty: every one.
    oidc_issuers: tuple[str, ...] = ()
    # An id token publishes at once (FlowCrypt's enterprise path), or the address is still
    # mailed a link (the token only shows who uploads).
    oidc_publish: Literal["at_once", "after_email"] = "at_once"
    # May the domain's addresses be looked up upstream: true (every upstream), false (none),
    # or the names of the upstreams that may be asked (the company directory, not the
    # public keyservers). Unset: upstream_allow_domains and upstream_deny_domains decide.
    upstream: bool | tuple[str, ...] | None = None
    # May the domain's keys be served to clients outside the internal networks?
    serve_outside: bool = True
    # Several keys per address for this domain; unset: multiple_keys_per_address decides.
    multiple_keys_per_address: bool | None = None

    @field_validator("domain")
    @classmethod
    def _domain(cls, v: str) -> str:
        return normalise_pattern(v)

    @field_validator("submit")
    @classmethod
    def _submit(cls, v: tuple[Method, ...]) -> tuple[Method, ...]:
        return tuple(dict.fromkeys(v))

    @model_validator(mode="after")
    def _consistent(self) -> DomainRule:
        if self.oidc_issuers and Method.OIDC not in self.submit:
            raise ValueError(
                "oidc_issuers is set but submit does not allow oidc: no id token would count"
            )
        if self.oidc_publish == "after_email" and Method.EMAIL not in self.submit:
            raise ValueError(
                'oidc_publish = "after_email" needs email in submit: the link it mails '
                "could never publish the address"
            )
        return self


def _protocol_modes(value: Any) -> Any:
    if isinstance(value, Mapping):
        known = ", ".join(p.value for p in Protocol)
        for key in value:
            if key not in {p.value for p in Protocol}:
                raise ValueError(f"{key!r} is no protocol (modes are set for {known})")
    return value


class PolicySettings(BaseModel):
    """The ``[policy]`` section as written, checked."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    internal_networks: tuple[str, ...] = ()
    modes: dict[Protocol, Mode] = {}
    domains: tuple[DomainRule, ...] = ()

    @field_validator("internal_networks")
    @classmethod
    def _networks(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        out: list[str] = []
        for text in v:
            try:
                net = ipaddress.ip_network(text.strip(), strict=True)
            except ValueError as e:
                loose = _loose_network(text)
                hint = f"; did you mean {loose}?" if loose else ""
                raise ValueError(f"{text.strip()!r} is not a network in CIDR form{hint}") from e
            out.append(str(net))
        return tuple(dict.fromkeys(out))

    @field_validator("modes", mode="before")
    @classmethod
    def _modes(cls, v: Any) -> Any:
        return _protocol_modes(v)

    @model_validator(mode="after")
    def _order(self) -> PolicySettings:
        """First match wins, so a rule no domain can reach is a mistake worth a sentence."""
        for i, rule in enumerate(self.domains):
            for j, earlier in enumerate(self.domains[:i]):
                if _shadows(earlier.domain, rule.domain):
                    raise ValueError(
                        f"policy.domains[{i}] ({rule.domain}) can never apply: "
                        f"policy.domains[{j}] ({earlier.domain}) comes first and matches "
                        "every domain it matches (the first matching rule wins; the "
                        'default rule "*" goes last)'
                    )
        return self

    def rule_list(self) -> list[dict[str, Any]]:
        return [r.model_dump(mode="json") for r in self.domains]


def _loose_network(text: str) -> str | None:
    try:
        return str(ipaddress.ip_network(text.strip(), strict=False))
    except ValueError:
        return None


def _shadows(earlier: str, later: str) -> bool:
    """Whether every domain ``later`` matches is matched by ``earlier`` already."""
    if earlier == DEFAULT_RULE:
        return True
    if later == DEFAULT_RULE:
        return False
    if earlier.startswith("*."):
        # *.a.com covers b.a.com and *.b.a.com, not a.com itself.
        return later.endswith(earlier[1:])
    return later == earlier


@dataclass(frozen=True)
class Rule:
    """The rule in force for one domain, with the global defaults filled in."""

    pattern: str  # the matching rule's domain pattern, or "" for the built-in default
    submit: frozenset[Method]
    oidc_issuers: frozenset[str]  # empty: every configured issuer
    oidc_at_once: bool
    upstreams: frozenset[str] | None  # which upstreams may be asked; None: every one
    serve_outside: bool
    multiple_keys_per_address: bool

    def accepts_oidc_issuer(self, issuer: str) -> bool:
        return not self.oidc_issuers or issuer in self.oidc_issuers

    @property
    def upstream(self) -> bool:
        """Whether the domain's addresses may be looked up upstream at all."""
        return self.upstreams is None or bool(self.upstreams)

    def asks(self, upstream: str) -> bool:
        """Whether this upstream may be asked about the domain's addresses."""
        return self.upstreams is None or upstream in self.upstreams

    @property
    def accepts_uploads(self) -> bool:
        """Whether a key's owner can publish the domain's addresses at all (email or id
        token); the operator alone (or nobody) otherwise."""
        return bool(self.submit & {Method.EMAIL, Method.OIDC})


class Policy:
    """What the rules say. Built once per (re)load; every question is answered from
    memory, so asking costs nothing on the request path."""

    def __init__(
        self,
        settings: PolicySettings,
        *,
        upstream_allow: Iterable[str] = ("*",),
        upstream_deny: Iterable[str] = (),
        multiple_keys_per_address: bool = False,
    ) -> None:
        self.settings = settings
        self.networks: tuple[Network, ...] = tuple(
            ipaddress.ip_network(n) for n in settings.internal_networks
        )
        self.modes = {p: settings.modes.get(p, Mode.PUBLIC) for p in Protocol}
        self._allow = tuple(_alias(a) for a in upstream_allow if a.strip())
        self._deny = tuple(_alias(d) for d in upstream_deny if d.strip())
        self._multiple = multiple_keys_per_address
        self._rules = settings.domains
        # Fast paths: most deployments hide no domain and have no internal protocol.
        self.hides_domains = any(not r.serve_outside for r in self._rules)
        # Whether who asks matters at all: when not, no request needs its audience.
        self.audience_matters = self.hides_domains or any(
            m is not Mode.PUBLIC for m in self.modes.values()
        )
        self._cache: dict[str, Rule] = {}
        self._lock = threading.Lock()

    @classmethod
    def default(cls) -> Policy:
        return cls(PolicySettings())

    # ---- deployment
    def mode(self, protocol: Protocol) -> Mode:
        return self.modes[protocol]

    def internal_address(self, address: str) -> bool:
        """Whether a client address is inside one of the internal networks."""
        if not self.networks or not address:
            return False
        try:
            ip = ipaddress.ip_address(address.split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped  # ::ffff:10.1.2.3 is 10.1.2.3 (dual-stack sockets)
        return any(ip.version == n.version and ip in n for n in self.networks)

    # ---- domains
    def rule(self, domain: str) -> Rule:
        """The rule for a domain: the first matching one, else the built-in default (every
        method, served everywhere, upstream and several keys as the global settings say)."""
        domain = domain.lower().rstrip(".")
        found = self._cache.get(domain)
        if found is not None:
            return found
        match = next((r for r in self._rules if pattern_matches(r.domain, domain)), None)
        if match is None:
            match = DomainRule(domain=DEFAULT_RULE)
            pattern = ""
        else:
            pattern = match.domain
        found = Rule(
            pattern=pattern,
            submit=frozenset(match.submit),
            oidc_issuers=frozenset(match.oidc_issuers),
            oidc_at_once=match.oidc_publish == "at_once",
            upstreams=_upstreams(
                self._upstream_alias(domain) if match.upstream is None else match.upstream
            ),
            serve_outside=match.serve_outside,
            multiple_keys_per_address=(
                self._multiple
                if match.multiple_keys_per_address is None
                else match.multiple_keys_per_address
            ),
        )
        with self._lock:
            if len(self._cache) > 10000:  # domains are attacker-chosen: keep this bounded
                self._cache.clear()
            self._cache[domain] = found
        return found

    def for_email(self, email: Email) -> Rule:
        return self.rule(email.domain)

    def served_to(self, domain: str, audience: Audience) -> bool:
        return audience is Audience.INTERNAL or self.rule(domain).serve_outside

    def _upstream_alias(self, domain: str) -> bool:
        if any(pattern_matches(p, domain) for p in self._deny):
            return False
        return any(pattern_matches(p, domain) for p in self._allow)

    def describe(self) -> dict[str, Any]:
        """The policy in force, as the admin API shows it."""
        return {
            "internal_networks": [str(n) for n in self.networks],
            "modes": {p.value: m.value for p, m in self.modes.items()},
            "domains": self.settings.rule_list(),
            "upstream_allow_domains": list(self._allow),
            "upstream_deny_domains": list(self._deny),
            "multiple_keys_per_address": self._multiple,
        }


def _upstreams(value: bool | tuple[str, ...]) -> frozenset[str] | None:
    if value is True:
        return None
    if value is False:
        return frozenset()
    return frozenset(value)


def _alias(pattern: str) -> str:
    p = pattern.strip().lower().rstrip(".")
    return p


class PolicyHolder:
    """The policy in force. ``reload`` builds a new one from ``source`` (which re-reads the
    configuration) and swaps it in whole; when ``source`` refuses (an invalid file), the
    policy in force stays and the error goes to the caller."""

    def __init__(
        self,
        policy: Policy,
        source: Callable[[], Policy] | None = None,
        changed: Callable[[], None] = lambda: None,
    ) -> None:
        self._current = policy
        self.source = source
        # Called after a new policy took effect: answers kept under the old one are stale.
        self.changed = changed

    @property
    def current(self) -> Policy:
        return self._current

    def reload(self) -> Policy:
        if self.source is None:
            raise PolicyReloadUnavailable(
                "this server was started without a configuration file to reload"
            )
        policy = self.source()  # PolicyInvalid names the rule; nothing changes then
        self._current = policy
        self.changed()
        return policy


class PolicyReloadUnavailable(Exception):
    """There is no configuration file to reload the policy from."""


class PolicyInvalid(Exception):
    """The configuration read for a reload is invalid; the message names the rule."""
