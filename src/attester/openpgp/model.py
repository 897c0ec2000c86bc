"""What the OpenPGP core tells the rest of Attester about a certificate.

Everything here is computed once, when a certificate is written, from Sequoia's canonical
form; the request path reads these values from the store and never parses OpenPGP.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime

from attester.openpgp.types import Email, Fingerprint, KeyID


@dataclass(frozen=True)
class Limits:
    """Bounds on what a single upload may contain; each refusal names the bound it hit."""

    max_input_bytes: int = 1024 * 1024
    max_user_ids: int = 100
    max_subkeys: int = 100
    # Debian's own keyring carries keys with several hundred third-party certifications on one
    # user ID; the bound exists to stop floods (CVE-2019-13050), not established keys.
    max_signatures_per_component: int = 5000
    max_packet_bytes: int = 64 * 1024
    # User IDs, attributes and subkeys nobody validly bound, kept per certificate (merges
    # lose nothing small; padding someone else's key costs its owner nothing).
    max_unbound_components: int = 10


@dataclass(frozen=True)
class KeyInfo:
    """A primary key or a validly bound subkey."""

    fingerprint: Fingerprint
    key_id: KeyID
    algorithm: int  # RFC 9580 public-key algorithm id
    algorithm_name: str  # "rsa", "dsa", "elgamal", "ecdh", "ecdsa", "eddsa", "ed25519", ...
    bits: int  # modulus / prime size, or curve size for ECC keys
    created: datetime  # UTC, timezone-aware
    expires: datetime | None  # from the latest valid self-signature / binding; None: never
    revoked: bool  # a valid self-revocation exists
    can_encrypt: bool  # key flags of the latest binding allow encryption (storage or comms)
    can_sign: bool


@dataclass(frozen=True)
class UserIDInfo:
    """A user ID bound to the primary key by a cryptographically valid self-signature."""

    raw: bytes  # the exact packet body: the identity of the user ID
    text: str  # raw decoded as UTF-8, invalid bytes replaced
    email: Email | None
    created: datetime  # creation time of its latest valid self-signature
    expires: datetime | None  # expiry of that self-signature, if any
    revoked: bool  # a valid self-revocation newer than the latest binding exists
    primary: bool = False  # the latest binding says "primary user ID"


@dataclass(frozen=True)
class ServedForm:
    """What lookups serve of a certificate, computed once by the walk that parsed it and
    kept in parts: the primary key with its own signatures (``head``), one block per validly
    bound user ID in certificate order, named by the user ID's exact bytes, and the validly
    bound subkeys (``tail``). Choosing the attested user IDs is then a join of bytes, so
    writing the forms lookups serve never parses the certificate again."""

    head: bytes
    user_ids: tuple[tuple[bytes, bytes], ...]  # (raw user ID, its encoded block)
    tail: bytes

    def join(self, attested: Collection[bytes]) -> bytes:
        wanted = frozenset(attested)
        blocks = b"".join(block for raw, block in self.user_ids if raw in wanted)
        return self.head + blocks + self.tail


@dataclass(frozen=True)
class ParsedCert:
    """One certificate after canonicalisation and our own component walk."""

    primary: KeyInfo
    subkeys: tuple[KeyInfo, ...]  # validly bound subkeys only
    user_ids: tuple[UserIDInfo, ...]  # validly bound user IDs only (revoked ones included, flagged)
    # The binary certificate as stored: every packet Sequoia kept, as uploaded (third-party
    # certifications and user attributes included; bad signatures and unknown packets not).
    data: bytes
    digest: str  # SKS/Hockeypuck MD5 key digest, 32 lowercase hex digits
    served: ServedForm = field(repr=False)  # what lookups get of it (``publishable``)
    ignored: tuple[str, ...] = field(default=())  # what the walk dropped, for logs/summaries

    @property
    def fingerprint(self) -> Fingerprint:
        return self.primary.fingerprint

    @property
    def revoked(self) -> bool:
        return self.primary.revoked

    @property
    def expires(self) -> datetime | None:
        return self.primary.expires

    @property
    def key_ids(self) -> tuple[KeyID, ...]:
        return (self.primary.key_id, *(k.key_id for k in self.subkeys))

    @property
    def emails(self) -> tuple[Email, ...]:
        seen: dict[Email, None] = {}
        for u in self.user_ids:
            if u.email is not None:
                seen.setdefault(u.email, None)
        return tuple(seen)

    def can_encrypt(self, now: datetime) -> bool:
        """True when some valid, unrevoked, unexpired key of the certificate can encrypt."""
        if self.revoked or (self.expires is not None and self.expires <= now):
            return False
        return any(
            k.can_encrypt and not k.revoked and (k.expires is None or k.expires > now)
            for k in (self.primary, *self.subkeys)
        )


@dataclass(frozen=True)
class Rejected:
    """A certificate of a keyring that could not be accepted, with the reason as a sentence."""

    reason: str
    fingerprint: Fingerprint | None = None
