"""Browser sign-in: the session cookie, Okta's authorization-code flow with PKCE,
the development sign-in form, and the CSRF and Origin checks that cookie
authentication needs.

The cookie (``chatsvc_session``) is an encrypted aiohttp-session cookie holding
the access token, its ``exp``, the refresh token and the session's CSRF token.
The access token in it goes through the same :class:`TokenValidator` and
:class:`Authenticator` as a ``Bearer`` header: the cookie is only another token
source (consulted after the ``Authorization`` header).

Because a browser attaches the cookie to requests other sites make, a request
authenticated by the cookie must prove it comes from our page:

- state-changing requests (``POST``/``PUT``/``PATCH``/``DELETE`` under ``/api/``,
  and ``POST /auth/logout``) carry ``X-CSRF-Token`` equal to the token kept in
  the session (the page reads it from its ``<meta name="csrf-token">``);
- WebSocket upgrades carry an ``Origin`` from the allow-list (the service's own
  origin plus ``allowed_origins``).

``Bearer`` requests are not affected: another site cannot make a browser send them.
"""

from __future__ import annotations

import base64
import hmac
import html
import logging
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import quote, urlsplit

import aiohttp
from aiohttp import web
from aiohttp_session import STORAGE_KEY, Session, get_session, session_middleware
from aiohttp_session.cookie_storage import EncryptedCookieStorage
from authlib.common.security import generate_token  # type: ignore[import-untyped]
from authlib.oauth2.rfc6749.parameters import (  # type: ignore[import-untyped]
    prepare_grant_uri,
)
from authlib.oauth2.rfc7636 import create_s256_code_challenge  # type: ignore[import-untyped]
from cryptography.fernet import Fernet

from chatsvc.auth.keyfile import read_or_create
from chatsvc.auth.tokens import HttpKeySource, InvalidToken, KeysUnavailable, TokenValidator
from chatsvc.errors import ChatError, NotFound, ServiceUnavailable, ValidationFailed
from chatsvc.http.identity import TOKEN_SOURCES, auth_middleware
from chatsvc.http.problems import Handler, problem_middleware
from chatsvc.keys import (
    AUTHENTICATOR,
    CLOCK,
    DEV_ISSUER,
    HTTP_CLIENT,
    METRICS,
    REQUEST_ID,
    SETTINGS,
)
from chatsvc.settings import Settings, SettingsError, is_loopback_host

log = logging.getLogger("chatsvc.auth.browser")

# aiohttp-session keeps its session and storage under string request keys.
warnings.filterwarnings("ignore", category=web.NotAppKeyWarning, module="aiohttp_session")

SESSION_COOKIE = "chatsvc_session"
KEY_FILE = "session-cookie.key"
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"
LOGIN_PATH = "/auth/login"
CALLBACK_PATH = "/auth/callback"
LOGOUT_PATH = "/auth/logout"
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})

COOKIE_SIZE_WARNING = 4000  # browsers drop cookies above ~4096 bytes, silently

# Keys inside the session cookie.
S_CSRF = "csrf"
S_ACCESS = "access_token"
S_REFRESH = "refresh_token"
S_EXPIRES = "expires_at"
S_LOGIN = "login"

OIDC = web.AppKey["OidcClient | None"]("oidc_client")
COOKIE_AUTH = web.RequestKey[bool]("cookie_auth")
SESSION_REFRESHED = web.RequestKey[bool]("session_refreshed")

ResponseT = TypeVar("ResponseT", bound=web.StreamResponse)


class CsrfFailed(ChatError):
    status, code, title = 403, "CSRF_FAILED", "Forbidden"


class OriginRejected(ChatError):
    status, code, title = 403, "ORIGIN_NOT_ALLOWED", "Forbidden"


class SignInFailed(ChatError):
    status, code, title = 400, "SIGN_IN_FAILED", "Bad Request"


class TokenRefused(Exception):
    """The token endpoint answered with an OAuth error (e.g. ``invalid_grant``)."""

    def __init__(self, error: str) -> None:
        super().__init__(error)
        self.error = error


# --- the cookie ----------------------------------------------------------------


def request_hostname(request: web.BaseRequest) -> str | None:
    try:
        return urlsplit(f"//{request.host}").hostname
    except ValueError:
        return None


