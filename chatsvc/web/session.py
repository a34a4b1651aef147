"""What the session cookie holds: the CSRF token (issued, rotated at sign-in and
checked), the access token with its ``exp``, the refresh token, and a sign-in
in progress."""

from __future__ import annotations

import hmac
import logging

from aiohttp import web
from aiohttp_session import Session, get_session
from authlib.common.security import generate_token  # type: ignore[import-untyped]

from chatsvc.errors import ChatError
from chatsvc.keys import METRICS, REQUEST_ID

log = logging.getLogger("chatsvc.auth.browser")

CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"

# Keys inside the session cookie.
S_CSRF = "csrf"
S_ACCESS = "access_token"
S_REFRESH = "refresh_token"
S_EXPIRES = "expires_at"
S_LOGIN = "login"


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
