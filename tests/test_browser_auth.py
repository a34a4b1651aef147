"""Browser sign-in (the session cookie) against the fake Okta: the authorization-code
flow with PKCE, the cookie as a token source, refresh, CSRF on cookie requests,
the Origin allow-list on cookie WebSockets, logout, the page, and the development
sign-in form."""

from __future__ import annotations

import base64
import os
import re
import stat
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from cryptography.fernet import Fernet

from chatsvc.app import create_app
from chatsvc.keys import SETTINGS
from chatsvc.settings import SettingsError
from chatsvc.web.cookie import KEY_FILE
from tests.conftest import Caller, Clock, MakeClient, create_session, settings_for
from tests.fake_okta import FakeOkta
from tests.ws_helpers import TIMEOUT, ws_path

CLIENT_ID = "chatsvc-web-test"
PAGE_CSP = "default-src 'self'; connect-src 'self'; object-src 'none'; frame-ancestors 'none'"
CSRF_META = re.compile(r'<meta name="csrf-token" content="([^"]*)">')


@pytest.fixture
async def web_client(make_client: MakeClient) -> TestClient:
    """The app configured for browser sign-in with Okta (a public client: PKCE only)."""
    return await make_client(okta_client_id=CLIENT_ID)


@pytest.fixture
async def dev_client(make_client: MakeClient) -> TestClient:
    """The app with the built-in development issuer (no Okta issuer)."""
    return await make_client(okta_issuer=None)


# --- helpers ---------------------------------------------------------------------


async def start_login(client: TestClient) -> dict[str, str]:
    """``GET /auth/login``; the query of the authorization URL it redirects to."""
    resp = await client.get("/auth/login", allow_redirects=False)
    assert resp.status == 302, await resp.text()
    return {k: v[0] for k, v in parse_qs(urlsplit(resp.headers["Location"]).query).items()}


async def authorize(client: TestClient) -> str:
    """Log in and pass the fake Okta's authorization step; the callback URL it sends back."""
    resp = await client.get("/auth/login", allow_redirects=False)
    assert resp.status == 302, await resp.text()
    back = await client.session.get(resp.headers["Location"], allow_redirects=False)
    assert back.status == 302
    return back.headers["Location"]


async def browser_sign_in(
    client: TestClient,
    okta: FakeOkta,
    email: str = "alice@example.com",
    groups: tuple[str, ...] = ("Onyx-Writers",),
) -> ClientResponse:
    okta.browser_user = (email, list(groups))
    resp = await client.session.get(await authorize(client), allow_redirects=False)
    assert resp.status == 302, await resp.text()
    assert resp.headers["Location"] == "/"
    return resp