class SessionCookieStorage(EncryptedCookieStorage):
    """Encrypted cookie storage whose ``Secure`` flag follows the request: set,
    unless the browser reached us on a loopback host (plain-http development)."""

    def __init__(self, key: bytes) -> None:
        super().__init__(Fernet(key), cookie_name=SESSION_COOKIE, httponly=True, samesite="Lax")
        self._cipher = Fernet(key)

    async def save_session(
        self, request: web.Request, response: web.StreamResponse, session: Session
    ) -> None:
        secure = not is_loopback_host(request_hostname(request))
        if session.empty:
            response.del_cookie(
                SESSION_COOKIE, path="/", secure=secure, httponly=True, samesite="Lax"
            )
            return
        data = self._encoder(self._get_session_data(session)).encode()
        value = self._cipher.encrypt(data).decode()
        if len(value) > COOKIE_SIZE_WARNING:
            log.warning(
                "event=session_cookie_too_large bytes=%d request_id=%s",
                len(value),
                request.get(REQUEST_ID),
            )
        response.set_cookie(
            SESSION_COOKIE, value, path="/", secure=secure, httponly=True, samesite="Lax"
        )


def cookie_key(settings: Settings) -> bytes:
    """``session_cookie_key``, else a key generated once into the data directory (0600)."""
    if settings.session_cookie_key is not None:
        key = settings.session_cookie_key.encode()
        try:
            Fernet(key)
        except ValueError:
            raise SettingsError(
                "invalid setting CHATSVC_SESSION_COOKIE_KEY: must be 32 url-safe base64-encoded bytes"
            ) from None
        return key
    path = settings.data_dir / KEY_FILE
    key = read_or_create(path, Fernet.generate_key).strip()
    try:
        Fernet(key)
    except ValueError:
        raise SettingsError(f"{path}: not a valid session cookie key; delete it") from None
    return key


async def csrf_token(request: web.Request) -> str:
    """The session's CSRF token, created (and the cookie set) if it has none yet."""
    session = await get_session(request)
    token = session.get(S_CSRF)
    if not isinstance(token, str) or not token:
        token = generate_token(43)
        session[S_CSRF] = token
    return token


def store_tokens(session: Session, access_token: str, expires_at: int, refresh: str | None) -> None:
    """A fresh sign-in: drop whatever the session held, and rotate the CSRF token."""
    session.clear()
    session[S_CSRF] = generate_token(43)
    session[S_ACCESS] = access_token
    session[S_EXPIRES] = expires_at
    if refresh:
        session[S_REFRESH] = refresh


def forget_tokens(session: Session) -> None:
    for key in (S_ACCESS, S_EXPIRES, S_REFRESH):
        session.pop(key, None)


# --- Okta: discovery, the token endpoint, ID tokens ------------------------------


@dataclass(frozen=True, slots=True)
class ProviderEndpoints:
    authorization_endpoint: str
    token_endpoint: str


