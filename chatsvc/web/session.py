"""What a browser session's state holds (server-side, :mod:`~chatsvc.web.cookie`):
the CSRF token (issued, rotated at sign-in and checked), a sign-in in progress,
and the end-session redirect due after a logout. Its tokens live beside it
(:class:`~chatsvc.web.cookie.Tokens`)."""

from __future__ import annotations

import hmac
import logging

from aiohttp import web
from aiohttp_session import get_session
from authlib.common.security import generate_token  # type: ignore[import-untyped]

from chatsvc.errors import ChatError
from chatsvc.keys import AUTHENTICATOR, METRICS, REQUEST_ID
from chatsvc.service.identity import Profile
from chatsvc.web.cookie import BrowserRow, Tokens, storage_of

log = logging.getLogger("chatsvc.auth.browser")

CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"

# Keys inside the session's state.
S_CSRF = "csrf"
S_LOGIN = "login"
S_END_SESSION = "end_session"  # the provider's logout page, visited on the next page load


class CsrfFailed(ChatError):
    status, code, title = 403, "CSRF_FAILED", "Forbidden"


async def csrf_token(request: web.Request) -> str:
    """The session's CSRF token, created (and the cookie set) if it has none yet."""
    session = await get_session(request)
    token = session.get(S_CSRF)
    if not isinstance(token, str) or not token:
        token = generate_token(43)
        session[S_CSRF] = token
    return token


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


def new_csrf_token() -> str:
    return str(generate_token(43))


async def start_session(
    request: web.Request, tokens: Tokens, profile: Profile | None, sid: str | None
) -> BrowserRow:
    """Record the user, then a fresh server-side session with a new cookie and CSRF token."""
    authenticator = request.app[AUTHENTICATOR]
    if profile is not None:
        authenticator.note_profile(tokens.access_token, profile)
    principal = await authenticator.authenticate(tokens.access_token)  # records the user
    return await storage_of(request).sign_in(
        request, {S_CSRF: new_csrf_token()}, tokens, principal.user_id, sid
    )
