"""Uploads read once, the same way for every service that takes a key from its owner."""

from __future__ import annotations

from attester.openpgp import CertificateError, Limits, ParsedCert, parse_certificate
from attester.openpgp.types import Email
from attester.service.errors import BadRequest, input_error


def parse_upload(data: bytes, limits: Limits) -> ParsedCert:
    """Exactly one certificate, or the service error that says what is wrong with it."""
    try:
        return parse_certificate(data, limits)
    except CertificateError as e:
        raise input_error(e) from e


def parse_for_address(email: Email, data: bytes, limits: Limits) -> ParsedCert:
    """A submitted key that must carry a valid, unrevoked user ID with ``email``."""
    cert = parse_upload(data, limits)
    if email not in valid_emails(cert):
        raise BadRequest(f"The key {cert.fingerprint} has no valid, unrevoked user ID with {email}")
    return cert


def valid_emails(cert: ParsedCert) -> set[Email]:
    """Addresses of valid, unrevoked user IDs of an unrevoked certificate."""
    if cert.revoked:
        return set()
    return {u.email for u in cert.user_ids if u.email is not None and not u.revoked}
