"""A real OpenID Connect issuer on 127.0.0.1, for tests of id_token verification.

It serves ``{issuer}/.well-known/openid-configuration`` and ``{issuer}/jwks`` over HTTP from a
uvicorn thread, signs tokens with RSA and EC keys made at test time, and counts fetches, so a
test can prove what a verifier fetched and, as important, what it did not.

    with LocalIssuer.start(clock=clock) as issuer:
        token = issuer.mint(email="alice@example.org")           # RS256, kid "rsa-1"
        token = issuer.mint(alg="ES256", exp=clock() - 3600)      # EC key, expired
        kid = issuer.add_rsa_key()                                 # rotation: a new kid
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Final

import jwt
import uvicorn
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

DEFAULT_AUDIENCE: Final = "attester-tests.apps.example"
DEFAULT_EMAIL: Final = "alice@example.org"


class _Drop:
    def __repr__(self) -> str:
        return "DROP"


DROP: Final = _Drop()
"""Pass as a claim (``mint(email=DROP)``) or as ``kid`` to leave it out of the token."""

_CURVES: Final[Mapping[str, ec.EllipticCurve]] = {
    "P-256": ec.SECP256R1(),
    "P-384": ec.SECP384R1(),
    "P-521": ec.SECP521R1(),
}
_HMAC_HASHES: Final = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}

_PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


class FakeClock:
    """A clock to pass as ``clock=``: it stands still until a test moves it."""

    def __init__(self, now: float | None = None) -> None:
        self.now = time.time() if now is None else now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class _Key:
    kid: str
    private: _PrivateKey
    jwk_alg: str | None  # the "alg" member published with the key, if any
    published: bool


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


class LocalIssuer:
    """An OIDC issuer with discovery, JWKS, key rotation and a ``mint`` helper.

    Knobs a test may turn while the server runs:

    - ``available = False``: discovery and JWKS answer 503.
    - ``discovery_issuer``: the ``issuer`` member of the discovery document (mix-up tests).
    - ``jwks_document``: served instead of the real JWKS (broken-issuer tests).
    """

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.time,
        path: str = "",
        audience: str = DEFAULT_AUDIENCE,
        email: str = DEFAULT_EMAIL,
    ) -> None:
        self.clock = clock
        self.path = path.rstrip("/")
        self.audience = audience
        self.email = email
        self.url = ""  # set by start(): http://127.0.0.1:<port><path>
        self._keys: dict[str, _Key] = {}
        self._serial = 0
        self.add_rsa_key("rsa-1")
        self.add_ec_key("ec-1")
        self._initial = dict(self._keys)
        self.reset(clock)

    def reset(self, clock: Callable[[], float] | None = None) -> None:
        """Back to the state after start: the two initial keys published, counters at zero,
        knobs untouched. Lets a module share one running issuer between tests."""
        if clock is not None:
            self.clock = clock
        self.available = True
        self.discovery_issuer: str | None = None
        self.jwks_document: object | None = None
        self.discovery_fetches = 0
        self.jwks_fetches = 0
        self._keys = dict(self._initial)
        for key in self._keys.values():
            key.published = True

    @classmethod
    @contextmanager
    def start(cls, **kwargs: Any) -> Iterator[LocalIssuer]:
        """Serve a new issuer on a free loopback port until the block ends."""
        issuer = cls(**kwargs)
        config = uvicorn.Config(
            issuer.app(),
            host="127.0.0.1",
            port=0,
            log_level="warning",
            access_log=False,
            lifespan="off",
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 20
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("local OIDC issuer did not start")
            time.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        issuer.url = f"http://127.0.0.1:{port}{issuer.path}"
        try:
            yield issuer
        finally:
            server.should_exit = True
            thread.join(10)

    # -- keys -------------------------------------------------------------------------------

    def add_rsa_key(
        self,
        kid: str | None = None,
        *,
        bits: int = 2048,
        publish: bool = True,
        jwk_alg: str | None = None,
    ) -> str:
        """Make an RSA key; published keys appear in the JWKS at the next fetch."""
        key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
        return self._add(kid or self._next_kid("rsa"), key, publish, jwk_alg)

    def add_ec_key(
        self,
        kid: str | None = None,
        *,
        curve: str = "P-256",
        publish: bool = True,
        jwk_alg: str | None = None,
    ) -> str:
        key = ec.generate_private_key(_CURVES[curve])
        return self._add(kid or self._next_kid("ec"), key, publish, jwk_alg)

    def publish(self, kid: str) -> None:
        self._keys[kid].published = True

    def withdraw(self, kid: str) -> None:
        self._keys[kid].published = False

    def public_pem(self, kid: str) -> bytes:
        public = self._keys[kid].private.public_key()
        return public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def jwk(self, kid: str, *, private: bool = False) -> dict[str, Any]:
        """The key as a JWK, as the JWKS publishes it (``private=True`` adds the secret part,
        to test that a verifier refuses a JWKS published by mistake with its secrets)."""
        key = self._keys[kid]
        jwk: dict[str, Any]
        if isinstance(key.private, rsa.RSAPrivateKey):
            rsa_material = key.private if private else key.private.public_key()
            jwk = RSAAlgorithm.to_jwk(rsa_material, as_dict=True)
        else:
            ec_material = key.private if private else key.private.public_key()
            jwk = ECAlgorithm.to_jwk(ec_material, as_dict=True)
        jwk.update({"kid": kid, "use": "sig"})
        if key.jwk_alg is not None:
            jwk["alg"] = key.jwk_alg
        return jwk

    def jwks(self) -> dict[str, Any]:
        return {"keys": [self.jwk(k.kid) for k in self._keys.values() if k.published]}

    # -- tokens -----------------------------------------------------------------------------

    def claims(self, **overrides: object) -> dict[str, object]:
        """Claims of a valid id_token for ``self.email``; ``DROP`` removes one."""
        now = int(self.clock())
        claims: dict[str, object] = {
            "iss": self.url,
            "aud": self.audience,
            "sub": "110169484474386276334",
            "email": self.email,
            "email_verified": True,
            "iat": now,
            "exp": now + 3600,
        }
        claims.update(overrides)
        return {k: v for k, v in claims.items() if v is not DROP}

    def mint(
        self,
        *,
        kid: str | _Drop | None = None,
        alg: str = "RS256",
        signing_kid: str | None = None,
        headers: Mapping[str, object] | None = None,
        **claims: object,
    ) -> str:
        """A signed id_token with ``claims`` over the defaults of :meth:`claims`.

        ``kid`` defaults to the first key that fits ``alg``; ``signing_kid`` signs with a
        different key than the header names (a forged signature). ``alg="none"`` makes an
        unsigned token and ``alg="HS256"`` one whose HMAC secret is the public key's PEM:
        the two classic attacks on verifiers that trust the token's ``alg``. An ``alg`` that
        PyJWT does not implement gets a meaningless signature.
        """
        if kid is None:
            kid = self._default_kid(alg)
        header: dict[str, object] = {"typ": "JWT", "alg": alg}
        if not isinstance(kid, _Drop):
            header["kid"] = kid
        header.update(headers or {})
        payload = self.claims(**claims)
        if alg.lower() == "none":
            return self._compact(header, payload, b"")
        if alg not in jwt.algorithms.get_default_algorithms():
            # An algorithm nobody implements: the signature bytes do not matter.
            return self._compact(header, payload, b"\x00" * 32)
        if alg in _HMAC_HASHES:
            assert isinstance(kid, str), "the key confusion attack uses a published key's PEM"
            signing_input = self._signing_input(header, payload)
            secret = self.public_pem(kid)
            mac = hmac.new(secret, signing_input.encode("ascii"), _HMAC_HASHES[alg])
            return f"{signing_input}.{_b64(mac.digest())}"
        signer_kid = signing_kid or kid
        assert isinstance(signer_kid, str), "a token without kid needs signing_kid"
        extra = {k: v for k, v in header.items() if k not in ("typ", "alg")}
        with warnings.catch_warnings():
            # Tests sign with deliberately short RSA keys; verifiers must refuse those.
            warnings.simplefilter("ignore", jwt.InsecureKeyLengthWarning)
            # The JWS layer, not jwt.encode: tests need claims PyJWT refuses to encode
            # (a non-string iss, NaN times) to prove that the verifier refuses them too.
            return jwt.api_jws.encode(
                json.dumps(payload, separators=(",", ":")).encode(),
                self._keys[signer_kid].private,
                algorithm=alg,
                headers=extra,
            )

    def bearer(self, **kwargs: Any) -> str:
        """``Bearer <mint(**kwargs)>``, the header value a client sends."""
        return f"Bearer {self.mint(**kwargs)}"

    # -- HTTP -------------------------------------------------------------------------------

    def app(self) -> Starlette:
        async def discovery(request: Request) -> Response:
            self.discovery_fetches += 1
            if not self.available:
                return PlainTextResponse("issuer down for the test", status_code=503)
            return JSONResponse(
                {
                    "issuer": self.discovery_issuer or self.url,
                    "jwks_uri": f"{self.url}/jwks",
                    "authorization_endpoint": f"{self.url}/authorize",
                    "response_types_supported": ["id_token"],
                    "subject_types_supported": ["public"],
                    "id_token_signing_alg_values_supported": ["RS256", "ES256"],
                }
            )

        async def jwks(request: Request) -> Response:
            self.jwks_fetches += 1
            if not self.available:
                return PlainTextResponse("issuer down for the test", status_code=503)
            if self.jwks_document is not None:
                return JSONResponse(self.jwks_document)
            return JSONResponse(self.jwks())

        return Starlette(
            routes=[
                Route(f"{self.path}/.well-known/openid-configuration", discovery),
                Route(f"{self.path}/jwks", jwks),
            ]
        )

    # -- helpers ----------------------------------------------------------------------------

    def _add(self, kid: str, key: _PrivateKey, publish: bool, jwk_alg: str | None) -> str:
        if kid in self._keys:
            raise ValueError(f"kid {kid!r} exists")
        self._keys[kid] = _Key(kid, key, jwk_alg, publish)
        return kid

    def _next_kid(self, prefix: str) -> str:
        self._serial += 1
        return f"{prefix}-rotated-{self._serial}"

    def _default_kid(self, alg: str) -> str:
        want: type[rsa.RSAPrivateKey] | type[ec.EllipticCurvePrivateKey] = (
            ec.EllipticCurvePrivateKey if alg.startswith("ES") else rsa.RSAPrivateKey
        )
        curve = {"ES256": "secp256r1", "ES384": "secp384r1", "ES512": "secp521r1"}.get(alg)
        for key in self._keys.values():
            if not isinstance(key.private, want):
                continue
            if curve is None or (
                isinstance(key.private, ec.EllipticCurvePrivateKey)
                and key.private.curve.name == curve
            ):
                return key.kid
        raise LookupError(f"no key for {alg}; add one with add_rsa_key/add_ec_key")

    @staticmethod
    def _signing_input(header: Mapping[str, object], payload: Mapping[str, object]) -> str:
        def part(obj: Mapping[str, object]) -> str:
            return _b64(json.dumps(obj, separators=(",", ":")).encode())

        return f"{part(header)}.{part(payload)}"

    @classmethod
    def _compact(
        cls, header: Mapping[str, object], payload: Mapping[str, object], signature: bytes
    ) -> str:
        return f"{cls._signing_input(header, payload)}.{_b64(signature)}"
