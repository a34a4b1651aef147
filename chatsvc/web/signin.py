"""Sign-in with Okta (the authorization-code flow with PKCE) and sign-out:
``GET /auth/login``, ``GET /auth/callback`` and ``POST /auth/logout``."""

from __future__ import annotations

import hmac
import logging

from aiohttp import web
from aiohttp_session import get_session
from authlib.common.security import generate_token  # type: ignore[import-untyped]

from chatsvc.auth.tokens import InvalidToken, KeysUnavailable
from chatsvc.errors import ChatError, NotFound, ServiceUnavailable
from chatsvc.keys import AUTHENTICATOR, CLOCK, DEV_ISSUER, REQUEST_ID, SETTINGS
from chatsvc.web.devsignin import dev_login_form
from chatsvc.web.oidc import OIDC, OidcClient, TokenRefused
from chatsvc.web.responses import no_store, redirect
from chatsvc.web.session import S_LOGIN, store_tokens

log = logging.getLogger("chatsvc.auth.browser")

LOGIN_PATH = "/auth/login"
CALLBACK_PATH = "/auth/callback"
LOGOUT_PATH = "/auth/logout"


class SignInFailed(ChatError):
    status, code, title = 400, "SIGN_IN_FAILED", "Bad Request"


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
    """``POST /auth/logout`` (CSRF-checked by :func:`chatsvc.web.guard.browser_guard`): drop the cookie."""
    session = await get_session(request)
    session.invalidate()
    return no_store(web.Response(status=204))
