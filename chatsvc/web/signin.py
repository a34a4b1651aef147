"""Sign-in with the OpenID provider (the authorization-code flow with PKCE) and
sign-out: ``GET /auth/login``, ``GET /auth/callback``, ``POST /auth/logout`` and
``GET /auth/token`` (the page's fresh access token, for renewing its socket).

A failed sign-in answers a plain HTML page (never problem JSON, never a token
or code). Logout ends the server-side session everywhere, revokes the refresh
token at the provider (RFC 7009) and sends the browser on to the provider's
end-session endpoint (RP-initiated logout) at its next page load."""

from __future__ import annotations

import hmac
import html
import logging
from pathlib import Path
from string import Template
from typing import Any

from aiohttp import web
from aiohttp_session import get_session
from authlib.common.security import generate_token  # type: ignore[import-untyped]

from chatsvc.auth.tokens import InvalidToken, KeysUnavailable
from chatsvc.errors import ChatError, NotFound, ServiceUnavailable, Unauthenticated
from chatsvc.http.forwarded import public_origin
from chatsvc.keys import AUTHENTICATOR, CLOCK, DEV_ISSUER, REQUEST_ID, SETTINGS
from chatsvc.service.identity import Profile
from chatsvc.web.cookie import BROWSER_ROW, BrowserRow, Tokens, storage_of
from chatsvc.web.devsignin import dev_login_form
from chatsvc.web.oidc import OIDC, OidcClient, TokenRefused
from chatsvc.web.refresh import refresh_margin
from chatsvc.web.responses import no_store, redirect
from chatsvc.web.session import (
    CSRF_HEADER,
    S_END_SESSION,
    S_LOGIN,
    check_csrf,
    start_session,
)
from chatsvc.web.token_source import current_tokens

log = logging.getLogger("chatsvc.auth.browser")

LOGIN_PATH = "/auth/login"
CALLBACK_PATH = "/auth/callback"
LOGOUT_PATH = "/auth/logout"
TOKEN_PATH = "/auth/token"  # noqa: S105 - a path
ERROR_PAGE = Template(
    (Path(__file__).parent / "templates" / "sign_in_error.html").read_text(encoding="utf-8")
)
ERROR_PAGE_CSP = "default-src 'self'; object-src 'none'; frame-ancestors 'none'"


class SignInFailed(ChatError):
    status, code, title = 400, "SIGN_IN_FAILED", "Bad Request"


def oidc_of(request: web.Request) -> OidcClient:
    oidc = request.app.get(OIDC)
    if oidc is None:
        raise NotFound("Browser sign-in is not configured (CHATSVC_OKTA_CLIENT_ID is not set)")
    return oidc


def error_page(request: web.Request, error: ChatError) -> web.Response:
    body = ERROR_PAGE.substitute(
        code=html.escape(error.code),
        detail=html.escape(error.detail),
        request_id=html.escape(request.get(REQUEST_ID) or ""),
    )
    response = web.Response(status=error.status, text=body, content_type="text/html")
    response.headers["Content-Security-Policy"] = ERROR_PAGE_CSP
    response.headers["Referrer-Policy"] = "no-referrer"  # the callback URL holds the code
    response.headers["X-Content-Type-Options"] = "nosniff"
    return no_store(response)


def own_origin(request: web.Request) -> str:
    return public_origin(request)


async def login(request: web.Request) -> web.StreamResponse:
    """``GET /auth/login``: off to the provider, or the development form."""
    if request.app[DEV_ISSUER] is not None:
        return await dev_login_form(request)
    oidc = oidc_of(request)
    try:
        endpoints = await oidc.endpoints()
    except ServiceUnavailable as exc:
        return error_page(request, exc)
    state, nonce, verifier = generate_token(32), generate_token(32), generate_token(64)
    redirect_uri = f"{own_origin(request)}{CALLBACK_PATH}"
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
    """``GET /auth/callback``: the failures answer a page, not problem JSON."""
    oidc = oidc_of(request)
    try:
        return await _callback(request, oidc)
    except (SignInFailed, ServiceUnavailable) as exc:
        return error_page(request, exc)


def _matches(supplied: Any, expected: Any) -> bool:
    return (
        isinstance(supplied, str)
        and bool(supplied)
        and hmac.compare_digest(supplied.encode(), str(expected).encode())
    )


