"""Server-side browser sessions and a robust sign-in flow, against the fake
provider: logout ends the session everywhere (a copied cookie is refused),
revokes the refresh token and goes on to the provider's end-session endpoint;
refreshes happen once per session at a time (in one process and across two),
at a margin that is a fraction of the token's lifetime; ``prompt=consent``,
RFC 8707 ``resource``, RFC 9207 ``iss``, client authentication methods, the
profile from the ID token or userinfo, the ID-token keys at start-up, and the
page's ``GET /auth/token``."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from aiohttp.test_utils import TestClient
from joserfc import jwt
from joserfc.jwk import RSAKey
from sqlalchemy import select

from chatsvc.keys import DB_SESSIONS
from chatsvc.store.models import BrowserSession
from tests.conftest import Clock, MakeClient
from tests.fake_okta import AUDIENCE, FakeOkta
from tests.test_browser_auth import (
    CLIENT_ID,
    authorize,
    browser_sign_in,
    expect_error_page,
    grants,
    own_origin,
    page_csrf,
    start_login,
)

COOKIE = "chatsvc_session"


def cookie_of(client: TestClient) -> str:
    for morsel in client.session.cookie_jar:
        if morsel.key == COOKIE:
            return morsel.value
    raise AssertionError("no session cookie")


async def logout(client: TestClient) -> None:
    token = await page_csrf(client)
    resp = await client.post("/auth/logout", headers={"X-CSRF-Token": token})
    assert resp.status == 204, await resp.text()


async def rows(client: TestClient) -> list[BrowserSession]:
    async with client.app[DB_SESSIONS]() as db:
        return list((await db.execute(select(BrowserSession))).scalars())


async def web(make_client: MakeClient, **overrides: object) -> TestClient:
    return await make_client(okta_client_id=CLIENT_ID, **overrides)


# --- the session lives on the server -----------------------------------------------------


async def test_the_cookie_is_an_opaque_id_and_tokens_are_encrypted_at_rest(
    make_client: MakeClient, okta: FakeOkta
) -> None:
    client = await web(make_client)
    await browser_sign_in(client, okta)
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", cookie_of(client))
    [row] = [r for r in await rows(client) if r.tokens]
    access = okta.token_requests and next(iter(okta.access_tokens))
    # Fernet ciphertext, holding no piece of the token in the clear ("eyJ" alone
    # could occur in random base64 by chance; 24 characters of the token cannot).
    assert row.tokens.startswith("gAAAAA") and row.state.startswith("gAAAAA")
    for piece in (access[:24], access[-24:]):
        assert piece not in row.tokens and piece not in row.state
    assert row.sid and row.sid.startswith("sid-")
    assert row.id != cookie_of(client)  # the table holds the cookie's digest only


async def test_a_cookie_copied_before_logout_is_refused_after_it(
    make_client: MakeClient, okta: FakeOkta
) -> None:
    client = await web(make_client)
    await browser_sign_in(client, okta)
    copied = cookie_of(client)
    thief = await web(make_client)  # another browser -- or another process
    thief.session.cookie_jar.update_cookies({COOKIE: copied})
    assert (await thief.get("/api/me")).status == 200
    await logout(client)
    assert (await thief.get("/api/me")).status == 401
    assert (await client.get("/api/me")).status == 401
    assert not [r for r in await rows(client) if r.tokens]


async def test_logout_revokes_the_refresh_token_at_the_provider(
    make_client: MakeClient, okta: FakeOkta
) -> None:
    client = await web(make_client)
    await browser_sign_in(client, okta)
    assert len(okta.live_grants()) == 1
    await logout(client)
    assert [r["token_type_hint"] for r in okta.revocations] == ["refresh_token"]
    assert okta.live_grants() == set()


async def test_logout_continues_to_the_end_session_endpoint(
    make_client: MakeClient, okta: FakeOkta
) -> None:
    client = await web(make_client)
    await browser_sign_in(client, okta)
    await logout(client)
    resp = await client.get("/", allow_redirects=False)  # the page reloads after logout
    assert resp.status == 302
    location = urlsplit(resp.headers["Location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == f"{okta.base}/v1/logout"
    query = {k: v[0] for k, v in parse_qs(location.query).items()}
    assert query["post_logout_redirect_uri"] == f"{own_origin(client)}/"
    assert query["client_id"] == CLIENT_ID
    assert query["id_token_hint"].count(".") == 2
    assert (await client.get("/", allow_redirects=False)).status == 200  # once only


async def test_logout_without_an_end_session_endpoint_just_ends(
    make_client: MakeClient, okta: FakeOkta
) -> None:
    okta.discovery_extra = {"end_session_endpoint": None, "revocation_endpoint": None}
    client = await web(make_client)
    await browser_sign_in(client, okta)
    await logout(client)
    assert (await client.get("/", allow_redirects=False)).status == 200
    assert okta.revocations == []


# --- refresh: once per session at a time ------------------------------------------------------


async def test_ten_parallel_requests_at_refresh_time_refresh_once(
    make_client: MakeClient, okta: FakeOkta, clock: Clock
) -> None:
    client = await web(make_client)
    okta.access_token_ttl = 30
    await browser_sign_in(client, okta)
    okta.token_delay = 0.2  # the refresh is slow: everyone arrives while it runs
    clock.advance(25)
    answers = await asyncio.gather(*(client.get("/api/me") for _ in range(10)))
    assert [r.status for r in answers] == [200] * 10
    assert grants(okta) == ["authorization_code", "refresh_token"]
    assert len(okta.live_grants()) == 1 and okta.revoked_grants == set()  # the grant survives
    # The new token is as short-lived (30 s, 5 s left on the moved clock): the
    # next request refreshes again, with the rotated refresh token.
    assert (await client.get("/api/me")).status == 200
    assert grants(okta) == ["authorization_code", "refresh_token", "refresh_token"]
    assert okta.revoked_grants == set()


async def test_two_processes_refresh_one_session_once(
    make_client: MakeClient, okta: FakeOkta, clock: Clock
) -> None:
    first = await web(make_client)
    second = await web(make_client)  # same database and cookie key: another process
    okta.access_token_ttl = 30
    await browser_sign_in(first, okta)
    second.session.cookie_jar.update_cookies({COOKIE: cookie_of(first)})
    okta.token_delay = 0.3
    clock.advance(25)
    answers = await asyncio.gather(
        *(c.get("/api/me") for c in (first, second, first, second, first, second))
    )
    assert [r.status for r in answers] == [200] * 6
    assert grants(okta) == ["authorization_code", "refresh_token"]
    assert okta.revoked_grants == set()


async def test_a_short_lived_token_is_not_refreshed_on_every_request(
    make_client: MakeClient, okta: FakeOkta
) -> None:
    client = await web(make_client)
    okta.access_token_ttl = 50  # below the old fixed 60 s margin
    await browser_sign_in(client, okta)
    for _ in range(3):
        assert (await client.get("/api/me")).status == 200
    assert grants(okta) == ["authorization_code"]


# --- the authorization request --------------------------------------------------------------


async def test_offline_access_asks_for_consent(make_client: MakeClient) -> None:
    assert (await start_login(await web(make_client)))["prompt"] == "consent"
    okta_style = await web(make_client, okta_prompt_consent=False)
    assert "prompt" not in await start_login(okta_style)
    no_offline = await web(make_client, okta_scopes="openid email profile")
    assert "prompt" not in await start_login(no_offline)


async def test_the_resource_indicator_is_sent_when_configured(
    make_client: MakeClient, okta: FakeOkta, clock: Clock
) -> None:
    client = await web(make_client, okta_resource_indicator="always")
    assert (await start_login(client))["resource"] == AUDIENCE
    okta.access_token_ttl = 30
    await browser_sign_in(client, okta)
    clock.advance(25)
    assert (await client.get("/api/me")).status == 200
    assert [r.get("resource") for r in okta.token_requests] == [AUDIENCE, AUDIENCE]


async def test_the_resource_indicator_follows_the_discovery_document(
    make_client: MakeClient, okta: FakeOkta
) -> None:
    assert "resource" not in await start_login(await web(make_client))
    okta.discovery_extra = {"resource_indicators_supported": True}
    assert (await start_login(await web(make_client)))["resource"] == AUDIENCE


# --- the authorization response and the token endpoint ------------------------------------------


async def test_an_authorization_response_from_another_issuer_is_refused(
    make_client: MakeClient, okta: FakeOkta
) -> None:
    client = await web(make_client)
    okta.response_iss = "https://evil.example/"
    await expect_error_page(await client.session.get(await authorize(client)))
    okta.response_iss = okta.issuer
    await browser_sign_in(client, okta)


async def test_a_provider_that_promises_iss_must_send_it(
    make_client: MakeClient, okta: FakeOkta
) -> None:
    okta.discovery_extra = {"authorization_response_iss_parameter_supported": True}
    client = await web(make_client)
    await expect_error_page(await client.session.get(await authorize(client)))


async def test_client_secret_post(make_client: MakeClient, okta: FakeOkta) -> None:
    client = await web(
        make_client, okta_client_secret="s3cret", okta_token_auth_method="client_secret_post"
    )
    await browser_sign_in(client, okta)
    request = okta.token_requests[0]
    assert (request["client_id"], request["client_secret"]) == (CLIENT_ID, "s3cret")
    assert request["authorization"] is None


async def test_private_key_jwt(make_client: MakeClient, okta: FakeOkta, tmp_path: Path) -> None:
    key = RSAKey.generate_key(2048, auto_kid=True)
    path = tmp_path / "client.pem"
    path.write_bytes(key.as_pem(private=True))
    client = await web(
        make_client, okta_token_auth_method="private_key_jwt", okta_client_private_key=str(path)
    )
    await browser_sign_in(client, okta)
    request = okta.token_requests[0]
    assert request["client_assertion_type"].endswith(":jwt-bearer")
    assertion = jwt.decode(request["client_assertion"], key, algorithms=["RS256"]).claims
    assert (assertion["iss"], assertion["sub"]) == (CLIENT_ID, CLIENT_ID)
    assert assertion["aud"] == f"{okta.base}/v1/token"
    assert "client_secret" not in request and request["authorization"] is None


# --- the profile: ID token and userinfo ------------------------------------------------------------


async def test_the_email_comes_from_the_id_token_when_the_access_token_lacks_it(
    make_client: MakeClient, okta: FakeOkta
) -> None:
    okta.access_token_claims = {"email": None}
    client = await web(make_client)
    await browser_sign_in(client, okta, "alice@example.com")
    assert (await (await client.get("/api/me")).json())["email"] == "alice@example.com"


async def test_groups_from_the_id_token_when_configured(
    make_client: MakeClient, okta: FakeOkta
) -> None:
    okta.access_token_claims = {"groups": None}
    okta.id_token_claims = {"groups": ["Onyx-Admins"]}
    client = await web(make_client, okta_groups_source="id_token")
    await browser_sign_in(client, okta)
    assert (await (await client.get("/api/me")).json())["permission"] == "admin"
    plain = await web(make_client)  # default: the access token's groups only
    await browser_sign_in(plain, okta)
    assert (await (await plain.get("/api/me")).json())["permission"] is None


async def test_email_and_groups_from_userinfo(make_client: MakeClient, okta: FakeOkta) -> None:
    okta.access_token_claims = {"groups": None, "email": None}
    okta.id_token_claims = {"email": None}
    okta.userinfo_claims = {"email": "info@example.com", "groups": ["Onyx-Readers"]}
    client = await web(make_client, okta_groups_source="userinfo")
    await browser_sign_in(client, okta, "userinfo-sub")
    body = await (await client.get("/api/me")).json()
    assert (body["email"], body["permission"]) == ("info@example.com", "read")
    assert okta.userinfo_requests == 1


# --- keys -------------------------------------------------------------------------------------


async def test_sign_in_right_after_a_hard_key_rotation(
    make_client: MakeClient, okta: FakeOkta
) -> None:
    client = await web(make_client)
    await browser_sign_in(client, okta)  # both key sets are in use
    okta.rotate(hard=True)
    client.session.cookie_jar.clear()
    await browser_sign_in(client, okta)  # within the 30 s re-fetch window
    assert (await client.get("/api/me")).status == 200


async def test_both_key_sets_are_loaded_at_start_up(
    make_client: MakeClient, okta: FakeOkta
) -> None:
    await web(make_client)
    assert okta.jwks_requests == 2  # access tokens and ID tokens


# --- the page's fresh token ---------------------------------------------------------------------


async def test_auth_token_gives_the_page_its_access_token(
    make_client: MakeClient, okta: FakeOkta, clock: Clock
) -> None:
    client = await web(make_client)
    assert (await client.get("/auth/token")).status == 403  # CSRF first
    okta.access_token_ttl = 30
    await browser_sign_in(client, okta)
    csrf = {"X-CSRF-Token": await page_csrf(client)}
    assert (await client.get("/auth/token")).status == 403
    first = await (await client.get("/auth/token", headers=csrf)).json()
    assert first["access_token"] in okta.access_tokens
    assert first["expires_at"] - 3 <= first["renew_at"] < first["expires_at"]
    clock.advance(first["renew_at"] - clock())
    second = await (await client.get("/auth/token", headers=csrf)).json()
    assert second["access_token"] != first["access_token"]
    assert grants(okta) == ["authorization_code", "refresh_token"]
    await logout(client)
    assert (await client.get("/", allow_redirects=False)).status == 302  # to end-session
    csrf = {"X-CSRF-Token": await page_csrf(client)}
    assert (await client.get("/auth/token", headers=csrf)).status == 401
