"""The session cookie ``chatsvc_session``: aiohttp-session's encrypted cookie
storage, the key it is encrypted with, and the session middleware built from
the settings (the app factory puts it in the middleware list)."""

from __future__ import annotations

import logging
import warnings
from urllib.parse import urlsplit

from aiohttp import web
from aiohttp.typedefs import Middleware
from aiohttp_session import Session, session_middleware
from aiohttp_session.cookie_storage import EncryptedCookieStorage
from cryptography.fernet import Fernet

from chatsvc.auth.keyfile import read_or_create
from chatsvc.keys import REQUEST_ID
from chatsvc.settings import Settings, SettingsError, is_loopback_host

log = logging.getLogger("chatsvc.auth.browser")

# aiohttp-session keeps its session and storage under string request keys.
warnings.filterwarnings("ignore", category=web.NotAppKeyWarning, module="aiohttp_session")

SESSION_COOKIE = "chatsvc_session"
KEY_FILE = "session-cookie.key"
COOKIE_SIZE_WARNING = 4000  # browsers drop cookies above ~4096 bytes, silently


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

    async def save_session(
        self, request: web.Request, response: web.StreamResponse, session: Session
    ) -> None:
        secure = not is_loopback_host(request_hostname(request))
        if session.empty:
            response.del_cookie(
                SESSION_COOKIE, path="/", secure=secure, httponly=True, samesite="Lax"
            )
            return
        # The library encodes and encrypts the session (in its own format, which
        # its load_session reads back); we then set what differs per request
        # (Secure) on the cookie it put on the response, and measure the value
        # there. So we need neither its private helpers nor a copy of its format.
        await super().save_session(request, response, session)
        cookie = response.cookies[SESSION_COOKIE]
        cookie["secure"] = secure
        if len(cookie.value) > COOKIE_SIZE_WARNING:
            log.warning(
                "event=session_cookie_too_large bytes=%d request_id=%s",
                len(cookie.value),
                request.get(REQUEST_ID),
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


def session_cookie_middleware(settings: Settings) -> Middleware:
    """aiohttp-session's middleware over :class:`SessionCookieStorage` with the configured key."""
    return session_middleware(SessionCookieStorage(cookie_key(settings)))
