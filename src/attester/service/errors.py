"""Errors of the service layer, raised by the core and turned into HTTP answers only by the
protocol adapters (each in its own body format). Messages are sentences for users.

    ServiceError
    ├── BadRequest          the request is malformed (also wraps OpenPGPError input errors)
    │   └── InvalidQuery    a search term that is no address, fingerprint or key id
    │       └── ShortKeyID  a 32-bit key id: refused, they collide
    ├── NotFound            nothing (published) matches
    ├── Unauthorized        a credential (OIDC id token) was missing or not accepted
    ├── RateLimited         too many requests of this kind for now (``retry_after``)
    ├── Gone                a token that expired or was already used
    ├── Unsupported         switched off by the operator (e.g. HKP text search)
    └── Unavailable         a dependency (OIDC issuer, upstream, parser) cannot be reached

``headers`` are what the answer must carry besides the body (``Retry-After`` of a 429).
"""

from __future__ import annotations

from attester.openpgp.errors import CertificateError, InputTooLarge


class ServiceError(Exception):
    status = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    @property
    def headers(self) -> dict[str, str]:
        return {}


class BadRequest(ServiceError):
    status = 400


class InvalidQuery(BadRequest):
    pass


class ShortKeyID(InvalidQuery):
    pass


class PayloadTooLarge(BadRequest):
    status = 413


class NotFound(ServiceError):
    status = 404


class Unauthorized(ServiceError):
    status = 401


class RateLimited(ServiceError):
    status = 429

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = max(1, int(retry_after))

    @property
    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class Gone(ServiceError):
    status = 410


class Unavailable(ServiceError):
    status = 503


class Unsupported(ServiceError):
    status = 501


def input_error(e: CertificateError) -> BadRequest:
    """One place that turns an input problem of the OpenPGP core into a service error."""
    if isinstance(e, InputTooLarge):
        return PayloadTooLarge(str(e))
    return BadRequest(str(e))
