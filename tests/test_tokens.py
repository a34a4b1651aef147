"""Token validation (contract §1, §8): every forged, stale or misdirected token is
answered 401 ``invalid_token``; good tokens pass within the 60 s leeway; the JWKS
is cached, re-fetched once for an unknown ``kid`` and its absence answers 503."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from joserfc import jwt
from joserfc.jwk import RSAKey

from tests.conftest import GROUPS
from tests.fake_okta import AUDIENCE, FakeOkta

NO_TOKEN = 'Bearer realm="chatsvc"'
INVALID_TOKEN = 'Bearer realm="chatsvc", error="invalid_token"'
USER = "mallory@example.com"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64json(value: Any) -> str:
    return b64url(json.dumps(value).encode())


async def assert_problem(resp: Any, status: int) -> dict[str, Any]:
    assert resp.status == status, await resp.text()
    assert resp.content_type == "application/problem+json"
    body = await resp.json(content_type=None)
    assert body["status"] == status
    assert body["request_id"] == resp.headers["X-Request-ID"]
    return body


async def assert_invalid_token(resp: Any) -> None:
    body = await assert_problem(resp, 401)
    assert resp.headers["WWW-Authenticate"] == INVALID_TOKEN
    assert body["code"] == "INVALID_TOKEN"


# --- forged and unacceptable tokens ---------------------------------------------


def claims_for(okta: FakeOkta, **changes: Any) -> dict[str, Any]:
    claims = okta.claims(USER, GROUPS["write"])
    claims.update(changes)
    return claims


def without(claim: str) -> Callable[[FakeOkta], str]:
    def build(okta: FakeOkta) -> str:
        claims = claims_for(okta)
        del claims[claim]
        return okta.sign(claims)

    return build


def signed(**changes: Any) -> Callable[[FakeOkta], str]:
    return lambda okta: okta.sign(claims_for(okta, **changes))


def timed(**offsets: int) -> Callable[[FakeOkta], str]:
    """Time claims as offsets from the moment the token is built (seconds)."""

    def build(okta: FakeOkta) -> str:
        now = int(time.time())
        return okta.sign(claims_for(okta, **{name: now + d for name, d in offsets.items()}))

    return build


def hs256_with_public_key(encoding: str) -> Callable[[FakeOkta], str]:
    """The algorithm-confusion attack: HMAC keyed with the issuer's public RSA key."""

    def build(okta: FakeOkta) -> str:
        key = okta.keys[0]
        secret = key.as_pem(private=False) if encoding == "pem" else key.as_der(private=False)
        signing_input = f"{b64json({'alg': 'HS256', 'kid': key.kid})}.{b64json(claims_for(okta))}"
        signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
        return f"{signing_input}.{b64url(signature)}"

    return build


def signed_by_stranger(claim_known_kid: bool) -> Callable[[FakeOkta], str]:
    def build(okta: FakeOkta) -> str:
        stranger = RSAKey.generate_key(2048, {"use": "sig", "alg": "RS256"}, auto_kid=True)
        kid = okta.keys[0].kid if claim_known_kid else None
        return okta.sign(claims_for(okta), key=stranger, kid=kid)

    return build


def tampered(okta: FakeOkta) -> str:
    """A genuine reader's token with the groups claim raised to admin, signature kept."""
    claims = claims_for(okta, groups=["Onyx-Readers"])
    header, _, signature = okta.sign(claims).split(".")
    return f"{header}.{b64json({**claims, 'groups': ['Onyx-Admins']})}.{signature}"


