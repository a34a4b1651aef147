"""The session cookie ``chatsvc_session`` and the server-side sessions behind it.

The cookie carries only an opaque random value; the session itself is a
``browser_sessions`` row keyed by the value's SHA-256 (:mod:`chatsvc.store.browser_sessions`),
so that logout -- and, later, the IdP -- can end it everywhere, on every
process, and a copied cookie then opens nothing. The row's state (CSRF token,
a sign-in in progress) and tokens (access, refresh, ID token) are encrypted at
rest with Fernet under the cookie key (``session_cookie_key``, else a key
generated into the data directory)."""

from __future__ import annotations

import hashlib
import json
import logging
import re
import secrets
import warnings
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Middleware
from aiohttp_session import SESSION_KEY, AbstractStorage, Session, session_middleware
from cryptography.fernet import Fernet, InvalidToken
from sqlalchemy.exc import SQLAlchemyError

from chatsvc.auth.keyfile import read_or_create
from chatsvc.errors import ServiceUnavailable
from chatsvc.http.forwarded import is_secure_origin
from chatsvc.keys import CLOCK, DB_SESSIONS, REQUEST_ID, SETTINGS
from chatsvc.settings import Settings, SettingsError
from chatsvc.store import browser_sessions as store
from chatsvc.store.browser_sessions import StoredSession

log = logging.getLogger("chatsvc.auth.browser")

# aiohttp-session keeps its session and storage under string request keys.
warnings.filterwarnings("ignore", category=web.NotAppKeyWarning, module="aiohttp_session")

SESSION_COOKIE = "chatsvc_session"
KEY_FILE = "session-cookie.key"
COOKIE_VALUE = re.compile(r"[A-Za-z0-9_-]{43}")
ANONYMOUS_LIFETIME = 3600.0  # a visitor's CSRF token and a sign-in in progress


@dataclass(frozen=True, slots=True)
class Tokens:
    """What a signed-in session holds (encrypted in its row)."""

    access_token: str
    expires_at: int  # the access token's exp
    issued_at: int  # its iat: the lifetime the refresh margin is a fraction of
    refresh_token: str | None = None
    id_token: str | None = None
    email: str | None = None  # the profile from the ID token / userinfo
    groups: list[str] | None = None

    def to_json(self) -> str:
        return json.dumps({k: getattr(self, k) for k in self.__slots__})  # type: ignore[attr-defined]

    @classmethod
    def from_json(cls, text: str) -> Tokens:
        data = json.loads(text)
        return cls(**{k: data.get(k) for k in cls.__slots__})  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class BrowserRow:
    """The loaded row of this request's session (``request[BROWSER_ROW]``)."""

    id: str
    user_id: Any
    tokens: Tokens | None
    version: int
    sid: str | None
    refresh_until: datetime | None = field(default=None)


BROWSER_ROW = web.RequestKey["BrowserRow"]("browser_row")


def digest(cookie: str) -> str:
    """The row id: the cookie's SHA-256, so the table alone reveals no live cookie."""
    return hashlib.sha256(cookie.encode()).hexdigest()