class OidcClient:
    """The OAuth client side of browser sign-in against the configured issuer."""

    def __init__(self, settings: Settings, client: Callable[[], aiohttp.ClientSession]) -> None:
        assert settings.okta_client_id is not None
        self.issuer = settings.issuer
        self.client_id = settings.okta_client_id
        self.scopes = settings.okta_scopes
        self._secret = settings.okta_client_secret
        self._client = client
        self._timeout = aiohttp.ClientTimeout(total=settings.jwks_fetch_timeout)
        self._endpoints: ProviderEndpoints | None = None
        # ID tokens are signed with the same keys as access tokens but are meant
        # for us (aud = client id), not for the API.
        self.id_tokens = TokenValidator(
            HttpKeySource(
                client, settings.issuer, settings.okta_jwks_uri, settings.jwks_fetch_timeout
            ),
            issuer=settings.issuer,
            audience=self.client_id,
            leeway=settings.jwt_leeway,
            min_refresh_interval=settings.jwks_min_refresh_interval,
        )

    async def endpoints(self) -> ProviderEndpoints:
        if self._endpoints is None:
            url = f"{self.issuer}/.well-known/openid-configuration"
            try:
                async with self._client().get(url, timeout=self._timeout) as resp:
                    resp.raise_for_status()
                    doc = await resp.json(content_type=None)
                authorize, token = doc["authorization_endpoint"], doc["token_endpoint"]
                if not isinstance(authorize, str) or not isinstance(token, str):
                    raise TypeError("endpoint is not a string")
            except (aiohttp.ClientError, TimeoutError, ValueError, KeyError, TypeError) as exc:
                log.warning("event=oidc_discovery_failed error=%s", type(exc).__name__)
                raise ServiceUnavailable("The identity provider is unavailable") from None
            self._endpoints = ProviderEndpoints(authorize, token)
        return self._endpoints

    def authorization_url(
        self, endpoints: ProviderEndpoints, redirect_uri: str, state: str, nonce: str, verifier: str
    ) -> str:
        return prepare_grant_uri(
            endpoints.authorization_endpoint,
            client_id=self.client_id,
            response_type="code",
            redirect_uri=redirect_uri,
            scope=self.scopes,
            state=state,
            nonce=nonce,
            code_challenge=create_s256_code_challenge(verifier),
            code_challenge_method="S256",
        )

    async def exchange_code(self, code: str, redirect_uri: str, verifier: str) -> dict[str, Any]:
        return await self._token_request(
            {
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": redirect_uri,
                "code_verifier": verifier,
            }
        )

    async def refresh(self, refresh_token: str) -> dict[str, Any]:
        return await self._token_request(
            {"grant_type": "refresh_token", "refresh_token": refresh_token}
        )

    async def _token_request(self, form: dict[str, str]) -> dict[str, Any]:
        """Raise :class:`TokenRefused` for an OAuth error, :class:`ServiceUnavailable` otherwise."""
        endpoints = await self.endpoints()
        headers = {"Accept": "application/json"}
        if self._secret is None:
            form = {**form, "client_id": self.client_id}  # a public client, PKCE only
        else:
            # client_secret_basic: each part form-encoded first (RFC 6749, section 2.3.1)
            pair = f"{quote(self.client_id, safe='')}:{quote(self._secret, safe='')}"
            headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
        try:
            async with self._client().post(
                endpoints.token_endpoint,
                data=form,
                headers=headers,
                timeout=self._timeout,
            ) as resp:
                body = await resp.json(content_type=None)
                status = resp.status
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            log.warning("event=token_endpoint_failed error=%s", type(exc).__name__)
            raise ServiceUnavailable("The identity provider is unavailable") from None
        if not isinstance(body, dict):
            raise ServiceUnavailable("The identity provider answered unexpectedly")
        if status != 200:
            error = body.get("error")
            if 400 <= status < 500 and isinstance(error, str):
                raise TokenRefused(error)
            raise ServiceUnavailable("The identity provider is unavailable")
        if not isinstance(body.get("access_token"), str):
            raise TokenRefused("no_access_token")
        return body


# --- the token source --------------------------------------------------------------


async def session_token(request: web.Request) -> str | None:
    """``TOKEN_SOURCES`` entry: the access token in the session cookie, refreshed
    when it is within ``browser_refresh_margin`` of ``exp`` and a refresh token exists.
    Without one (or when Okta refuses it) the token is used until ``exp``; then
    the user has to sign in again."""
    session = await get_session(request)
    token = session.get(S_ACCESS)
    if not isinstance(token, str):
        return None
    expires_at = session.get(S_EXPIRES, 0)
    refresh = session.get(S_REFRESH)
    oidc = request.app.get(OIDC)
    margin = request.app[SETTINGS].browser_refresh_margin
    now = request.app[CLOCK]
    if expires_at - now() <= margin and isinstance(refresh, str) and oidc is not None:
        token = await _refresh(request, session, oidc, refresh) or token
        expires_at = session.get(S_EXPIRES, 0)
    if expires_at <= now():
        forget_tokens(session)
        return None
    request[COOKIE_AUTH] = True
    return token