def _string(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _groups(value: Any) -> list[str] | None:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [g for g in value if isinstance(g, str)]
    return None


async def _callback(request: web.Request, oidc: OidcClient) -> web.StreamResponse:
    session = await get_session(request)
    pending = session.pop(S_LOGIN, None)  # single use, whatever happens next
    query = request.query
    endpoints = await oidc.endpoints()
    # RFC 9207: the response names its issuer; a mix-up attack names another.
    if ("iss" in query or endpoints.iss_parameter) and query.get("iss") != oidc.issuer:
        log.info("event=sign_in_refused reason=iss_mismatch")
        raise SignInFailed("The sign-in response came from another identity provider")
    if "error" in query:
        log.info("event=sign_in_refused error=%r", query["error"][:100])
        raise SignInFailed(f"The identity provider refused sign-in: {query['error'][:100]}")
    if not isinstance(pending, dict) or not _matches(query.get("state"), pending.get("state")):
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
    access_token = tokens["access_token"]
    id_token = tokens.get("id_token")
    try:
        claims = await request.app[AUTHENTICATOR].validator.validate(access_token)
        if not isinstance(id_token, str):
            raise InvalidToken("no_id_token")
        id_claims = await oidc.id_tokens.validate(id_token)
    except InvalidToken as exc:
        log.info("event=sign_in_token_rejected reason=%s", exc.reason)
        raise SignInFailed("The identity provider returned an unacceptable token") from None
    except KeysUnavailable:
        raise ServiceUnavailable("Identity provider keys are unavailable") from None
    if not _matches(id_claims.get("nonce"), pending["nonce"]):
        log.info("event=sign_in_token_rejected reason=nonce")
        raise SignInFailed("The ID token's nonce does not match; please sign in again")
    if id_claims.get("sub") != claims.get("sub"):
        log.info("event=sign_in_token_rejected reason=subject_mismatch")
        raise SignInFailed("The identity provider returned tokens for two different users")

    profile = await _profile(oidc, access_token, claims, id_claims)
    refresh = tokens.get("refresh_token")
    stored = Tokens(
        access_token=access_token,
        expires_at=int(claims["exp"]),
        issued_at=int(claims.get("iat", request.app[CLOCK]())),
        refresh_token=refresh if isinstance(refresh, str) else None,
        id_token=id_token,
        email=profile.email,
        groups=list(profile.groups) if profile.groups is not None else None,
    )
    try:
        await start_session(request, stored, profile, _string(id_claims.get("sid")))
    except Unauthenticated:
        raise SignInFailed("The identity provider returned an unacceptable token") from None
    log.info("event=signed_in method=oidc request_id=%s", request.get(REQUEST_ID))
    raise redirect("/")


async def _profile(
    oidc: OidcClient, access_token: str, claims: dict[str, Any], id_claims: dict[str, Any]
) -> Profile:
    """Email and groups where the access token lacks them: the validated ID token,
    then userinfo. Groups come from where ``okta_groups_source`` says."""
    claim = oidc.groups_claim
    email = _string(id_claims.get("email"))
    groups = _groups(id_claims.get(claim)) if oidc.groups_source == "id_token" else None
    lacks_email = not _string(claims.get("email")) and email is None
    wants_userinfo = oidc.groups_source == "userinfo" and claim not in claims
    if lacks_email or wants_userinfo:
        info = await oidc.userinfo(access_token)
        if info is not None and info.get("sub") == claims.get("sub"):
            email = email or _string(info.get("email"))
            if oidc.groups_source == "userinfo":
                groups = _groups(info.get(claim))
    return Profile(email, tuple(groups) if groups is not None else None)


async def logout(request: web.Request) -> web.StreamResponse:
    """``POST /auth/logout`` (CSRF-checked by :func:`chatsvc.web.guard.browser_guard`):
    end the session everywhere, revoke its refresh token, then the provider's logout."""
    session = await get_session(request)
    row: BrowserRow | None = request.get(BROWSER_ROW)
    end_session: str | None = None
    if row is not None:
        await storage_of(request).end(request, row)
        oidc = request.app.get(OIDC)
        if row.tokens is not None and oidc is not None:
            if row.tokens.refresh_token:
                await oidc.revoke(row.tokens.refresh_token, "refresh_token")
            redirect_to = request.app[SETTINGS].okta_post_logout_redirect_uri
            end_session = await oidc.end_session_url(
                row.tokens.id_token, redirect_to or f"{own_origin(request)}/"
            )
    session.invalidate()
    if end_session is not None:
        # The page reloads after logout: that load continues to the provider.
        session[S_END_SESSION] = end_session
    log.info("event=signed_out request_id=%s", request.get(REQUEST_ID))
    return no_store(web.Response(status=204))


async def token(request: web.Request) -> web.Response:
    """``GET /auth/token`` (same origin, ``X-CSRF-Token`` required): the session's
    access token, refreshed when due, for renewing the page's socket in place."""
    await check_csrf(request, request.headers.get(CSRF_HEADER))
    tokens = await current_tokens(request)
    if tokens is None:
        raise Unauthenticated()
    margin = refresh_margin(request.app[SETTINGS], tokens)
    body = {
        "access_token": tokens.access_token,
        "expires_at": tokens.expires_at,
        # When to ask again: inside the refresh margin, where a new token is issued.
        "renew_at": tokens.expires_at - margin / 2 if tokens.refresh_token else None,
    }
    return no_store(web.json_response(body))
