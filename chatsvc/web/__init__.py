"""The browser transport: the page at ``/``, its static files, and browser sign-in.

Sign-in creates a server-side session (a ``browser_sessions`` row; the cookie
``chatsvc_session`` carries only an opaque id, :mod:`~chatsvc.web.cookie`),
either from the provider's authorization-code flow with PKCE
(:mod:`~chatsvc.web.signin`, :mod:`~chatsvc.web.oidc`) or from the development
sign-in form (:mod:`~chatsvc.web.devsignin`). The cookie is only another token
source (:mod:`~chatsvc.web.token_source`): its token goes through the same
validator and authenticator as a ``Bearer`` header. Cookie requests must also
pass the CSRF and Origin guard (:mod:`~chatsvc.web.guard`).

The pieces that sit in the request pipeline are wired by the app factory
(:func:`chatsvc.app.create_app`), where their order is visible:
:func:`session_cookie_middleware` and :func:`browser_guard` in the middleware
list, :func:`session_token` in ``TOKEN_SOURCES`` and :func:`save_session_on_upgrade`
in ``on_response_prepare``. :func:`setup_web` adds the rest: the OIDC client,
the templates and the routes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from chatsvc.keys import HTTP_CLIENT, SETTINGS
from chatsvc.web.cookie import session_cookie_middleware
from chatsvc.web.devsignin import DEV_FORM, dev_login, load_form
from chatsvc.web.guard import browser_guard
from chatsvc.web.idp import setup_idp
from chatsvc.web.oidc import OIDC, oidc_client
from chatsvc.web.page import PAGE_TEMPLATE, STATIC_DIR, index, load_page
from chatsvc.web.refresh import REFRESHER, Refresher
from chatsvc.web.signin import (
    CALLBACK_PATH,
    LOGIN_PATH,
    LOGOUT_PATH,
    TOKEN_PATH,
    callback,
    login,
    logout,
    token,
)
from chatsvc.web.token_source import save_session_on_upgrade, session_token

__all__ = [
    "browser_guard",
    "save_session_on_upgrade",
    "session_cookie_middleware",
    "session_token",
    "setup_web",
]


async def oidc_ctx(app: web.Application) -> AsyncIterator[None]:
    """Start-up: discovery and the ID-token key set now, not at the first sign-in."""
    oidc = app[OIDC]
    if oidc is not None:
        await oidc.start()
    yield


def setup_web(app: web.Application) -> None:
    """The OIDC client (none with the development issuer), the templates and the routes."""
    app[OIDC] = oidc_client(app[SETTINGS], lambda: app[HTTP_CLIENT])
    app[REFRESHER] = Refresher()
    app.cleanup_ctx.append(oidc_ctx)
    app[PAGE_TEMPLATE] = load_page()
    app[DEV_FORM] = load_form()

    app.router.add_get(LOGIN_PATH, login)
    app.router.add_post(LOGIN_PATH, dev_login)
    app.router.add_get(CALLBACK_PATH, callback)
    app.router.add_post(LOGOUT_PATH, logout)
    app.router.add_get(TOKEN_PATH, token)
    app.router.add_get("/", index)
    setup_idp(app)
    app.router.add_static("/static/", STATIC_DIR)
