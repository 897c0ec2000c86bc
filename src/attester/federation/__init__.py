"""Federation: other keyservers as sources of keys, in three modes (docs/federation.md).

- Fallback (``Fallback``): on a local miss the core asks configured upstreams (VKS like
  keys.openpgp.org, HKP like keyserver.ubuntu.com) concurrently within a deadline, keeps
  what they vouch for with its origin, and caches hits and misses.
- Mirror (``Mirror``, ``DumpImporter`` with ``mirror=``): a peer's keys kept here, from
  its dumps or by re-fetching the keys we know from it (pull mirroring).
- Import/export (``DumpImporter``, ``export_dump``): keyserver dumps in and out, streamed.

Upstreams are keyservers asked over HTTP (``UpstreamClient``) or company directories over
LDAP (``LdapUpstream``), both ``GuardedUpstream``s; ``LdapRelay`` answers FlowCrypt's
``/ldap-relay`` from the directories the operator allows, storing nothing.

Nothing here marks an address as attested by this server: a peer's word is stored beside
the certificate (``store.origins``) and served marked with its origin, and local
attestations always win (``Core.lookup``).
"""

from attester.federation.breaker import CircuitBreaker
from attester.federation.dumps import (
    DumpCert,
    DumpImporter,
    DumpReader,
    DumpSummary,
    ExportSummary,
    export_dump,
)
from attester.federation.errors import (
    CircuitOpen,
    DumpError,
    DumpUnreadable,
    FederationError,
    UpstreamError,
    UpstreamRefused,
    UpstreamTimeout,
    UpstreamUnreachable,
)
from attester.federation.fallback import Fallback
from attester.federation.ldap import LdapDirectory, LdapUpstream
from attester.federation.metrics import Metrics
from attester.federation.mirror import Mirror, Mirrors, RefreshSummary
from attester.federation.policy import DomainPolicy
from attester.federation.relay import LdapRelay
from attester.federation.service import Federation
from attester.federation.upstream import Fetched, GuardedUpstream, UpstreamClient

__all__ = [
    "CircuitBreaker",
    "CircuitOpen",
    "DomainPolicy",
    "DumpCert",
    "DumpError",
    "DumpImporter",
    "DumpReader",
    "DumpSummary",
    "DumpUnreadable",
    "ExportSummary",
    "Fallback",
    "Federation",
    "FederationError",
    "Fetched",
    "GuardedUpstream",
    "LdapDirectory",
    "LdapRelay",
    "LdapUpstream",
    "Metrics",
    "Mirror",
    "Mirrors",
    "RefreshSummary",
    "UpstreamClient",
    "UpstreamError",
    "UpstreamRefused",
    "UpstreamTimeout",
    "UpstreamUnreachable",
    "export_dump",
]
