"""Verify OpenID Connect id_tokens that prove control of an email address.

``POST /pub/{email}`` with ``Authorization: Bearer <id_token>`` skips the emailed link: the
issuer (Google, a company's Keycloak, ...) has already checked the address, and its signature
on the token says so. This module answers one question, "does this header prove control of
this address?", and knows nothing of HTTP servers or storage.

Steps of :meth:`OIDCVerifier.verify`:

1. Take the token out of the ``Bearer`` header.
2. Read the token's header and ``iss`` *without trusting them*, only to choose a key: ``alg``
   must be in the allow-list (never ``none``, never HMAC) and ``iss`` must be in the
   allow-list before anything is fetched. A token never makes us fetch a URL it names; its
   ``jku``/``x5u``/``jwk`` headers are ignored.
3. Find the key by ``kid`` in the issuer's JWKS, located through
   ``{iss}/.well-known/openid-configuration``. Both are cached per issuer; an unknown ``kid``
   refetches the JWKS, at most once per ``min_refresh_seconds``.
4. Verify the signature, then the claims: ``aud``, ``exp``/``nbf``/``iat`` with leeway,
   ``sub``, ``email`` equal to the expected address, ``email_verified`` absent or true
   (``true`` or ``"true"``; ``false``, ``"false"`` and anything unclear are refused).

Errors (each message is a sentence for the user)::

    OIDCError
    ├── TokenMissing           no usable Bearer token in the header
    ├── TokenMalformed         not a JWT, or a required claim is missing or mistyped
    ├── TokenSignatureInvalid  bad signature, refused alg, or a key the issuer does not publish
    ├── TokenExpired           exp is past, beyond the leeway
    ├── TokenNotYetValid       nbf or iat is in the future, beyond the leeway
    ├── WrongIssuer            iss is not in the allow-list
    ├── WrongAudience          no aud is in the allow-list
    ├── EmailMismatch          the email claim is absent or names another address
    ├── EmailNotVerified       the issuer says it has not verified the address
    └── IssuerUnavailable      discovery or JWKS could not be fetched, or hold no usable key

The HTTP layer answers ``IssuerUnavailable`` with 503 (our problem or the issuer's, worth a
retry) and every other ``OIDCError`` with 401. PyJWT and httpx exceptions are converted in
``_mapped_jwt_errors`` and ``_mapped_fetch_errors``; nothing outside this module sees them.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from jwt.exceptions import (
    ExpiredSignatureError,
    ImmatureSignatureError,
    InvalidAlgorithmError,
    InvalidAudienceError,
    InvalidIssuerError,
    InvalidKeyError,
    InvalidSignatureError,
    PyJWKError,
    PyJWTError,
)
from jwt.types import Options

from attester.openpgp.errors import InvalidEmail
from attester.openpgp.types import Email

__all__ = [
    "GOOGLE_ISSUERS",
    "EmailMismatch",
    "EmailNotVerified",
    "IssuerUnavailable",
    "OIDCError",
    "OIDCSettings",
    "OIDCVerifier",
    "TokenExpired",
    "TokenMalformed",
    "TokenMissing",
    "TokenNotYetValid",
    "TokenSignatureInvalid",
    "VerifiedIdentity",
    "WrongAudience",
    "WrongIssuer",
]

logger = logging.getLogger(__name__)

GOOGLE_ISSUERS: Final[tuple[str, ...]] = ("https://accounts.google.com", "accounts.google.com")
"""Google's ``iss`` values; its documentation says tokens carry either form. Google signs
tokens for every app that uses Google sign-in, so this preset is only safe together with
``audiences`` that the operator supplies: the OAuth client ids of the apps they trust
(for example FlowCrypt's browser extension and their own web client)."""

# Which JWK may verify which alg: its kty, and its crv when the alg fixes one. This table is
# also the list of algorithms the settings may allow. HMAC (HS256...) is absent on purpose:
# a public JWKS holds no shared secrets, and a verifier that accepted HS* could be tricked
# into using a public key's bytes as the secret (key confusion). "none" is absent too.
_KEY_TYPES: Final[Mapping[str, tuple[str, frozenset[str] | None]]] = {
    "RS256": ("RSA", None),
    "RS384": ("RSA", None),
    "RS512": ("RSA", None),
    "PS256": ("RSA", None),
    "PS384": ("RSA", None),
    "PS512": ("RSA", None),
    "ES256": ("EC", frozenset({"P-256"})),
    "ES384": ("EC", frozenset({"P-384"})),
    "ES512": ("EC", frozenset({"P-521"})),
    "EdDSA": ("OKP", frozenset({"Ed25519", "Ed448"})),
}

# Public halves only: a JWK that parses to a private key or an HMAC secret is skipped.
_VerifyingKey = (
    rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | ed448.Ed448PublicKey
)
_VERIFYING_KEY_CLASSES: Final = (
    rsa.RSAPublicKey,
    ec.EllipticCurvePublicKey,
    ed25519.Ed25519PublicKey,
    ed448.Ed448PublicKey,
)

# Real id_tokens are 1-2 KiB; anything far larger is not one and is not worth parsing.
_MAX_TOKEN_CHARS: Final = 16 * 1024
# 9999-12-31T23:59:59Z: later "times" cannot be turned into a datetime.
_MAX_NUMERIC_DATE: Final = 253_402_300_799

# PyJWT checks the signature only. Times, audience and issuer are checked by
# `_checked_identity` against our replaceable clock and our allow-lists, with our errors.
_SIGNATURE_ONLY: Final[Options] = {
    "verify_signature": True,
    "verify_exp": False,
    "verify_nbf": False,
    "verify_iat": False,
    "verify_aud": False,
    "verify_iss": False,
    "verify_sub": False,
    "verify_jti": False,
    # A short RSA key is refused, not merely warned about.
    "enforce_minimum_key_length": True,
}


@dataclass(frozen=True)
class OIDCSettings:
    """Which id_tokens are accepted.

    ``issuers`` are exact ``iss`` values (see :data:`GOOGLE_ISSUERS`); an issuer without a
    scheme, such as ``accounts.google.com``, is discovered over https. ``audiences`` are the
    OAuth client ids the operator trusts: there is no default, because any default would
    accept tokens minted for somebody else's app. ``min_refresh_seconds`` bounds how often
    unknown ``kid`` values, or an issuer that is down, make us fetch from the issuer.
    """

    issuers: tuple[str, ...]
    audiences: tuple[str, ...]
    leeway_seconds: int = 60
    jwks_cache_seconds: int = 3600
    min_refresh_seconds: int = 30
    http_timeout: float = 5.0
    allowed_algorithms: tuple[str, ...] = ("RS256", "RS384", "RS512", "ES256", "ES384", "PS256")

    def __post_init__(self) -> None:
        for name in ("issuers", "audiences", "allowed_algorithms"):
            value = getattr(self, name)
            # A bare string is iterable too, and would allow-list its single characters.
            if not isinstance(value, tuple) or not value:
                raise ValueError(f"oidc.{name} must be a non-empty tuple of strings")
            if not all(isinstance(v, str) and v for v in value):
                raise ValueError(f"oidc.{name} must contain only non-empty strings")
        refused = [a for a in self.allowed_algorithms if a not in _KEY_TYPES]
        if refused:
            raise ValueError(
                f"oidc.allowed_algorithms may not contain {refused}: only asymmetric signature "
                f"algorithms are accepted ({', '.join(_KEY_TYPES)}), never none or HMAC"
            )
        if self.leeway_seconds < 0 or self.min_refresh_seconds < 0:
            raise ValueError("oidc.leeway_seconds and oidc.min_refresh_seconds must be >= 0")
        if self.jwks_cache_seconds < self.min_refresh_seconds:
            raise ValueError("oidc.jwks_cache_seconds must be >= oidc.min_refresh_seconds")
        if not self.http_timeout > 0:
            raise ValueError("oidc.http_timeout must be > 0")


@dataclass(frozen=True)
class VerifiedIdentity:
    """What a verified id_token proves: ``issuer`` vouches that ``subject`` controls ``email``
    until ``expires`` (UTC)."""

    email: Email
    issuer: str
    subject: str
    expires: datetime


class OIDCError(Exception):
    """Base of every error raised by this module; its message is a sentence for users."""


class TokenMissing(OIDCError):
    pass


class TokenMalformed(OIDCError):
    pass


class TokenSignatureInvalid(OIDCError):
    pass


class TokenExpired(OIDCError):
    pass


class TokenNotYetValid(OIDCError):
    pass


class WrongIssuer(OIDCError):
    pass


class WrongAudience(OIDCError):
    pass


class EmailMismatch(OIDCError):
    pass


class EmailNotVerified(OIDCError):
    pass


class IssuerUnavailable(OIDCError):
    pass


_MISSING = "This request needs an OIDC id_token in an 'Authorization: Bearer' header."
_MALFORMED = "The id_token is not a well-formed JWT."
_BAD_SIGNATURE = "The id_token's signature is not valid."
_UNKNOWN_KEY = "The id_token is signed with a key its issuer does not publish."
_WEAK_KEY = "The id_token is signed with a key this server does not accept."
_EXPIRED = "The id_token has expired; sign in again to get a fresh one."
_NOT_YET_VALID = "The id_token is not valid yet; check the clock of the device that got it."
_WRONG_ISSUER = "The id_token comes from an identity provider this server does not accept."
_WRONG_AUDIENCE = "The id_token was issued for another application."
_UNAVAILABLE = "The identity provider's signing keys cannot be fetched now; try again later."

# Ordered: the first matching row wins, so subclasses come before their bases
# (InvalidSignatureError is a DecodeError; every row is a PyJWTError).
_JWT_ERRORS: Final[tuple[tuple[type[PyJWTError], type[OIDCError], str], ...]] = (
    (InvalidSignatureError, TokenSignatureInvalid, _BAD_SIGNATURE),
    (InvalidAlgorithmError, TokenSignatureInvalid, _BAD_SIGNATURE),
    (InvalidKeyError, TokenSignatureInvalid, _WEAK_KEY),
    (PyJWKError, TokenSignatureInvalid, _WEAK_KEY),
    (ExpiredSignatureError, TokenExpired, _EXPIRED),
    (ImmatureSignatureError, TokenNotYetValid, _NOT_YET_VALID),
    (InvalidAudienceError, WrongAudience, _WRONG_AUDIENCE),
    (InvalidIssuerError, WrongIssuer, _WRONG_ISSUER),
    (PyJWTError, TokenMalformed, _MALFORMED),
)


@contextmanager
def _mapped_jwt_errors() -> Iterator[None]:
    """The one place PyJWT exceptions become ``OIDCError``s."""
    try:
        yield
    except PyJWTError as e:
        ours, message = next((o, m) for f, o, m in _JWT_ERRORS if isinstance(e, f))
        raise ours(message) from e


@contextmanager
def _mapped_fetch_errors(url: str) -> Iterator[None]:
    """The one place httpx (and JSON decoding) exceptions become ``IssuerUnavailable``.

    The user gets a generic sentence; the operator gets the URL and the cause in the log.
    """
    try:
        yield
    except (httpx.HTTPError, httpx.InvalidURL, httpx.StreamError, ValueError) as e:
        logger.warning("OIDC: fetching %s failed: %r", url, e)
        raise IssuerUnavailable(_UNAVAILABLE) from e


def _unavailable(url: str, reason: str) -> IssuerUnavailable:
    logger.warning("OIDC: %s %s", url, reason)
    return IssuerUnavailable(_UNAVAILABLE)


@dataclass(frozen=True)
class _PublicKey:
    """One usable key from a JWKS."""

    kid: str | None
    kty: str
    crv: str | None
    alg: str | None  # set when the JWK pins its algorithm (RFC 7517 4.4)
    key: _VerifyingKey

    def fits(self, alg: str) -> bool:
        kty, curves = _KEY_TYPES[alg]
        return (
            self.kty == kty and (curves is None or self.crv in curves) and self.alg in (None, alg)
        )


@dataclass
class _IssuerCache:
    """Discovery and JWKS of one issuer.

    ``attempted_at`` records failed fetches as well as good ones, so that neither a stream of
    tokens with made-up kids nor an issuer that is down costs the issuer more than one
    request per ``min_refresh_seconds``. There is one cache per allow-listed issuer, so the
    number of caches is bounded by configuration, not by what tokens say.
    """

    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    jwks_uri: str | None = None
    discovered_at: float = 0.0
    keys: tuple[_PublicKey, ...] = ()
    fetched_at: float | None = None  # last successful JWKS fetch
    attempted_at: float | None = None  # last fetch attempt, whatever its outcome
    failed: bool = False  # whether that attempt failed


class OIDCVerifier:
    """Checks ``Authorization: Bearer <id_token>`` headers against an allow-list of issuers.

    One instance serves the whole application (it holds the key caches); ``http`` is the
    application's shared client, closed by its owner. ``clock`` returns Unix time.
    """

    def __init__(
        self,
        settings: OIDCSettings,
        http: httpx.AsyncClient,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._settings = settings
        self._http = http
        self._clock = clock
        self._caches: dict[str, _IssuerCache] = {}

    async def verify(self, authorization_header: str | None, expected: Email) -> VerifiedIdentity:
        """The identity the header proves, when it proves control of ``expected``.

        Raises an :class:`OIDCError` otherwise; see the module docstring for the tree.
        """
        token = _bearer_token(authorization_header)
        # Unverified: used only to choose the algorithm and the issuer whose keys to use.
        with _mapped_jwt_errors():
            header = jwt.get_unverified_header(token)
            unverified = jwt.decode(token, options={"verify_signature": False})
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self._settings.allowed_algorithms:
            raise TokenSignatureInvalid(
                f"The id_token is signed with {_quote(alg)}, an algorithm this server "
                "does not accept."
            )
        issuer = unverified.get("iss")
        # Checked before any fetch: only allow-listed issuers are ever contacted.
        if not isinstance(issuer, str) or issuer not in self._settings.issuers:
            raise WrongIssuer(_WRONG_ISSUER)
        keys = await self._keys_for(issuer, header.get("kid"), alg)
        claims = self._verified_claims(token, keys)
        return self._checked_identity(claims, issuer, expected)

    async def _keys_for(self, issuer: str, kid: str | None, alg: str) -> tuple[_PublicKey, ...]:
        """Keys that may have signed a token with this ``kid`` (PyJWT has checked that it is
        a string when present) and ``alg``. Without a kid, every key is a candidate."""
        found = _with_kid(await self._keys(issuer, refresh=False), kid)
        if not found:
            # An unknown kid usually means the issuer rotated its keys after our fetch.
            found = _with_kid(await self._keys(issuer, refresh=True), kid)
        if not found:
            raise TokenSignatureInvalid(_UNKNOWN_KEY)
        fitting = tuple(k for k in found if k.fits(alg))
        if not fitting:
            raise TokenSignatureInvalid(_BAD_SIGNATURE)
        return fitting

    async def _keys(self, issuer: str, *, refresh: bool) -> tuple[_PublicKey, ...]:
        """The issuer's keys, from the cache when it is fresh and ``refresh`` is false.

        Even with ``refresh``, the issuer is asked at most once per ``min_refresh_seconds``;
        inside that window the last outcome stands (its keys, or ``IssuerUnavailable``).
        """
        settings = self._settings
        base = _issuer_url(issuer)
        cache = self._caches.get(base)
        if cache is None:
            cache = self._caches[base] = _IssuerCache()
        # Without the lock first: a token with a known kid does not wait behind a refresh
        # that a token with an unknown kid started.
        if not refresh and self._fresh(cache):
            return cache.keys
        # Under the lock, so that a burst of requests on a cold cache makes one fetch and
        # the requests that waited find the keys already there.
        async with cache.lock:
            now = self._clock()
            if not refresh and self._fresh(cache):
                return cache.keys
            if (
                cache.attempted_at is not None
                and now - cache.attempted_at < settings.min_refresh_seconds
            ):
                if cache.failed:
                    raise IssuerUnavailable(_UNAVAILABLE)
                return cache.keys
            cache.attempted_at, cache.failed = now, True
            if cache.jwks_uri is None or now - cache.discovered_at >= settings.jwks_cache_seconds:
                cache.jwks_uri = await self._discover(base)
                cache.discovered_at = now
            keys = _parse_jwks(await self._get_json(cache.jwks_uri), cache.jwks_uri)
            cache.keys, cache.fetched_at, cache.failed = keys, now, False
            return keys

    def _fresh(self, cache: _IssuerCache) -> bool:
        return (
            cache.fetched_at is not None
            and self._clock() - cache.fetched_at < self._settings.jwks_cache_seconds
        )

    async def _discover(self, base: str) -> str:
        """The ``jwks_uri`` from the issuer's discovery document (OIDC Discovery 1.0)."""
        # Section 4: a terminating "/" of the issuer is removed before appending.
        url = base.rstrip("/") + "/.well-known/openid-configuration"
        document = await self._get_json(url)
        # Section 4.3: the document must name the issuer it was fetched for, so that one
        # issuer cannot present another's configuration.
        if document.get("issuer") != base:
            raise _unavailable(url, f"names issuer {document.get('issuer')!r}, not {base!r}")
        jwks_uri = document.get("jwks_uri")
        # Never downgrade: an https issuer's keys come over https. (http is for loopback
        # test issuers, which the operator has to allow-list explicitly.)
        schemes = ("https://", "http://") if base.startswith("http://") else ("https://",)
        if not isinstance(jwks_uri, str) or not jwks_uri.startswith(schemes):
            raise _unavailable(url, f"has no usable jwks_uri: {jwks_uri!r}")
        return jwks_uri

    async def _get_json(self, url: str) -> dict[str, Any]:
        with _mapped_fetch_errors(url):
            response = await self._http.get(
                url,
                headers={"Accept": "application/json"},
                timeout=self._settings.http_timeout,
            )
            response.raise_for_status()
            document = response.json()
        if not isinstance(document, dict):
            raise _unavailable(url, "is not a JSON object")
        return document

    def _verified_claims(self, token: str, keys: tuple[_PublicKey, ...]) -> dict[str, Any]:
        """The claims, once one of ``keys`` verifies the signature."""
        failure: OIDCError = TokenSignatureInvalid(_BAD_SIGNATURE)
        for key in keys:
            # The algorithms come from our allow-list and the key's type, not from the token
            # (RFC 8725 section 2.1); the token's alg has to be one of them.
            algorithms = [a for a in self._settings.allowed_algorithms if key.fits(a)]
            try:
                with _mapped_jwt_errors():
                    claims: dict[str, Any] = jwt.decode(
                        token, key.key, algorithms=algorithms, options=_SIGNATURE_ONLY
                    )
                    return claims
            except TokenSignatureInvalid as e:
                # More than one candidate only without a kid, or with a kid the JWKS repeats.
                failure = e
        raise failure

    def _checked_identity(
        self, claims: Mapping[str, Any], issuer: str, expected: Email
    ) -> VerifiedIdentity:
        settings = self._settings
        now = self._clock()
        leeway = settings.leeway_seconds
        aud = claims.get("aud")
        audiences = [aud] if isinstance(aud, str) else aud
        if not isinstance(audiences, list) or not any(
            isinstance(a, str) and a in settings.audiences for a in audiences
        ):
            raise WrongAudience(_WRONG_AUDIENCE)
        expires = _numeric_date(claims, "exp")
        if expires is None:
            raise TokenMalformed("The id_token has no expiry time ('exp' claim).")
        if expires <= now - leeway:
            raise TokenExpired(_EXPIRED)
        for name in ("nbf", "iat"):
            moment = _numeric_date(claims, name)
            if moment is not None and moment > now + leeway:
                raise TokenNotYetValid(_NOT_YET_VALID)
        subject = claims.get("sub")
        if not isinstance(subject, str) or not subject:
            raise TokenMalformed("The id_token does not name its subject ('sub' claim).")
        if _claimed_email(claims) != expected:
            raise EmailMismatch(
                f"The id_token is for a different email address than {expected.address}."
            )
        if not _says_verified(claims.get("email_verified", True)):
            raise EmailNotVerified(
                "The identity provider has not verified this email address; verify it "
                "there first, or submit without a token to get a confirmation email."
            )
        return VerifiedIdentity(
            email=expected,
            issuer=issuer,
            subject=subject,
            expires=datetime.fromtimestamp(expires, tz=UTC),
        )


def _bearer_token(authorization_header: str | None) -> str:
    """The token of ``Bearer <token>``. Clients without a token send ``Bearer ``,
    ``Bearer undefined`` or ``Bearer null``: those mean "no token", not a malformed one."""
    if authorization_header is None:
        raise TokenMissing(_MISSING)
    scheme, _, token = authorization_header.strip().partition(" ")
    token = token.strip()
    # RFC 9110 11.1: the scheme is case-insensitive.
    if scheme.lower() != "bearer" or token in ("", "undefined", "null"):
        raise TokenMissing(_MISSING)
    if len(token) > _MAX_TOKEN_CHARS:
        raise TokenMalformed(_MALFORMED)
    return token


def _issuer_url(issuer: str) -> str:
    """The URL an ``iss`` value stands for: Google's ``accounts.google.com`` has no scheme,
    and means ``https://accounts.google.com``. Both forms share one cache."""
    return issuer if "://" in issuer else f"https://{issuer}"


def _parse_jwks(document: Mapping[str, Any], url: str) -> tuple[_PublicKey, ...]:
    entries = document.get("keys")
    if not isinstance(entries, list):
        raise _unavailable(url, "has no 'keys' list")
    keys = tuple(k for k in map(_parse_jwk, entries) if k is not None)
    if not keys:
        # No key could verify anything; a broken issuer, not a bad token.
        raise _unavailable(url, "holds no usable signing key")
    if len(keys) < len(entries):
        logger.info("OIDC: skipped %d unusable keys in %s", len(entries) - len(keys), url)
    return keys


def _parse_jwk(entry: object) -> _PublicKey | None:
    """A usable signing key, or None for anything else a JWKS may hold (encryption keys,
    unsupported types, mistakes): one odd key must not make the issuer unusable."""
    if not isinstance(entry, dict):
        return None
    kty, kid, crv, alg, use = (entry.get(n) for n in ("kty", "kid", "crv", "alg", "use"))
    if not isinstance(kty, str) or not all(
        v is None or isinstance(v, str) for v in (kid, crv, alg)
    ):
        return None
    if use not in (None, "sig"):
        return None
    try:
        key = jwt.PyJWK(entry).key
    except PyJWTError:
        return None
    if not isinstance(key, _VERIFYING_KEY_CLASSES):
        # A private key published by mistake, or an HMAC secret ("oct").
        return None
    return _PublicKey(kid=kid, kty=kty, crv=crv, alg=alg, key=key)


def _with_kid(keys: tuple[_PublicKey, ...], kid: str | None) -> tuple[_PublicKey, ...]:
    return keys if kid is None else tuple(k for k in keys if k.kid == kid)


def _numeric_date(claims: Mapping[str, Any], name: str) -> float | None:
    """A NumericDate claim (RFC 7519 2), or None when absent. Python's JSON parser accepts
    NaN and Infinity, which compare false with everything and would pass any time check."""
    value = claims.get(name)
    if value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or not 0 <= value <= _MAX_NUMERIC_DATE
    ):
        raise TokenMalformed(f"The id_token's '{name}' claim is not a valid time.")
    return float(value)


def _claimed_email(claims: Mapping[str, Any]) -> Email:
    value = claims.get("email")
    if not isinstance(value, str):
        raise EmailMismatch(
            "The id_token carries no email address; request it with the 'email' scope."
        )
    try:
        return Email.parse(value)
    except InvalidEmail as e:
        raise EmailMismatch("The id_token's email address is not valid.") from e


def _says_verified(value: object) -> bool:
    """Whether ``email_verified`` says yes. Some issuers send strings ("true"/"false").
    Anything that is not a clear yes counts as no: attesting an address on a guess is worse
    than sending the user through the confirmation email."""
    return value is True or (isinstance(value, str) and value.strip().lower() == "true")


def _quote(value: object) -> str:
    """A token-supplied value, quoted and cut short, for a message."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