REJECTED: dict[str, Callable[[FakeOkta], str]] = {
    "not a JWT": lambda okta: "not-a-jwt",
    "two segments": lambda okta: okta.token(USER).rsplit(".", 1)[0],
    "garbage segments": lambda okta: "eyJ!!!.eyJ???.c2ln",
    "header not an object": lambda okta: f"{b64json([1])}.{b64json({})}.c2ln",
    "expired beyond leeway": timed(iat=-3600, exp=-90),
    "nbf in the future beyond leeway": timed(nbf=90),
    "iat in the future beyond leeway": timed(iat=90),
    "wrong issuer": signed(iss="https://evil.example.com/oauth2/default"),
    "wrong audience": signed(aud="api://someone-else"),
    "audience list without ours": signed(aud=["api://a", "api://b"]),
    "missing sub": without("sub"),
    "missing exp": without("exp"),
    "missing iat": without("iat"),
    "sub not a string": signed(sub=12345),
    "exp not a number": signed(exp="tomorrow"),
    "exp of 10^400": signed(exp=10**400),
    "exp past year 9999": signed(exp=253_402_300_800),
    "exp a boolean": signed(exp=True),
    "iat of -10^400": signed(iat=-(10**400)),
    "nbf past year 9999": signed(nbf=10**20),
    "iss not a string": signed(iss=["https://evil.example.com"]),
    "alg none": lambda okta: okta.unsigned_token(claims_for(okta)),
    "alg none with a kid": lambda okta: (
        f"{b64json({'alg': 'none', 'kid': okta.keys[0].kid})}.{b64json(claims_for(okta))}."
    ),
    "HS256 keyed with the public key PEM": hs256_with_public_key("pem"),
    "HS256 keyed with the public key DER bytes": hs256_with_public_key("der"),
    "signed by a key not in the JWKS": signed_by_stranger(claim_known_kid=False),
    "signed by a stranger claiming a known kid": signed_by_stranger(claim_known_kid=True),
    "tampered payload": tampered,
    "signature stripped": lambda okta: okta.token(USER).rsplit(".", 1)[0] + ".",
    "genuine signature but no kid": lambda okta: jwt.encode(
        {"alg": "RS256"}, claims_for(okta), okta.keys[0]
    ),
}


@pytest.mark.parametrize("build", REJECTED.values(), ids=REJECTED.keys())
async def test_unacceptable_token_is_answered_401_invalid_token(client, okta, build):
    resp = await client.get("/api/me", headers=bearer(build(okta)))
    await assert_invalid_token(resp)


async def test_empty_bearer_credential_is_an_invalid_token(client):
    resp = await client.get("/api/me", headers={"Authorization": "Bearer "})
    await assert_invalid_token(resp)


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Basic dXNlcjpwYXNz"}, {"Authorization": "Token abc.def.ghi"}],
    ids=["no Authorization", "Basic scheme", "unknown scheme"],
)
async def test_missing_or_non_bearer_credential_counts_as_no_token(client, headers):
    resp = await client.get("/api/me", headers=headers)
    body = await assert_problem(resp, 401)
    assert resp.headers["WWW-Authenticate"] == NO_TOKEN
    assert body["code"] == "AUTHENTICATION_REQUIRED"


# --- acceptable tokens ------------------------------------------------------------

ACCEPTED: dict[str, Callable[[FakeOkta], str]] = {
    "plain": signed(),
    "audience list containing ours": signed(aud=["api://other", AUDIENCE]),
    "expired 30 s ago (within leeway)": timed(iat=-3600, exp=-30),
    "nbf 30 s ahead (within leeway)": timed(nbf=30),
    "iat 30 s ahead (within leeway)": timed(iat=30),
    "nbf in the past": timed(nbf=-10),
}


@pytest.mark.parametrize("build", ACCEPTED.values(), ids=ACCEPTED.keys())
async def test_acceptable_token_is_answered_200(client, okta, build):
    resp = await client.get("/api/me", headers=bearer(build(okta)))
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["email"] == USER


async def test_es256_token_is_accepted(make_client, okta):
    ec_key = okta.add_ec_key()
    client = await make_client()
    token = okta.sign(claims_for(okta), key=ec_key)
    resp = await client.get("/api/me", headers=bearer(token))
    assert resp.status == 200, await resp.text()


# --- the JWKS cache -----------------------------------------------------------------