def with_query(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    query.update(changes)
    return parts._replace(query=urlencode(query)).geturl()


async def page_csrf(client: TestClient) -> str:
    resp = await client.get("/")
    assert resp.status == 200
    match = CSRF_META.search(await resp.text())
    assert match is not None
    return match.group(1)


async def expect_problem(resp: ClientResponse, status: int, code: str) -> dict[str, Any]:
    assert resp.status == status, await resp.text()
    assert resp.content_type == "application/problem+json"
    body = await resp.json()
    assert body["code"] == code, body
    return body


async def expect_error_page(resp: ClientResponse, status: int = 400) -> str:
    """A failed sign-in answers a plain page: no problem JSON, no token or code in it."""
    assert resp.status == status, await resp.text()
    assert resp.content_type == "text/html"
    assert resp.headers["Cache-Control"] == "no-store"
    assert "frame-ancestors 'none'" in resp.headers["Content-Security-Policy"]
    page = await resp.text()
    assert "Sign-in failed" in page
    assert 'href="/auth/login"' in page
    code = parse_qs(urlsplit(str(resp.url)).query).get("code")
    if code:
        assert code[0] not in page
    assert "eyJ" not in page  # no JWT
    return page


def set_cookie_header(resp: ClientResponse) -> str:
    headers = [h for h in resp.headers.getall("Set-Cookie", []) if h.startswith("chatsvc_session=")]
    assert len(headers) == 1, resp.headers
    return headers[0]


def own_origin(client: TestClient) -> str:
    return f"http://{client.host}:{client.port}"


def upgrade_headers(**extra: str) -> dict[str, str]:
    return {
        "Connection": "Upgrade",
        "Upgrade": "websocket",
        "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode(),
        **extra,
    }


def grants(okta: FakeOkta) -> list[str]:
    return [request["grant_type"] for request in okta.token_requests]


# --- sign-in with Okta ----------------------------------------------------------------


async def test_login_redirects_with_state_nonce_and_s256_challenge(
    web_client: TestClient, okta: FakeOkta
) -> None:
    resp = await web_client.get("/auth/login", allow_redirects=False)
    assert resp.status == 302
    assert resp.headers["Cache-Control"] == "no-store"
    location = urlsplit(resp.headers["Location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == f"{okta.issuer}/v1/authorize"
    query = {k: v[0] for k, v in parse_qs(location.query).items()}
    assert query["response_type"] == "code"
    assert query["client_id"] == CLIENT_ID
    assert query["redirect_uri"] == f"{own_origin(web_client)}/auth/callback"
    assert "openid" in query["scope"].split()
    assert len(query["state"]) >= 32 and len(query["nonce"]) >= 32
    assert query["code_challenge_method"] == "S256"
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", query["code_challenge"])
    assert set_cookie_header(resp)  # state, nonce and verifier wait in the cookie


async def test_each_login_has_fresh_state_and_nonce(web_client: TestClient) -> None:
    first, second = await start_login(web_client), await start_login(web_client)
    assert first["state"] != second["state"]
    assert first["nonce"] != second["nonce"]
    assert first["code_challenge"] != second["code_challenge"]


async def test_callback_sets_the_cookie_and_the_cookie_alone_authenticates(
    web_client: TestClient, okta: FakeOkta
) -> None:
    resp = await browser_sign_in(web_client, okta, "alice@example.com", ("Onyx-Writers",))
    cookie = set_cookie_header(resp)
    assert "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie
    assert "Secure" not in cookie  # loopback: plain-http development
    me = await web_client.get("/api/me")
    assert me.status == 200
    body = await me.json()
    assert (body["email"], body["permission"]) == ("alice@example.com", "write")
    # The code was exchanged with the verifier (the fake checked it against the challenge).
    exchange = okta.token_requests[0]
    assert exchange["grant_type"] == "authorization_code"
    assert exchange["client_id"] == CLIENT_ID
    assert exchange["authorization"] is None
    challenge = okta.authorize_requests[0]["code_challenge"]
    assert create_s256_code_challenge(exchange["code_verifier"]) == challenge


async def test_confidential_client_authenticates_at_the_token_endpoint(
    make_client: MakeClient, okta: FakeOkta
) -> None:
    client = await make_client(okta_client_id=CLIENT_ID, okta_client_secret="s3cret")
    await browser_sign_in(client, okta)
    auth = okta.token_requests[0]["authorization"]
    assert auth.startswith("Basic ")
    assert base64.b64decode(auth[6:]).decode() == f"{CLIENT_ID}:s3cret"


async def test_state_mismatch_is_400(web_client: TestClient) -> None:
    url = with_query(await authorize(web_client), state="forged-state")
    resp = await web_client.session.get(url, allow_redirects=False)
    await expect_error_page(resp)
    assert (await web_client.get("/api/me")).status == 401


async def test_callback_without_a_login_is_400(web_client: TestClient) -> None:
    resp = await web_client.get("/auth/callback?code=abc&state=xyz")
    await expect_error_page(resp)


async def test_callback_is_single_use(web_client: TestClient, okta: FakeOkta) -> None:
    url = await authorize(web_client)
    assert (await web_client.session.get(url, allow_redirects=False)).status == 302
    replay = await web_client.session.get(url, allow_redirects=False)
    await expect_error_page(replay)


async def test_nonce_mismatch_is_400(web_client: TestClient, okta: FakeOkta) -> None:
    okta.id_token_claims = {"nonce": "not-the-nonce-we-sent"}
    resp = await web_client.session.get(await authorize(web_client), allow_redirects=False)
    body = await expect_error_page(resp)
    assert "nonce" in body
    assert (await web_client.get("/api/me")).status == 401


@pytest.mark.parametrize(
    "claims",
    [{"aud": "another-client"}, {"iss": "https://evil.example/oauth2/default"}],
    ids=["audience", "issuer"],
)
async def test_id_token_for_someone_else_is_400(
    web_client: TestClient, okta: FakeOkta, claims: dict[str, str]
) -> None:
    okta.id_token_claims = claims
    resp = await web_client.session.get(await authorize(web_client), allow_redirects=False)
    await expect_error_page(resp)
    assert (await web_client.get("/api/me")).status == 401


async def test_refused_code_is_400(web_client: TestClient) -> None:
    url = with_query(await authorize(web_client), code="not-a-code")
    resp = await web_client.session.get(url, allow_redirects=False)
    await expect_error_page(resp)


async def test_provider_error_is_400(web_client: TestClient) -> None:
    query = await start_login(web_client)
    resp = await web_client.get(
        "/auth/callback", params={"error": "access_denied", "state": query["state"]}
    )
    body = await expect_error_page(resp)
    assert "access_denied" in body


async def test_slow_sign_in_is_400(web_client: TestClient, clock: Clock) -> None:
    url = await authorize(web_client)
    clock.advance(web_client.app[SETTINGS].browser_login_timeout + 1)
    resp = await web_client.session.get(url, allow_redirects=False)
    await expect_error_page(resp)


async def test_unreachable_provider_is_503(make_client: MakeClient, okta: FakeOkta) -> None:
    okta.online = False  # at start-up and since
    client = await make_client(okta_client_id=CLIENT_ID)
    resp = await client.get("/auth/login", allow_redirects=False)
    await expect_error_page(resp, 503)


async def test_sign_in_without_a_client_id_is_not_configured(client: TestClient) -> None:
    resp = await client.get("/auth/login", allow_redirects=False)
    body = await expect_problem(resp, 404, "NOT_FOUND")
    assert "CHATSVC_OKTA_CLIENT_ID" in body["detail"]
    await expect_problem(await client.get("/auth/callback"), 404, "NOT_FOUND")


async def test_cookie_is_secure_unless_the_host_is_loopback(web_client: TestClient) -> None:
    resp = await web_client.get("/", headers={"Host": "chat.example.com"})
    assert "Secure" in set_cookie_header(resp).split("; ")
    resp = await web_client.get("/", headers={"Host": f"localhost:{web_client.port}"})
    assert "Secure" not in set_cookie_header(resp).split("; ")


async def test_the_public_url_gives_the_redirect_uri_the_cookie_and_the_origin(
    make_client: MakeClient,
) -> None:
    client = await make_client(okta_client_id=CLIENT_ID, public_url="https://chat.example.com/")
    # The request reaches chatsvc over plain http on loopback, as behind a proxy.
    resp = await client.get("/auth/login", allow_redirects=False)
    query = {k: v[0] for k, v in parse_qs(urlsplit(resp.headers["Location"]).query).items()}
    assert query["redirect_uri"] == "https://chat.example.com/auth/callback"
    assert "Secure" in set_cookie_header(resp).split("; ")


async def test_a_trusted_proxy_gives_the_origin_without_a_public_url(
    make_client: MakeClient,
) -> None:
    client = await make_client(okta_client_id=CLIENT_ID, trusted_proxies="127.0.0.0/8")
    headers = {
        "X-Forwarded-For": "203.0.113.9",
        "X-Forwarded-Proto": "https",
        "X-Forwarded-Host": "chat.example.com",
    }
    resp = await client.get("/auth/login", allow_redirects=False, headers=headers)
    query = {k: v[0] for k, v in parse_qs(urlsplit(resp.headers["Location"]).query).items()}
    assert query["redirect_uri"] == "https://chat.example.com/auth/callback"
    # The same headers from an untrusted peer change nothing.
    untrusted = await make_client(okta_client_id=CLIENT_ID)
    resp = await untrusted.get("/auth/login", allow_redirects=False, headers=headers)
    query = {k: v[0] for k, v in parse_qs(urlsplit(resp.headers["Location"]).query).items()}
    assert query["redirect_uri"] == f"{own_origin(untrusted)}/auth/callback"


def test_production_sign_in_needs_a_public_url(tmp_path: Path, okta: FakeOkta) -> None:
    with pytest.raises(SettingsError) as caught:
        settings_for(tmp_path, None, okta, env="production", okta_client_id=CLIENT_ID)
    assert "CHATSVC_PUBLIC_URL" in str(caught.value)


async def test_a_tampered_cookie_is_no_session(web_client: TestClient, okta: FakeOkta) -> None:
    await browser_sign_in(web_client, okta)
    web_client.session.cookie_jar.clear()
    resp = await web_client.get("/api/me", cookies={"chatsvc_session": "gAAAAA-tampered"})
    assert resp.status == 401


# --- refresh ----------------------------------------------------------------------------


async def test_token_near_expiry_is_refreshed(
    web_client: TestClient, okta: FakeOkta, clock: Clock
) -> None:
    okta.access_token_ttl = 30  # margin: 20 % of the lifetime, 6 s
    await browser_sign_in(web_client, okta)
    okta.access_token_ttl = 3600
    assert (await web_client.get("/api/me")).status == 200
    assert grants(okta) == ["authorization_code"]
    clock.advance(25)
    resp = await web_client.get("/api/me")
    assert resp.status == 200
    assert (await web_client.get("/api/me")).status == 200
    assert grants(okta) == ["authorization_code", "refresh_token"]


async def test_refused_refresh_keeps_the_token_until_it_expires(
    web_client: TestClient, okta: FakeOkta, clock: Clock
) -> None:
    okta.access_token_ttl = 30
    await browser_sign_in(web_client, okta)
    okta.revoke_refresh_tokens()
    clock.advance(25)
    assert (await web_client.get("/api/me")).status == 200
    assert (await web_client.get("/api/me")).status == 200  # no second attempt
    assert grants(okta) == ["authorization_code", "refresh_token"]
    clock.advance(6)
    resp = await web_client.get("/api/me")
    assert resp.status == 401  # sign in again


async def test_refresh_while_the_provider_is_down_keeps_the_token(
    web_client: TestClient, okta: FakeOkta, clock: Clock
) -> None:
    okta.access_token_ttl = 30
    await browser_sign_in(web_client, okta)
    okta.online = False
    clock.advance(25)
    assert (await web_client.get("/api/me")).status == 200
    okta.online = True
    okta.access_token_ttl = 3600
    assert (await web_client.get("/api/me")).status == 200
    assert grants(okta) == ["authorization_code", "refresh_token"]


async def test_refresh_during_a_websocket_upgrade_is_kept(
    web_client: TestClient, okta: FakeOkta, writer: Caller, clock: Clock
) -> None:
    session = await create_session(web_client, writer, is_shared=True)
    okta.access_token_ttl = 30
    await browser_sign_in(web_client, okta)
    okta.access_token_ttl = 3600
    clock.advance(25)
    ws = await web_client.ws_connect(ws_path(session["id"]), origin=own_origin(web_client))
    assert (await ws.receive_json(timeout=TIMEOUT))["type"] == "connected"
    await ws.close()
    assert grants(okta) == ["authorization_code", "refresh_token"]
    assert (await web_client.get("/api/me")).status == 200
    assert grants(okta) == ["authorization_code", "refresh_token"]  # stored server-side


# --- CSRF on cookie requests ----------------------------------------------------------------


async def test_cookie_post_without_csrf_is_403_and_stores_nothing(
    web_client: TestClient, okta: FakeOkta
) -> None:
    await browser_sign_in(web_client, okta)
    resp = await web_client.post("/api/chat/sessions", json={"title": "forged"})
    body = await expect_problem(resp, 403, "CSRF_FAILED")
    assert body["status"] == 403
    listed = await web_client.get("/api/chat/sessions")
    assert listed.status == 200
    assert await listed.json() == []


async def test_cookie_post_with_a_wrong_csrf_token_is_403(
    web_client: TestClient, okta: FakeOkta
) -> None:
    await browser_sign_in(web_client, okta)
    resp = await web_client.post(
        "/api/chat/sessions", json={"title": "forged"}, headers={"X-CSRF-Token": "guess"}
    )
    await expect_problem(resp, 403, "CSRF_FAILED")


async def test_cookie_post_with_the_page_csrf_token_is_201(
    web_client: TestClient, okta: FakeOkta
) -> None:
    await browser_sign_in(web_client, okta)
    token = await page_csrf(web_client)
    resp = await web_client.post(
        "/api/chat/sessions", json={"title": "mine"}, headers={"X-CSRF-Token": token}
    )
    assert resp.status == 201, await resp.text()


@pytest.mark.parametrize("method", ["PUT", "PATCH", "DELETE"])
async def test_every_state_changing_method_needs_csrf(
    web_client: TestClient, okta: FakeOkta, method: str
) -> None:
    await browser_sign_in(web_client, okta)
    token = await page_csrf(web_client)
    created = await web_client.post(
        "/api/chat/sessions", json={"title": "mine"}, headers={"X-CSRF-Token": token}
    )
    path = f"/api/chat/sessions/{(await created.json())['id']}"
    resp = await web_client.request(method, path, json={"title": "renamed"})
    await expect_problem(resp, 403, "CSRF_FAILED")
    assert (await (await web_client.get(path)).json())["title"] == "mine"


async def test_sign_in_rotates_the_csrf_token(web_client: TestClient, okta: FakeOkta) -> None:
    before = await page_csrf(web_client)
    await browser_sign_in(web_client, okta)
    after = await page_csrf(web_client)
    assert before != after
    resp = await web_client.post(
        "/api/chat/sessions", json={"title": "x"}, headers={"X-CSRF-Token": before}
    )
    await expect_problem(resp, 403, "CSRF_FAILED")


async def test_bearer_requests_need_no_csrf(
    web_client: TestClient, okta: FakeOkta, writer: Caller
) -> None:
    resp = await web_client.post("/api/chat/sessions", json={"title": "b"}, headers=writer.headers)
    assert resp.status == 201
    # Also when the same client holds a session cookie: the header wins.
    await browser_sign_in(web_client, okta)
    resp = await web_client.post("/api/chat/sessions", json={"title": "c"}, headers=writer.headers)
    assert resp.status == 201


async def test_unauthenticated_post_is_401_not_403(web_client: TestClient) -> None:
    await page_csrf(web_client)  # a cookie with a CSRF token but no sign-in
    resp = await web_client.post("/api/chat/sessions", json={"title": "x"})
    await expect_problem(resp, 401, "AUTHENTICATION_REQUIRED")


# --- WebSocket Origin ---------------------------------------------------------------------------


async def test_cookie_websocket_from_a_foreign_origin_is_refused(
    web_client: TestClient, okta: FakeOkta, writer: Caller
) -> None:
    session = await create_session(web_client, writer)
    await browser_sign_in(web_client, okta)
    resp = await web_client.get(
        ws_path(session["id"]), headers=upgrade_headers(Origin="https://evil.example")
    )
    body = await expect_problem(resp, 403, "ORIGIN_NOT_ALLOWED")
    assert resp.headers["X-Request-ID"] == body["request_id"]


async def test_cookie_websocket_without_an_origin_is_refused(
    web_client: TestClient, okta: FakeOkta, writer: Caller
) -> None:
    session = await create_session(web_client, writer)
    await browser_sign_in(web_client, okta)
    resp = await web_client.get(ws_path(session["id"]), headers=upgrade_headers())
    await expect_problem(resp, 403, "ORIGIN_NOT_ALLOWED")


async def test_cookie_websocket_from_the_own_origin_connects(
    web_client: TestClient, okta: FakeOkta, writer: Caller
) -> None:
    session = await create_session(web_client, writer, is_shared=True)
    await browser_sign_in(web_client, okta, "alice@example.com")
    ws = await web_client.ws_connect(ws_path(session["id"]), origin=own_origin(web_client))
    frame = await ws.receive_json(timeout=TIMEOUT)
    assert (frame["type"], frame["user_email"]) == ("connected", "alice@example.com")
    await ws.close()


async def test_allowed_origins_admit_another_origin(
    make_client: MakeClient, okta: FakeOkta, writer: Caller
) -> None:
    client = await make_client(
        okta_client_id=CLIENT_ID, allowed_origins="https://chat.example.com/"
    )
    session = await create_session(client, writer, is_shared=True)
    await browser_sign_in(client, okta)
    ws = await client.ws_connect(ws_path(session["id"]), origin="https://CHAT.example.com:443")
    assert (await ws.receive_json(timeout=TIMEOUT))["type"] == "connected"
    await ws.close()
    resp = await client.get(
        ws_path(session["id"]), headers=upgrade_headers(Origin="https://other.example.com")
    )
    await expect_problem(resp, 403, "ORIGIN_NOT_ALLOWED")


async def test_bearer_websocket_is_not_origin_checked(
    web_client: TestClient, writer: Caller
) -> None:
    session = await create_session(web_client, writer)
    ws = await web_client.ws_connect(
        ws_path(session["id"]), headers=writer.headers, origin="https://evil.example"
    )
    assert (await ws.receive_json(timeout=TIMEOUT))["type"] == "connected"
    await ws.close()


# --- logout ----------------------------------------------------------------------------------------


async def test_logout_needs_the_csrf_token(web_client: TestClient, okta: FakeOkta) -> None:
    await browser_sign_in(web_client, okta)
    resp = await web_client.post("/auth/logout")
    await expect_problem(resp, 403, "CSRF_FAILED")
    assert (await web_client.get("/api/me")).status == 200


async def test_logout_ends_the_session(web_client: TestClient, okta: FakeOkta) -> None:
    await browser_sign_in(web_client, okta)
    token = await page_csrf(web_client)
    resp = await web_client.post("/auth/logout", headers={"X-CSRF-Token": token})
    assert resp.status == 204
    assert resp.headers["Cache-Control"] == "no-store"
    assert (await web_client.get("/api/me")).status == 401


async def test_logout_without_end_session_clears_the_cookie(
    make_client: MakeClient, okta: FakeOkta
) -> None:
    okta.discovery_extra = {"end_session_endpoint": None}
    client = await make_client(okta_client_id=CLIENT_ID)
    await browser_sign_in(client, okta)
    token = await page_csrf(client)
    resp = await client.post("/auth/logout", headers={"X-CSRF-Token": token})
    assert resp.status == 204
    assert set_cookie_header(resp).startswith('chatsvc_session="";')
    assert (await client.get("/api/me")).status == 401


# --- the page -----------------------------------------------------------------------------------------


async def test_page_renders_the_csrf_token_with_a_strict_policy(web_client: TestClient) -> None:
    resp = await web_client.get("/")
    assert resp.status == 200
    assert resp.content_type == "text/html"
    assert resp.headers["Content-Security-Policy"] == PAGE_CSP
    assert resp.headers["Cache-Control"] == "no-store"
    token = CSRF_META.search(await resp.text())
    assert token is not None and re.fullmatch(r"[A-Za-z0-9]{43}", token.group(1))
    assert await page_csrf(web_client) == token.group(1)  # stable within the session


@pytest.mark.parametrize(
    ("path", "content_type"),
    [("/static/app.js", "text/javascript"), ("/static/style.css", "text/css")],
)
async def test_static_files_are_served(
    web_client: TestClient, path: str, content_type: str
) -> None:
    resp = await web_client.get(path)
    assert resp.status == 200
    assert resp.content_type in (content_type, "application/javascript")


# --- the cookie key ------------------------------------------------------------------------------------


async def test_cookie_key_is_generated_once_with_owner_only_permissions(
    web_client: TestClient, tmp_path: Path
) -> None:
    path = tmp_path / KEY_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    key = path.read_bytes()
    Fernet(key)
    create_app(web_client.app[SETTINGS])
    assert path.read_bytes() == key


async def test_configured_cookie_key_is_used(
    tmp_path: Path, database_url: str, okta: FakeOkta
) -> None:
    key = Fernet.generate_key().decode()
    settings = settings_for(tmp_path, database_url, okta, session_cookie_key=key)
    create_app(settings)
    assert not (tmp_path / KEY_FILE).exists()


async def test_invalid_cookie_key_stops_start_up(
    tmp_path: Path, database_url: str, okta: FakeOkta
) -> None:
    settings = settings_for(tmp_path, database_url, okta, session_cookie_key="too-short")
    with pytest.raises(SettingsError, match="CHATSVC_SESSION_COOKIE_KEY"):
        create_app(settings)


# --- the development sign-in form -------------------------------------------------------------------


DevSignIn = Callable[..., Awaitable[ClientResponse]]


@pytest.fixture
def dev_sign_in(dev_client: TestClient) -> DevSignIn:
    async def submit(
        email: str = "dev@example.com",
        groups: tuple[str, ...] = ("Onyx-Writers",),
        csrf: str | None = "page",
    ) -> ClientResponse:
        form = await dev_client.get("/auth/login")
        assert form.status == 200
        token = re.search(r'name="csrf_token" value="([^"]+)"', await form.text())
        assert token is not None
        data: list[tuple[str, str]] = [("email", email), *(("groups", g) for g in groups)]
        if csrf is not None:
            data.append(("csrf_token", token.group(1) if csrf == "page" else csrf))
        return await dev_client.post("/auth/login", data=data, allow_redirects=False)

    return submit


async def test_dev_form_has_stable_field_names(dev_client: TestClient) -> None:
    resp = await dev_client.get("/auth/login")
    assert resp.status == 200
    assert resp.headers["Cache-Control"] == "no-store"
    assert "frame-ancestors 'none'" in resp.headers["Content-Security-Policy"]
    page = await resp.text()
    assert 'name="email"' in page
    for group in ("Onyx-Readers", "Onyx-Writers", "Onyx-Admins"):
        assert f'name="groups" value="{group}"' in page


@pytest.mark.parametrize(
    ("groups", "permission"),
    [
        (("Onyx-Readers",), "read"),
        (("Onyx-Writers",), "write"),
        (("Onyx-Admins",), "admin"),
        ((), None),
    ],
)
async def test_dev_sign_in_sets_the_cookie(
    dev_client: TestClient, dev_sign_in: DevSignIn, groups: tuple[str, ...], permission: str | None
) -> None:
    resp = await dev_sign_in("carol@example.com", groups)
    assert resp.status == 303
    assert resp.headers["Location"] == "/"
    me = await dev_client.get("/api/me")
    assert me.status == 200
    body = await me.json()
    assert (body["email"], body["permission"], body["groups"]) == (
        "carol@example.com",
        permission,
        list(groups),
    )


@pytest.mark.parametrize("csrf", [None, "wrong"], ids=["missing", "wrong"])
async def test_dev_sign_in_needs_the_csrf_field(
    dev_client: TestClient, dev_sign_in: DevSignIn, csrf: str | None
) -> None:
    await expect_problem(await dev_sign_in(csrf=csrf), 403, "CSRF_FAILED")
    assert (await dev_client.get("/api/me")).status == 401


@pytest.mark.parametrize(
    ("email", "groups"),
    [("", ("Onyx-Writers",)), ("two words", ()), ("eve@example.com", ("Domain-Admins",))],
    ids=["blank", "whitespace", "unknown-group"],
)
async def test_dev_sign_in_rejects_bad_input(
    dev_sign_in: DevSignIn, email: str, groups: tuple[str, ...]
) -> None:
    await expect_problem(await dev_sign_in(email, groups), 400, "VALIDATION_ERROR")


async def test_dev_token_expiry_means_signing_in_again(
    dev_client: TestClient, dev_sign_in: DevSignIn, clock: Clock
) -> None:
    await dev_sign_in()
    clock.advance(dev_client.app[SETTINGS].dev_sign_in_ttl)
    assert (await dev_client.get("/api/me")).status == 401


async def test_dev_form_is_not_served_with_okta(web_client: TestClient) -> None:
    resp = await web_client.post("/auth/login", data={"email": "x@example.com"})
    await expect_problem(resp, 404, "NOT_FOUND")
