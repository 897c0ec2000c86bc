"""Errors of the OpenPGP core. Every failure of pysequoia is converted to one of these
inside ``attester.openpgp``; nothing above this package sees a pysequoia exception.

    OpenPGPError
    ├── InvalidIdentifier      a fingerprint / key id that is malformed
    ├── InvalidEmail           an address that is malformed
    └── CertificateError       input that cannot be accepted as certificates
        ├── InputTooLarge      input over the configured byte limit
        ├── Unparsable         not OpenPGP, or broken framing
        ├── NoCertificate      valid OpenPGP but no certificate in it
        ├── SecretKeyMaterial  a secret key (TSK) was submitted
        ├── LimitExceeded      too many user IDs, subkeys, signatures, or a packet too large
        ├── NoUsableComponent  no valid self-signed component at all
        ├── MultipleCertificates  several certificates where exactly one is expected
        └── FingerprintMismatch   a merge of two different certificates
"""


class OpenPGPError(Exception):
    """Base of every error raised by ``attester.openpgp``; its message is a sentence for users."""


class InvalidIdentifier(OpenPGPError):
    pass


class InvalidEmail(OpenPGPError):
    pass


class CertificateError(OpenPGPError):
    pass


class InputTooLarge(CertificateError):
    pass


class Unparsable(CertificateError):
    pass


class NoCertificate(CertificateError):
    pass


class SecretKeyMaterial(CertificateError):
    pass


class LimitExceeded(CertificateError):
    pass


class NoUsableComponent(CertificateError):
    pass


class MultipleCertificates(CertificateError):
    pass


class FingerprintMismatch(CertificateError):
    pass