async def test_rotated_key_is_fetched_once_and_accepted_without_restart(client, okta):
    assert (await client.get("/api/me", headers=bearer(okta.token(USER)))).status == 200
    fetched = okta.jwks_requests
    new_key = okta.rotate()
    resp = await client.get("/api/me", headers=bearer(okta.sign(claims_for(okta), key=new_key)))
    assert resp.status == 200, await resp.text()
    assert okta.jwks_requests == fetched + 1


async def test_concurrent_first_uses_of_a_rotated_key_are_all_accepted(client, okta):
    new_key = okta.rotate()
    tokens = [okta.sign(claims_for(okta, jti=f"t{i}"), key=new_key) for i in range(8)]
    responses = await asyncio.gather(*(client.get("/api/me", headers=bearer(t)) for t in tokens))
    assert [resp.status for resp in responses] == [200] * len(tokens)
    assert okta.jwks_requests == 2  # start-up, then one re-fetch for the new kid


async def test_second_unknown_kid_within_the_interval_does_not_refetch(client, okta):
    first = okta.rotate()
    resp = await client.get("/api/me", headers=bearer(okta.sign(claims_for(okta), key=first)))
    assert resp.status == 200
    fetched = okta.jwks_requests
    second = okta.rotate()
    resp = await client.get("/api/me", headers=bearer(okta.sign(claims_for(okta), key=second)))
    await assert_invalid_token(resp)
    assert okta.jwks_requests == fetched


async def test_cached_keys_keep_working_while_the_issuer_is_offline(client, okta):
    okta.online = False
    resp = await client.get("/api/me", headers=bearer(okta.token(USER)))
    assert resp.status == 200


async def test_unreachable_jwks_with_nothing_cached_answers_503(make_client, okta):
    okta.online = False
    client = await make_client()
    resp = await client.get("/api/me", headers=bearer(okta.token(USER)))
    body = await assert_problem(resp, 503)
    assert body["code"] == "SERVICE_UNAVAILABLE"


async def test_requests_succeed_once_the_jwks_is_reachable_again(make_client, okta):
    okta.online = False
    client = await make_client(jwks_min_refresh_interval=0)
    assert (await client.get("/api/me", headers=bearer(okta.token(USER)))).status == 503
    okta.online = True
    resp = await client.get("/api/me", headers=bearer(okta.token(USER)))
    assert resp.status == 200, await resp.text()


async def test_readyz_answers_503_until_the_keys_are_loaded(make_client, okta):
    okta.online = False
    client = await make_client(jwks_min_refresh_interval=0)
    resp = await client.get("/readyz")
    assert resp.status == 503
    assert (await resp.json())["keys"] == "unavailable"
    okta.online = True
    resp = await client.get("/readyz")
    assert resp.status == 200
    assert (await resp.json())["keys"] == "loaded"


# --- issuers ending in "/" and the first lazy key load ------------------------------------------


async def test_an_issuer_ending_in_a_slash_is_matched_exactly(make_client, okta):
    okta.trailing_slash = True  # Auth0 style: "https://tenant.auth0.com/"
    client = await make_client()
    assert okta.issuer.endswith("/")
    good = okta.token(USER, GROUPS["write"])
    assert (await client.get("/api/me", headers=bearer(good))).status == 200
    stripped = okta.token(USER, GROUPS["write"], iss=okta.issuer.rstrip("/"))
    await assert_invalid_token(await client.get("/api/me", headers=bearer(stripped)))
    assert (await client.get("/readyz")).status == 200


async def test_a_key_rotated_after_a_lazy_first_load_is_accepted_at_once(make_client, okta):
    okta.online = False  # start-up cannot load the keys
    client = await make_client()
    okta.online = True
    first = okta.token(USER, GROUPS["write"])
    assert (await client.get("/api/me", headers=bearer(first))).status == 200  # lazy load
    okta.rotate(hard=True)
    rotated = okta.token(USER, GROUPS["write"])
    assert (await client.get("/api/me", headers=bearer(rotated))).status == 200