async def _refresh(
    request: web.Request, session: Session, oidc: OidcClient, refresh: str
) -> str | None:
    request_id = request.get(REQUEST_ID)
    try:
        tokens = await oidc.refresh(refresh)
        claims = await request.app[AUTHENTICATOR].validator.validate(tokens["access_token"])
    except (TokenRefused, InvalidToken) as exc:
        # The refresh token is spent or revoked: keep the access token until its exp.
        reason = exc.error if isinstance(exc, TokenRefused) else exc.reason
        log.info("event=session_refresh_refused reason=%s request_id=%s", reason, request_id)
        session.pop(S_REFRESH, None)
        return None
    except (ServiceUnavailable, KeysUnavailable):
        log.warning("event=session_refresh_unavailable request_id=%s", request_id)
        return None
    session[S_ACCESS] = tokens["access_token"]
    session[S_EXPIRES] = int(claims["exp"])
    if isinstance(tokens.get("refresh_token"), str):
        session[S_REFRESH] = tokens["refresh_token"]  # Okta may rotate it
    request[SESSION_REFRESHED] = True
    log.info("event=session_refreshed request_id=%s", request_id)
    return str(tokens["access_token"])


async def save_session_on_upgrade(request: web.Request, response: web.StreamResponse) -> None:
    """``on_response_prepare``: aiohttp-session saves only plain responses; a token
    refreshed while authenticating a WebSocket upgrade must still reach the cookie."""
    if isinstance(response, web.Response) or not request.get(SESSION_REFRESHED):
        return
    # Cookies set now would miss the headers (they are rendered before this
    # signal), so render the cookie on a scratch response and copy its header.
    scratch = web.Response()
    await request[STORAGE_KEY].save_session(request, scratch, await get_session(request))
    for morsel in scratch.cookies.values():
        response.headers.add("Set-Cookie", morsel.output(header="")[1:])


# --- CSRF and Origin ------------------------------------------------------------------


async def check_csrf(request: web.Request, supplied: str | None) -> None:
    expected = (await get_session(request)).get(S_CSRF)
    if (
        isinstance(expected, str)
        and expected
        and supplied is not None
        and hmac.compare_digest(supplied.encode(), expected.encode())
    ):
        return
    request.app[METRICS].auth_failures.labels("csrf").inc()
    log.info(
        "event=csrf_failed method=%s path=%s request_id=%s",
        request.method,
        request.path,
        request.get(REQUEST_ID),
    )
    raise CsrfFailed("Missing or invalid CSRF token")


def normalise_origin(origin: str) -> str | None:
    try:
        parts = urlsplit(origin.strip().lower())
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https", "ws", "wss") or not parts.hostname:
        return None
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    default = {"http": 80, "ws": 80, "https": 443, "wss": 443}[parts.scheme]
    return f"{parts.scheme}://{host}" + (f":{port}" if port not in (None, default) else "")


def allowed_origins(request: web.Request) -> set[str]:
    """The service's own origin (scheme://Host of the request) plus ``allowed_origins``."""
    candidates = [f"{request.scheme}://{request.host}", *request.app[SETTINGS].allowed_origins]
    return {origin for c in candidates if (origin := normalise_origin(c)) is not None}


def check_origin(request: web.Request) -> None:
    origin = request.headers.get("Origin")
    if origin is not None and normalise_origin(origin) in allowed_origins(request):
        return
    request.app[METRICS].auth_failures.labels("origin").inc()
    log.info(
        "event=ws_origin_rejected origin=%r request_id=%s",
        (origin or "")[:200],
        request.get(REQUEST_ID),
    )
    raise OriginRejected("WebSocket connections with the session cookie need an allowed Origin")


def is_websocket_upgrade(request: web.Request) -> bool:
    return request.headers.get("Upgrade", "").lower() == "websocket"


