"""OIDC id_token verification against a real issuer on 127.0.0.1 (tests/support/oidc_issuer.py).

Only the Google preset test fakes HTTP (httpx.MockTransport): its discovery URL is fixed to
https://accounts.google.com, which a loopback server cannot stand in for.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from attester.attestation import oidc
from attester.attestation.oidc import (
    GOOGLE_ISSUERS,
    EmailMismatch,
    EmailNotVerified,
    IssuerUnavailable,
    OIDCError,
    OIDCSettings,
    OIDCVerifier,
    TokenExpired,
    TokenMalformed,
    TokenMissing,
    TokenNotYetValid,
    TokenSignatureInvalid,
    VerifiedIdentity,
    WrongAudience,
    WrongIssuer,
)
from attester.openpgp.types import Email
from tests.support.oidc_issuer import DEFAULT_AUDIENCE, DROP, FakeClock, LocalIssuer

pytestmark = pytest.mark.anyio

ALICE = Email.parse("alice@example.org")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(scope="module")
def running_issuer() -> Iterator[LocalIssuer]:
    # One server per module; each test gets it reset, with a fresh verifier and clock.
    with LocalIssuer.start() as running:
        yield running


@pytest.fixture
def issuer(running_issuer: LocalIssuer, clock: FakeClock) -> LocalIssuer:
    running_issuer.reset(clock)
    return running_issuer


@pytest.fixture
async def http(anyio_backend: str) -> AsyncIterator[httpx.AsyncClient]:
    # trust_env=False: a developer's proxy settings must not route loopback traffic.
    async with httpx.AsyncClient(trust_env=False) as client:
        yield client


def make_verifier(
    http: httpx.AsyncClient, clock: FakeClock, *issuers: str, **settings: Any
) -> OIDCVerifier:
    return OIDCVerifier(
        OIDCSettings(issuers=issuers, audiences=(DEFAULT_AUDIENCE,), **settings), http, clock
    )


@pytest.fixture
def verifier(issuer: LocalIssuer, http: httpx.AsyncClient, clock: FakeClock) -> OIDCVerifier:
    return make_verifier(http, clock, issuer.url)


# -- success -------------------------------------------------------------------------------


async def test_rs256_token_proves_the_address(
    verifier: OIDCVerifier, issuer: LocalIssuer, clock: FakeClock
) -> None:
    exp = int(clock()) + 600
    identity = await verifier.verify(issuer.bearer(exp=exp), ALICE)
    assert identity == VerifiedIdentity(
        email=ALICE,
        issuer=issuer.url,
        subject="110169484474386276334",
        expires=datetime.fromtimestamp(exp, tz=UTC),
    )
    assert (issuer.discovery_fetches, issuer.jwks_fetches) == (1, 1)


async def test_es256_token_proves_the_address(verifier: OIDCVerifier, issuer: LocalIssuer) -> None:
    identity = await verifier.verify(issuer.bearer(alg="ES256"), ALICE)
    assert identity.email == ALICE


@pytest.mark.parametrize("alg", ["RS384", "RS512", "PS256", "ES384"])
async def test_other_allowed_algorithms(
    verifier: OIDCVerifier, issuer: LocalIssuer, alg: str
) -> None:
    issuer.add_ec_key("ec-384", curve="P-384")
    assert (await verifier.verify(issuer.bearer(alg=alg), ALICE)).email == ALICE


async def test_bearer_scheme_is_case_insensitive(
    verifier: OIDCVerifier, issuer: LocalIssuer
) -> None:
    assert await verifier.verify(f"bearer  {issuer.mint()} ", ALICE)


async def test_token_without_kid_is_tried_against_the_keys(
    verifier: OIDCVerifier, issuer: LocalIssuer
) -> None:
    # Some small issuers publish one key and leave kid out.
    issuer.add_rsa_key("rsa-2")
    token = issuer.mint(kid=DROP, signing_kid="rsa-2")
    assert (await verifier.verify(f"Bearer {token}", ALICE)).email == ALICE


async def test_token_without_kid_signed_by_an_unknown_key(
    verifier: OIDCVerifier, issuer: LocalIssuer
) -> None:
    issuer.add_rsa_key("rogue", publish=False)
    with pytest.raises(TokenSignatureInvalid):
        await verifier.verify(issuer.bearer(kid=DROP, signing_kid="rogue"), ALICE)


async def test_issuer_with_a_path(http: httpx.AsyncClient, clock: FakeClock) -> None:
    # Keycloak-style issuer; discovery is {iss}/.well-known/..., a trailing "/" removed.
    with LocalIssuer.start(clock=clock, path="/realms/attester") as realm:
        verifier = make_verifier(http, clock, realm.url)
        assert (await verifier.verify(realm.bearer(), ALICE)).issuer == realm.url


# -- the header ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "Bearer",
        "Bearer ",
        "Bearer    ",
        "Bearer undefined",
        "Bearer null",
        "Basic YWxpY2U6c2VjcmV0",
        "Token abc.def.ghi",
    ],
)
async def test_no_usable_token_is_token_missing(
    verifier: OIDCVerifier, issuer: LocalIssuer, header: str | None
) -> None:
    with pytest.raises(TokenMissing) as e:
        await verifier.verify(header, ALICE)
    assert "Authorization: Bearer" in str(e.value)
    assert issuer.discovery_fetches == issuer.jwks_fetches == 0


@pytest.mark.parametrize(
    "token", ["abc", "a.b.c", "a.b", "eyJhbGciOiJSUzI1NiJ9.e30", "x" * 20_000, "a b.c"]
)
async def test_garbage_is_malformed(
    verifier: OIDCVerifier, issuer: LocalIssuer, token: str
) -> None:
    with pytest.raises(TokenMalformed):
        await verifier.verify(f"Bearer {token}", ALICE)
    assert issuer.jwks_fetches == 0


# -- signature and algorithm ---------------------------------------------------------------


async def test_key_not_in_jwks_is_refused(verifier: OIDCVerifier, issuer: LocalIssuer) -> None:
    issuer.add_rsa_key("rogue", publish=False)
    with pytest.raises(TokenSignatureInvalid, match="does not publish"):
        await verifier.verify(issuer.bearer(kid="rogue"), ALICE)


async def test_signature_by_another_key_under_a_published_kid(
    verifier: OIDCVerifier, issuer: LocalIssuer
) -> None:
    issuer.add_rsa_key("rogue", publish=False)
    with pytest.raises(TokenSignatureInvalid):
        await verifier.verify(issuer.bearer(kid="rsa-1", signing_kid="rogue"), ALICE)


async def test_tampered_payload_is_refused(verifier: OIDCVerifier, issuer: LocalIssuer) -> None:
    header, _, signature = issuer.mint(email="mallory@example.org").split(".")
    forged_payload = issuer.mint().split(".")[1]  # alice's claims under mallory's signature
    with pytest.raises(TokenSignatureInvalid):
        await verifier.verify(f"Bearer {header}.{forged_payload}.{signature}", ALICE)


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "X" * 100, ""])
async def test_alg_none_is_refused_before_any_fetch(
    verifier: OIDCVerifier, issuer: LocalIssuer, alg: str
) -> None:
    with pytest.raises(TokenSignatureInvalid, match="algorithm"):
        await verifier.verify(issuer.bearer(alg=alg), ALICE)
    assert issuer.jwks_fetches == 0


@pytest.mark.parametrize("alg", ["HS256", "HS384", "HS512"])
async def test_hmac_signed_with_the_public_key_is_refused(
    verifier: OIDCVerifier, issuer: LocalIssuer, alg: str
) -> None:
    # Key confusion: the attacker knows the public PEM and uses it as the HMAC secret.
    with pytest.raises(TokenSignatureInvalid):
        await verifier.verify(issuer.bearer(alg=alg, kid="rsa-1"), ALICE)
    assert issuer.jwks_fetches == 0


async def test_alg_not_allowed_by_settings(
    issuer: LocalIssuer, http: httpx.AsyncClient, clock: FakeClock
) -> None:
    verifier = make_verifier(http, clock, issuer.url, allowed_algorithms=("ES256",))
    with pytest.raises(TokenSignatureInvalid):
        await verifier.verify(issuer.bearer(alg="RS256"), ALICE)
    assert await verifier.verify(issuer.bearer(alg="ES256"), ALICE)


async def test_alg_that_does_not_fit_the_key_is_refused(
    verifier: OIDCVerifier, issuer: LocalIssuer
) -> None:
    # Header names the RSA key but the token is an ES256 token.
    with pytest.raises(TokenSignatureInvalid):
        await verifier.verify(issuer.bearer(alg="ES256", kid="rsa-1", signing_kid="ec-1"), ALICE)


async def test_alg_pinned_by_the_jwk_is_enforced(
    verifier: OIDCVerifier, issuer: LocalIssuer
) -> None:
    issuer.add_rsa_key("rsa-pinned", jwk_alg="RS256")
    assert await verifier.verify(issuer.bearer(kid="rsa-pinned"), ALICE)
    with pytest.raises(TokenSignatureInvalid):
        await verifier.verify(issuer.bearer(kid="rsa-pinned", alg="PS256"), ALICE)


async def test_short_rsa_key_is_refused(verifier: OIDCVerifier, issuer: LocalIssuer) -> None:
    issuer.add_rsa_key("rsa-1024", bits=1024)
    with pytest.raises(TokenSignatureInvalid, match="does not accept"):
        await verifier.verify(issuer.bearer(kid="rsa-1024"), ALICE)


# -- time ----------------------------------------------------------------------------------


async def test_expired_token(verifier: OIDCVerifier, issuer: LocalIssuer, clock: FakeClock) -> None:
    now = int(clock())
    with pytest.raises(TokenExpired):
        await verifier.verify(issuer.bearer(iat=now - 3700, exp=now - 61), ALICE)
    # Within the 60 s leeway: clocks of phones and servers drift.
    assert await verifier.verify(issuer.bearer(iat=now - 3700, exp=now - 59), ALICE)


async def test_token_expires_as_the_clock_moves(
    verifier: OIDCVerifier, issuer: LocalIssuer, clock: FakeClock
) -> None:
    header = issuer.bearer(exp=int(clock()) + 10)
    assert await verifier.verify(header, ALICE)
    clock.advance(71)
    with pytest.raises(TokenExpired):
        await verifier.verify(header, ALICE)


@pytest.mark.parametrize("claim", ["nbf", "iat"])
async def test_future_token_beyond_leeway(
    verifier: OIDCVerifier, issuer: LocalIssuer, clock: FakeClock, claim: str
) -> None:
    now = int(clock())
    with pytest.raises(TokenNotYetValid):
        await verifier.verify(issuer.bearer(**{claim: now + 61}), ALICE)
    assert await verifier.verify(issuer.bearer(**{claim: now + 59}), ALICE)


@pytest.mark.parametrize(
    "claims",
    [
        {"exp": DROP},
        {"exp": "tomorrow"},
        {"exp": True},
        {"exp": float("nan")},
        {"exp": float("inf")},
        {"exp": 10**20},
        {"nbf": "now"},
        {"iat": float("nan")},
        {"sub": DROP},
        {"sub": ""},
        {"sub": 12345},
    ],
    ids=repr,
)
async def test_missing_or_mistyped_claims_are_malformed(
    verifier: OIDCVerifier, issuer: LocalIssuer, claims: dict[str, object]
) -> None:
    with pytest.raises(TokenMalformed):
        await verifier.verify(issuer.bearer(**claims), ALICE)


# -- issuer and audience -------------------------------------------------------------------


async def test_wrong_issuer_is_refused_without_any_fetch(
    verifier: OIDCVerifier, issuer: LocalIssuer, clock: FakeClock
) -> None:
    with LocalIssuer.start(clock=clock) as stranger:
        # A real issuer that is not allow-listed: its URL must never be fetched.
        with pytest.raises(WrongIssuer):
            await verifier.verify(stranger.bearer(), ALICE)
        assert stranger.discovery_fetches == stranger.jwks_fetches == 0
    # Our issuer's key, somebody else's iss.
    for iss in ("https://evil.example", issuer.url + "/", DROP, 42):
        with pytest.raises(WrongIssuer):
            await verifier.verify(issuer.bearer(iss=iss), ALICE)
    assert issuer.discovery_fetches == issuer.jwks_fetches == 0


@pytest.mark.parametrize("aud", ["another-app", ["another-app"], [], DROP, 42, [42]], ids=repr)
async def test_wrong_audience(verifier: OIDCVerifier, issuer: LocalIssuer, aud: object) -> None:
    with pytest.raises(WrongAudience):
        await verifier.verify(issuer.bearer(aud=aud), ALICE)


async def test_audience_list_needs_one_allowed_entry(
    verifier: OIDCVerifier, issuer: LocalIssuer
) -> None:
    # OIDC allows several audiences; azp is not required.
    assert await verifier.verify(issuer.bearer(aud=["another-app", DEFAULT_AUDIENCE]), ALICE)


# -- email ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "claimed",
    ["alice@example.org", "Alice@Example.ORG", " ALICE@example.org ", "<alice@example.org>"],
)
async def test_email_matches_after_normalising(
    verifier: OIDCVerifier, issuer: LocalIssuer, claimed: str
) -> None:
    identity = await verifier.verify(issuer.bearer(email=claimed), Email.parse("ALICE@EXAMPLE.org"))
    assert identity.email == ALICE


@pytest.mark.parametrize(
    "claimed", ["bob@example.org", "alice@example.com", "alice+x@example.org", "nonsense", 7, DROP]
)
async def test_email_mismatch(verifier: OIDCVerifier, issuer: LocalIssuer, claimed: object) -> None:
    with pytest.raises(EmailMismatch):
        await verifier.verify(issuer.bearer(email=claimed), ALICE)


@pytest.mark.parametrize("flag", [False, "false", "FALSE", 0, None, "no"], ids=repr)
async def test_email_not_verified(
    verifier: OIDCVerifier, issuer: LocalIssuer, flag: object
) -> None:
    with pytest.raises(EmailNotVerified):
        await verifier.verify(issuer.bearer(email_verified=flag), ALICE)


@pytest.mark.parametrize("flag", [True, "true", "True", DROP], ids=repr)
async def test_email_verified_or_silent(
    verifier: OIDCVerifier, issuer: LocalIssuer, flag: object
) -> None:
    assert await verifier.verify(issuer.bearer(email_verified=flag), ALICE)


# -- the issuer's availability -------------------------------------------------------------


async def test_issuer_down_then_back(
    verifier: OIDCVerifier, issuer: LocalIssuer, clock: FakeClock
) -> None:
    issuer.available = False
    with pytest.raises(IssuerUnavailable):
        await verifier.verify(issuer.bearer(), ALICE)
    assert issuer.discovery_fetches == 1
    issuer.available = True
    # A down issuer is asked again only after min_refresh_seconds, however many tokens come.
    for _ in range(5):
        with pytest.raises(IssuerUnavailable):
            await verifier.verify(issuer.bearer(), ALICE)
    assert issuer.discovery_fetches == 1
    clock.advance(30)
    assert await verifier.verify(issuer.bearer(), ALICE)
    assert (issuer.discovery_fetches, issuer.jwks_fetches) == (2, 1)


async def test_jwks_down(verifier: OIDCVerifier, issuer: LocalIssuer) -> None:
    issuer.jwks_document = ["not", "an", "object"]
    with pytest.raises(IssuerUnavailable, match="try again later"):
        await verifier.verify(issuer.bearer(), ALICE)


async def test_unreachable_issuer(
    issuer: LocalIssuer, http: httpx.AsyncClient, clock: FakeClock
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}"
    verifier = make_verifier(http, clock, closed)
    with pytest.raises(IssuerUnavailable):
        await verifier.verify(issuer.bearer(iss=closed), ALICE)


async def test_discovery_naming_another_issuer(verifier: OIDCVerifier, issuer: LocalIssuer) -> None:
    issuer.discovery_issuer = "https://accounts.google.com"
    with pytest.raises(IssuerUnavailable):
        await verifier.verify(issuer.bearer(), ALICE)
    assert issuer.jwks_fetches == 0


@pytest.mark.parametrize(
    "document",
    [
        {"keys": "nope"},
        {},
        {"keys": []},
        {"keys": [{"kty": "oct", "k": "c2VjcmV0", "kid": "rsa-1"}]},
    ],
    ids=repr,
)
async def test_jwks_without_usable_keys(
    verifier: OIDCVerifier, issuer: LocalIssuer, document: object
) -> None:
    issuer.jwks_document = document
    with pytest.raises(IssuerUnavailable):
        await verifier.verify(issuer.bearer(), ALICE)


async def test_odd_jwks_entries_are_skipped(verifier: OIDCVerifier, issuer: LocalIssuer) -> None:
    issuer.add_rsa_key("leaked")
    good = issuer.jwk("rsa-1")
    issuer.jwks_document = {
        "keys": [
            "garbage",
            {"kid": "x"},
            {"kty": "RSA", "kid": "broken", "n": "AQAB"},
            {"kty": "EC", "crv": "P-192", "kid": "odd-curve", "x": "AA", "y": "AA"},
            {**issuer.jwk("ec-1"), "use": "enc"},
            {**issuer.jwk("ec-1"), "kid": ["list"]},
            {**issuer.jwk("ec-1"), "alg": "RSA-OAEP", "kid": "enc-alg"},
            issuer.jwk("leaked", private=True),  # secrets published by mistake: not used
            good,
        ]
    }
    assert await verifier.verify(issuer.bearer(), ALICE)
    for kid, alg in (("ec-1", "ES256"), ("leaked", "RS256")):
        with pytest.raises(TokenSignatureInvalid):
            await verifier.verify(issuer.bearer(kid=kid, alg=alg), ALICE)


# -- caching and rotation ------------------------------------------------------------------


async def test_one_fetch_serves_many_verifications(
    verifier: OIDCVerifier, issuer: LocalIssuer, clock: FakeClock
) -> None:
    for i in range(10):
        clock.advance(60)
        await verifier.verify(issuer.bearer(alg="ES256" if i % 2 else "RS256"), ALICE)
    assert (issuer.discovery_fetches, issuer.jwks_fetches) == (1, 1)


async def test_concurrent_verifications_on_a_cold_cache_fetch_once(
    verifier: OIDCVerifier, issuer: LocalIssuer
) -> None:
    headers = [issuer.bearer() for _ in range(20)]
    results = await asyncio.gather(*(verifier.verify(h, ALICE) for h in headers))
    assert len(results) == 20
    assert (issuer.discovery_fetches, issuer.jwks_fetches) == (1, 1)


async def test_cache_expires(verifier: OIDCVerifier, issuer: LocalIssuer, clock: FakeClock) -> None:
    await verifier.verify(issuer.bearer(), ALICE)
    clock.advance(3599)
    await verifier.verify(issuer.bearer(), ALICE)
    assert issuer.jwks_fetches == 1
    clock.advance(1)
    await verifier.verify(issuer.bearer(), ALICE)
    assert (issuer.discovery_fetches, issuer.jwks_fetches) == (2, 2)


async def test_rotation_is_picked_up(
    verifier: OIDCVerifier, issuer: LocalIssuer, clock: FakeClock
) -> None:
    await verifier.verify(issuer.bearer(), ALICE)
    clock.advance(600)
    new_kid = issuer.add_rsa_key()
    issuer.withdraw("rsa-1")
    assert await verifier.verify(issuer.bearer(kid=new_kid), ALICE)
    assert issuer.jwks_fetches == 2
    assert issuer.discovery_fetches == 1  # discovery has its own, unexpired, cache entry
    # The refreshed JWKS is the whole truth: a key the issuer withdrew is no longer trusted.
    with pytest.raises(TokenSignatureInvalid):
        await verifier.verify(issuer.bearer(kid="rsa-1"), ALICE)


async def test_unknown_kid_refresh_is_rate_limited(
    verifier: OIDCVerifier, issuer: LocalIssuer, clock: FakeClock
) -> None:
    await verifier.verify(issuer.bearer(), ALICE)
    assert issuer.jwks_fetches == 1
    new_kid = issuer.add_rsa_key()
    issuer.add_rsa_key("never-published", publish=False)

    # 1. Inside min_refresh_seconds of the last fetch: no fetch, however many tokens come.
    for kid in [new_kid] * 3 + ["never-published"] * 3 + [f"made-up-{i}" for i in range(10)]:
        with pytest.raises(TokenSignatureInvalid):
            await verifier.verify(issuer.bearer(kid=kid, signing_kid="rsa-1"), ALICE)
    clock.advance(29)
    with pytest.raises(TokenSignatureInvalid):
        await verifier.verify(issuer.bearer(kid=new_kid), ALICE)
    assert issuer.jwks_fetches == 1

    # 2. After it: one refresh, and the rotated key verifies.
    clock.advance(1)
    assert await verifier.verify(issuer.bearer(kid=new_kid), ALICE)
    assert issuer.jwks_fetches == 2

    # 3. A kid the issuer never publishes costs it one fetch per window, not one per token.
    for _ in range(3):
        clock.advance(10)
        with pytest.raises(TokenSignatureInvalid):
            await verifier.verify(issuer.bearer(kid="never-published"), ALICE)
    assert issuer.jwks_fetches == 3
    assert issuer.discovery_fetches == 1


# -- Google preset (MockTransport: its URLs are fixed) -------------------------------------


async def test_google_preset_discovers_over_https_and_shares_one_cache(clock: FakeClock) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = {**RSAAlgorithm.to_jwk(key.public_key(), as_dict=True), "kid": "g1", "alg": "RS256"}
    seen: list[str] = []
    jwks_uri = "https://www.googleapis.com/oauth2/v3/certs"

    def google(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        if request.url == "https://accounts.google.com/.well-known/openid-configuration":
            return httpx.Response(
                200, json={"issuer": "https://accounts.google.com", "jwks_uri": jwks_uri}
            )
        if request.url == jwks_uri:
            return httpx.Response(200, json={"keys": [jwk]})
        return httpx.Response(404)

    def token(iss: str) -> str:
        now = int(clock())
        claims: dict[str, object] = {"iss": iss, "aud": "123.apps.googleusercontent.com"}
        claims["sub"] = "1"
        claims |= {"email": "alice@example.org", "iat": now, "exp": now + 60}
        return "Bearer " + jwt.encode(claims, key, algorithm="RS256", headers={"kid": "g1"})

    settings = OIDCSettings(issuers=GOOGLE_ISSUERS, audiences=("123.apps.googleusercontent.com",))
    async with httpx.AsyncClient(transport=httpx.MockTransport(google)) as http:
        verifier = OIDCVerifier(settings, http, clock)
        for iss in GOOGLE_ISSUERS:
            assert (await verifier.verify(token(iss), ALICE)).issuer == iss
    assert seen == ["https://accounts.google.com/.well-known/openid-configuration", jwks_uri]


async def test_jwks_uri_may_not_downgrade_to_http(clock: FakeClock) -> None:
    seen: list[str] = []

    def issuer(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        body = {"issuer": "https://id.example", "jwks_uri": "http://id.example/jwks"}
        return httpx.Response(200, json=body)

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = int(clock())
    claims = {"iss": "https://id.example", "aud": DEFAULT_AUDIENCE, "exp": now + 60}
    token = jwt.encode(claims, key, algorithm="RS256", headers={"kid": "k"})
    async with httpx.AsyncClient(transport=httpx.MockTransport(issuer)) as http:
        verifier = make_verifier(http, clock, "https://id.example")
        with pytest.raises(IssuerUnavailable):
            await verifier.verify(f"Bearer {token}", ALICE)
    assert seen == ["https://id.example/.well-known/openid-configuration"]


# -- settings and the error boundary -------------------------------------------------------


@pytest.mark.parametrize(
    "bad",
    [
        {"issuers": ()},
        {"issuers": "https://accounts.google.com"},
        {"audiences": ()},
        {"audiences": ("",)},
        {"allowed_algorithms": ("RS256", "none")},
        {"allowed_algorithms": ("HS256",)},
        {"allowed_algorithms": ()},
        {"leeway_seconds": -1},
        {"jwks_cache_seconds": 10, "min_refresh_seconds": 30},
        {"http_timeout": 0},
    ],
    ids=repr,
)
def test_settings_refuse_unsafe_or_empty_values(bad: dict[str, Any]) -> None:
    values: dict[str, Any] = {"issuers": GOOGLE_ISSUERS, "audiences": ("client-id",)} | bad
    with pytest.raises(ValueError):
        OIDCSettings(**values)


def _all_subclasses(base: type[BaseException]) -> set[type[BaseException]]:
    found: set[type[BaseException]] = set()
    for sub in base.__subclasses__():
        found |= {sub} | _all_subclasses(sub)
    return found


_PYJWT_ERRORS: set[type[BaseException]] = {jwt.PyJWTError, *_all_subclasses(jwt.PyJWTError)}


@pytest.mark.parametrize("error", sorted(_PYJWT_ERRORS, key=str))
def test_every_pyjwt_error_is_mapped(error: type[Exception]) -> None:
    with pytest.raises(OIDCError) as caught, oidc._mapped_jwt_errors():
        raise error("exp")  # every PyJWT error takes one argument (a message or a claim)
    assert str(caught.value).endswith(".")
    assert isinstance(caught.value.__cause__, error)


@pytest.mark.parametrize(
    "error",
    [
        httpx.ConnectError("refused"),
        httpx.ReadTimeout("slow"),
        httpx.RemoteProtocolError("garbled"),
        httpx.TooManyRedirects("loop"),
        httpx.DecodingError("gzip"),
        httpx.HTTPStatusError(
            "500", request=httpx.Request("GET", "http://x"), response=httpx.Response(500)
        ),
        httpx.InvalidURL("bad"),
        httpx.ResponseNotRead(),
        ValueError("invalid JSON"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_fetch_errors_become_issuer_unavailable(error: Exception) -> None:
    with pytest.raises(IssuerUnavailable), oidc._mapped_fetch_errors("http://127.0.0.1/x"):
        raise error