def utc(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


class ServerSessionStorage(AbstractStorage):
    """aiohttp-session storage over ``browser_sessions``. The cookie's ``Secure``
    flag follows the request: set, unless the browser reached us on a loopback
    host (plain-http development)."""

    def __init__(self, key: bytes) -> None:
        super().__init__(cookie_name=SESSION_COOKIE, httponly=True, samesite="Lax", path="/")
        self._fernet = Fernet(key)

    # --- encryption at rest -------------------------------------------------------------
    def encrypt(self, text: str) -> str:
        return self._fernet.encrypt(text.encode()).decode()

    def decrypt(self, text: str) -> str:
        return self._fernet.decrypt(text.encode()).decode()

    def row_of(self, stored: StoredSession) -> BrowserRow:
        tokens = Tokens.from_json(self.decrypt(stored.tokens)) if stored.tokens else None
        return BrowserRow(
            stored.id, stored.user_id, tokens, stored.version, stored.sid, stored.refresh_until
        )

    # --- aiohttp-session ------------------------------------------------------------------
    async def load_session(self, request: web.Request) -> Session:
        cookie = self.load_cookie(request)
        if cookie is None or not COOKIE_VALUE.fullmatch(cookie):
            return Session(None, data=None, new=True)
        now = request.app[CLOCK]()
        try:
            async with request.app[DB_SESSIONS]() as db:
                stored = await store.load(db, digest(cookie), utc(now))
        except (SQLAlchemyError, OSError) as exc:
            log.warning("event=db_unavailable where=browser_session error=%s", type(exc).__name__)
            raise ServiceUnavailable("Database unavailable") from None
        if stored is None:
            return Session(None, data=None, new=True)  # ended, expired or never ours
        try:
            state = json.loads(self.decrypt(stored.state))
            request[BROWSER_ROW] = self.row_of(stored)
        except (InvalidToken, ValueError, TypeError):
            log.warning("event=browser_session_unreadable request_id=%s", request.get(REQUEST_ID))
            return Session(None, data=None, new=True)
        created = int(stored.created_at.timestamp())
        return Session(cookie, data={"created": created, "session": state}, new=False)

    async def save_session(
        self, request: web.Request, response: web.StreamResponse, session: Session
    ) -> None:
        secure = is_secure_origin(request)
        now = request.app[CLOCK]()
        async with request.app[DB_SESSIONS]() as db:
            if session.empty:
                if session.identity is not None:
                    await store.remove(db, digest(session.identity))
                response.del_cookie(
                    SESSION_COOKIE, path="/", secure=secure, httponly=True, samesite="Lax"
                )
                return
            state = self.encrypt(json.dumps(dict(session)))
            cookie = session.identity
            stored = cookie is not None and await store.update_state(
                db, digest(cookie), state, utc(now)
            )
            if not stored:
                # A visitor's first state, or a session that ended meanwhile: a new row.
                cookie = secrets.token_urlsafe(32)
                await store.create(
                    db, digest(cookie), state, utc(now + ANONYMOUS_LIFETIME), utc(now)
                )
            elif not session.new:
                return  # the browser already holds this cookie
        response.set_cookie(
            SESSION_COOKIE, str(cookie), path="/", secure=secure, httponly=True, samesite="Lax"
        )

    # --- sign-in -----------------------------------------------------------------------
    async def sign_in(
        self,
        request: web.Request,
        state: dict[str, Any],
        tokens: Tokens,
        user_id: Any,
        sid: str | None,
    ) -> BrowserRow:
        """A fresh session for a signed-in user: a new cookie value (the one used
        before sign-in is dropped with its row: no session fixation)."""
        old = request.get(SESSION_KEY)
        now = request.app[CLOCK]()
        settings = request.app[SETTINGS]
        lifetime = settings.browser_session_max_age
        expires = now + lifetime if tokens.refresh_token else min(tokens.expires_at, now + lifetime)
        cookie = secrets.token_urlsafe(32)
        async with request.app[DB_SESSIONS]() as db:
            if old is not None and old.identity is not None:
                await store.remove(db, digest(old.identity))
            await store.create(
                db,
                digest(cookie),
                self.encrypt(json.dumps(state)),
                utc(expires),
                utc(now),
                user_id=user_id,
                tokens=self.encrypt(tokens.to_json()),
                sid=sid,
            )
        session = Session(None, data=None, new=True)
        session.set_new_identity(cookie)
        session.update(state)  # marks it changed: the response sets the new cookie
        request[SESSION_KEY] = session
        row = BrowserRow(digest(cookie), user_id, tokens, 0, sid)
        request[BROWSER_ROW] = row
        return row

    async def end(self, request: web.Request, row: BrowserRow) -> None:
        async with request.app[DB_SESSIONS]() as db:
            await store.remove(db, row.id)
        request.pop(BROWSER_ROW, None)

    def with_tokens(self, row: BrowserRow, tokens: Tokens | None, version: int) -> BrowserRow:
        return replace(row, tokens=tokens, version=version, refresh_until=None)


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
    """aiohttp-session's middleware over :class:`ServerSessionStorage` with the configured key."""
    return session_middleware(ServerSessionStorage(cookie_key(settings)))


def storage_of(request: web.Request) -> ServerSessionStorage:
    from aiohttp_session import STORAGE_KEY

    storage = request[STORAGE_KEY]
    assert isinstance(storage, ServerSessionStorage)
    return storage