@web.middleware
async def browser_guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Runs after the auth middleware, which marks cookie-authenticated requests."""
    if request.path == LOGOUT_PATH and request.method in UNSAFE_METHODS:
        await check_csrf(request, request.headers.get(CSRF_HEADER))
    elif request.get(COOKIE_AUTH):
        if is_websocket_upgrade(request):
            check_origin(request)
        elif request.method in UNSAFE_METHODS:
            await check_csrf(request, request.headers.get(CSRF_HEADER))
    return await handler(request)


# --- routes: Okta ------------------------------------------------------------------------


def no_store(response: ResponseT) -> ResponseT:
    response.headers["Cache-Control"] = "no-store"
    return response


def redirect(location: str, status: type[web.HTTPMove] = web.HTTPFound) -> web.HTTPMove:
    return status(location=location, headers={"Cache-Control": "no-store"})


def oidc_of(request: web.Request) -> OidcClient:
    oidc = request.app.get(OIDC)
    if oidc is None:
        raise NotFound("Browser sign-in is not configured (CHATSVC_OKTA_CLIENT_ID is not set)")
    return oidc


async def login(request: web.Request) -> web.StreamResponse:
    """``GET /auth/login``: off to Okta, or the development form."""
    if request.app[DEV_ISSUER] is not None:
        return await dev_login_form(request)
    oidc = oidc_of(request)
    endpoints = await oidc.endpoints()
    state, nonce, verifier = generate_token(32), generate_token(32), generate_token(64)
    redirect_uri = f"{request.scheme}://{request.host}{CALLBACK_PATH}"
    session = await get_session(request)
    session[S_LOGIN] = {
        "state": state,
        "nonce": nonce,
        "verifier": verifier,
        "redirect_uri": redirect_uri,
        "started": int(request.app[CLOCK]()),
    }
    raise redirect(oidc.authorization_url(endpoints, redirect_uri, state, nonce, verifier))


async def callback(request: web.Request) -> web.StreamResponse:
    """``GET /auth/callback``: check state, exchange the code, check both tokens, set the cookie."""
    oidc = oidc_of(request)
    session = await get_session(request)
    pending = session.pop(S_LOGIN, None)  # single use, whatever happens next
    query = request.query
    if "error" in query:
        log.info("event=sign_in_refused error=%r", query["error"][:100])
        raise SignInFailed(f"The identity provider refused sign-in: {query['error'][:100]}")
    state = query.get("state", "")
    if (
        not isinstance(pending, dict)
        or not state
        or not hmac.compare_digest(state.encode(), str(pending.get("state", "")).encode())
    ):
        raise SignInFailed("Sign-in state does not match; please sign in again")
    if (
        request.app[CLOCK]() - pending.get("started", 0)
        > request.app[SETTINGS].browser_login_timeout
    ):
        raise SignInFailed("Sign-in took too long; please sign in again")
    code = query.get("code")
    if not code:
        raise SignInFailed("The identity provider sent no authorization code")

    try:
        tokens = await oidc.exchange_code(code, pending["redirect_uri"], pending["verifier"])
    except TokenRefused as exc:
        log.info("event=code_exchange_refused error=%s", exc.error)
        raise SignInFailed("The identity provider refused the authorization code") from None
    id_token = tokens.get("id_token")
    try:
        claims = await request.app[AUTHENTICATOR].validator.validate(tokens["access_token"])
        if not isinstance(id_token, str):
            raise InvalidToken("no_id_token")
        id_claims = await oidc.id_tokens.validate(id_token)
    except InvalidToken as exc:
        log.info("event=sign_in_token_rejected reason=%s", exc.reason)
        raise SignInFailed("The identity provider returned an unacceptable token") from None
    except KeysUnavailable:
        raise ServiceUnavailable("Identity provider keys are unavailable") from None
    nonce = id_claims.get("nonce")
    if not isinstance(nonce, str) or not hmac.compare_digest(
        nonce.encode(), str(pending["nonce"]).encode()
    ):
        log.info("event=sign_in_token_rejected reason=nonce")
        raise SignInFailed("The ID token's nonce does not match; please sign in again")

    refresh = tokens.get("refresh_token")
    store_tokens(
        session,
        tokens["access_token"],
        int(claims["exp"]),
        refresh if isinstance(refresh, str) else None,
    )
    log.info("event=signed_in method=okta request_id=%s", request.get(REQUEST_ID))
    raise redirect("/")


async def logout(request: web.Request) -> web.StreamResponse:
    """``POST /auth/logout`` (CSRF-checked by :func:`browser_guard`): drop the cookie."""
    session = await get_session(request)
    session.invalidate()
    return no_store(web.Response(status=204))


# --- routes: the development issuer ---------------------------------------------------------

DEV_FORM = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>chatsvc — development sign-in</title>
  <link rel="stylesheet" href="/static/style.css">
</head>
<body>
  <header class="topbar"><h1>chatsvc</h1></header>
  <main class="chat">
    <form method="post" action="/auth/login">
      <fieldset>
        <legend>Development sign-in</legend>
        <p class="muted">No Okta issuer is configured: this form mints a token with the
          built-in development issuer. It does not exist in production.</p>
        <input type="hidden" name="csrf_token" value="{csrf}">
        <label for="email">Email or user name</label>
        <input id="email" name="email" type="text" required maxlength="254" autocomplete="username">
        <fieldset>
          <legend>Groups</legend>
{groups}
        </fieldset>
        <button id="sign-in" type="submit">Sign in</button>
      </fieldset>
    </form>
  </main>
</body>
</html>
"""

