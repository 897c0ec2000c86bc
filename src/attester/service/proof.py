"""Proof of an address by an OIDC id token: what a direct submission (``POST /pub`` with
``Authorization``) and the welcome mail need before they act for an address."""

from __future__ import annotations

from attester.attestation.oidc import (
    IssuerUnavailable,
    OIDCError,
    OIDCVerifier,
    VerifiedIdentity,
)
from attester.openpgp.types import Email
from attester.service.errors import Unauthorized, Unavailable


async def prove_address(
    oidc: OIDCVerifier | None, authorization: str | None, email: Email
) -> VerifiedIdentity:
    """The identity an OIDC id token (``Authorization: Bearer ...``) proves for ``email``;
    ``Unauthorized`` when there is no token, it is not accepted, or none can be."""
    if oidc is None:
        raise Unauthorized("This server does not accept id tokens (no OIDC issuer is configured).")
    try:
        return await oidc.verify(authorization, email)
    except IssuerUnavailable as e:
        raise Unavailable(str(e)) from e
    except OIDCError as e:
        raise Unauthorized(str(e)) from e
