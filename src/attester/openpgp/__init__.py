"""The pure OpenPGP core: reading certificates, deciding which components are validly
bound, merging, and producing what lookups serve. No I/O, no database, no HTTP.

See docs/openpgp.md for what "valid" means and what is served.
"""

from attester.openpgp.certificates import (
    armor,
    armor_joined,
    armor_joined_size,
    merge,
    parse_certificate,
    parse_certificates,
    parse_keyring,
    publishable,
)
from attester.openpgp.digest import sks_digest
from attester.openpgp.errors import (
    CertificateError,
    FingerprintMismatch,
    InputTooLarge,
    InvalidEmail,
    InvalidIdentifier,
    LimitExceeded,
    MultipleCertificates,
    NoCertificate,
    NoUsableComponent,
    OpenPGPError,
    SecretKeyMaterial,
    Unparsable,
)
from attester.openpgp.model import KeyInfo, Limits, ParsedCert, Rejected, ServedForm, UserIDInfo
from attester.openpgp.types import Email, Fingerprint, KeyID, email_from_user_id

__all__ = [
    "CertificateError",
    "Email",
    "Fingerprint",
    "FingerprintMismatch",
    "InputTooLarge",
    "InvalidEmail",
    "InvalidIdentifier",
    "KeyID",
    "KeyInfo",
    "LimitExceeded",
    "Limits",
    "MultipleCertificates",
    "NoCertificate",
    "NoUsableComponent",
    "OpenPGPError",
    "ParsedCert",
    "Rejected",
    "SecretKeyMaterial",
    "ServedForm",
    "Unparsable",
    "UserIDInfo",
    "armor",
    "armor_joined",
    "armor_joined_size",
    "email_from_user_id",
    "merge",
    "parse_certificate",
    "parse_certificates",
    "parse_keyring",
    "publishable",
    "sks_digest",
]
