"""The session cookie as a token source (consulted by the auth middleware after
the ``Authorization`` header): the access token it holds, refreshed near its
``exp`` with the refresh token."""

from __future__ import annotations

import logging

from aiohttp import web
from aiohttp_session import STORAGE_KEY, Session, get_session

from chatsvc.auth.tokens import InvalidToken, KeysUnavailable
from chatsvc.errors import ServiceUnavailable
from chatsvc.keys import AUTHENTICATOR, CLOCK, REQUEST_ID, SETTINGS
from chatsvc.web.oidc import OIDC, OidcClient, TokenRefused
from chatsvc.web.session import S_ACCESS, S_EXPIRES, S_REFRESH, forget_tokens

log = logging.getLogger("chatsvc.auth.browser")

COOKIE_AUTH = web.RequestKey[bool]("cookie_auth")
SESSION_REFRESHED = web.RequestKey[bool]("session_refreshed")


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
