"""The browser session as a token source (consulted by the auth middleware after
the ``Authorization`` header): the access token of the session's server-side
row, refreshed near its ``exp`` (once per session at a time, :mod:`~chatsvc.web.refresh`)."""

from __future__ import annotations

import logging

from aiohttp import web
from aiohttp_session import get_session

from chatsvc.keys import AUTHENTICATOR, BROWSER_SESSION_ID, CLOCK, SETTINGS
from chatsvc.service.identity import Profile
from chatsvc.web.cookie import BROWSER_ROW, BrowserRow, Tokens, storage_of
from chatsvc.web.oidc import OIDC
from chatsvc.web.refresh import REFRESHER, needs_refresh

log = logging.getLogger("chatsvc.auth.browser")

COOKIE_AUTH = web.RequestKey[bool]("cookie_auth")


async def current_tokens(request: web.Request) -> Tokens | None:
    """The session's tokens, refreshed first when within the margin of ``exp``;
    None without a signed-in session or once the access token has expired."""
    await get_session(request)  # loads the row
    row: BrowserRow | None = request.get(BROWSER_ROW)
    if row is None or row.tokens is None:
        return None
    now = request.app[CLOCK]()
    # A group change at the IdP revoked this token: refresh it into one with the new groups.
    cutoff = request.app[AUTHENTICATOR].revocations.cutoff(row.user_id) if row.user_id else None
    revoked = cutoff is not None and row.tokens.issued_at <= cutoff
    if revoked and (
        request.app.get(OIDC) is None
        or row.tokens.refresh_token is None
        or row.tokens.groups is not None  # groups from the ID token or userinfo
    ):
        # No way to renew into a token that carries the new groups: sign in again.
        await storage_of(request).end(request, row)
        request.pop(BROWSER_ROW, None)
        return None
    if request.app.get(OIDC) is not None and (
        revoked or needs_refresh(request.app[SETTINGS], row.tokens, now)
    ):
        refreshed = await request.app[REFRESHER].refresh(request.app, storage_of(request), row)
        if refreshed is None:
            request.pop(BROWSER_ROW, None)
            return None
        request[BROWSER_ROW] = row = refreshed
    tokens = row.tokens
    if tokens is None or tokens.expires_at <= request.app[CLOCK]():
        return None
    return tokens


async def session_token(request: web.Request) -> str | None:
    """``TOKEN_SOURCES`` entry. Without a refresh token (or when the provider
    refuses it) the token is used until ``exp``; then the user signs in again."""
    tokens = await current_tokens(request)
    if tokens is None:
        return None
    if tokens.email is not None or tokens.groups is not None:
        profile = Profile(tokens.email, tuple(tokens.groups) if tokens.groups is not None else None)
        request.app[AUTHENTICATOR].note_profile(tokens.access_token, profile)
    request[COOKIE_AUTH] = True
    row: BrowserRow | None = request.get(BROWSER_ROW)
    if row is not None:
        request[BROWSER_SESSION_ID] = row.id
    return tokens.access_token


async def save_session_on_upgrade(request: web.Request, response: web.StreamResponse) -> None:
    """``on_response_prepare``: nothing to do any more -- a refresh is stored in the
    session's row, not in the cookie, so a WebSocket upgrade has no cookie to update."""
    return None