DEV_GROUP = (
    '          <label class="checkbox"><input type="checkbox" name="groups" value="{value}"{checked}>'
    " {value}</label>"
)

DEV_FORM_CSP = "default-src 'self'; form-action 'self'; object-src 'none'; frame-ancestors 'none'"


def dev_groups(settings: Settings) -> list[str]:
    """The groups the form offers: every group the level mapping knows."""
    groups = [*settings.groups_read, *settings.groups_write, *settings.groups_admin]
    return list(dict.fromkeys(groups))


async def dev_login_form(request: web.Request) -> web.Response:
    token = await csrf_token(request)
    offered = dev_groups(request.app[SETTINGS])
    default = request.app[SETTINGS].groups_write[:1]
    groups = "\n".join(
        DEV_GROUP.format(value=html.escape(g), checked=" checked" if g in default else "")
        for g in offered
    )
    body = DEV_FORM.format(csrf=html.escape(token), groups=groups)
    response = web.Response(text=body, content_type="text/html")
    response.headers["Content-Security-Policy"] = DEV_FORM_CSP
    return no_store(response)


async def dev_login(request: web.Request) -> web.StreamResponse:
    """``POST /auth/login`` (development issuer only): mint a token, set the cookie."""
    dev = request.app[DEV_ISSUER]
    if dev is None:
        raise NotFound("Development sign-in is only available without an Okta issuer")
    form = await request.post()
    supplied = form.get(CSRF_FIELD)
    await check_csrf(request, supplied if isinstance(supplied, str) else None)
    email = form.get("email")
    email = email.strip() if isinstance(email, str) else ""
    if not email or len(email) > 254 or any(ch.isspace() for ch in email):
        raise ValidationFailed("email: a user name or email is required")
    offered = dev_groups(request.app[SETTINGS])
    groups = [g for g in form.getall("groups", []) if isinstance(g, str)]
    unknown = [g for g in groups if g not in offered]
    if unknown:
        raise ValidationFailed(f"groups: unknown group {unknown[0]!r}")
    token = dev.mint(email, groups, ttl=int(request.app[SETTINGS].dev_sign_in_ttl))
    claims = await request.app[AUTHENTICATOR].validator.validate(token)
    store_tokens(await get_session(request), token, int(claims["exp"]), None)
    log.info("event=signed_in method=dev_issuer request_id=%s", request.get(REQUEST_ID))
    raise redirect("/", web.HTTPSeeOther)


# --- wiring -----------------------------------------------------------------------------------


def setup_browser(app: web.Application) -> None:
    """Cookie sessions, the sign-in routes, the cookie token source and the CSRF/Origin guard.

    Middleware order: the session middleware wraps the problem middleware (so
    error responses still carry cookie updates, such as a refreshed token), and
    the guard runs just inside the auth middleware (which marks cookie requests).
    """
    settings = app[SETTINGS]
    storage = SessionCookieStorage(cookie_key(settings))
    middlewares = app.middlewares
    middlewares.insert(middlewares.index(problem_middleware), session_middleware(storage))
    middlewares.insert(middlewares.index(auth_middleware) + 1, browser_guard)
    app.on_response_prepare.append(save_session_on_upgrade)

    app[OIDC] = (
        OidcClient(settings, lambda: app[HTTP_CLIENT])
        if not settings.dev_issuer and settings.okta_client_id
        else None
    )
    app.setdefault(TOKEN_SOURCES, []).append(session_token)

    app.router.add_get(LOGIN_PATH, login)
    app.router.add_post(LOGIN_PATH, dev_login)
    app.router.add_get(CALLBACK_PATH, callback)
    app.router.add_post(LOGOUT_PATH, logout)
