"""What the identity provider calls to end or change a user's access at once.

- Universal Logout (``POST /api/idp/global-token-revocation``, Okta's Global Token
  Revocation): a JWT signed by the logout issuer (the Okta org) names a user by
  email or by issuer and subject; their tokens, browser sessions and sockets end.
- OIDC Back-Channel Logout (``POST /auth/backchannel-logout``): a logout token from
  the Okta issuer ends the browser sessions of one IdP session (``sid``) or of
  one user (``sub``), and the sockets opened through them.
- Okta Event Hooks (``GET|POST /api/idp/okta-event-hook``): group membership
  changes, deactivation, suspension and session clearing, authenticated by a
  shared secret.

The decisions live in :mod:`chatsvc.service.revocation`; this module checks the
caller, reads the request and answers. Every token here is validated by the same
:class:`~chatsvc.auth.tokens.TokenValidator` as access tokens, against the keys
of the issuer that signs it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from typing import Annotated, Any, Literal

from aiohttp import web
from cryptography.fernet import InvalidToken as InvalidCiphertext
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy.exc import SQLAlchemyError

from chatsvc.auth.tokens import (
    HttpKeySource,
    InvalidToken,
    KeySource,
    KeysUnavailable,
    StaticKeySource,
    TokenValidator,
)
from chatsvc.errors import NotFound, ServiceUnavailable, Unauthenticated, ValidationFailed
from chatsvc.http.forwarded import client_ip, public_origin
from chatsvc.http.identity import bearer_token, own_authentication
from chatsvc.keys import AUTHENTICATOR, DEV_ISSUER, HTTP_CLIENT, REQUEST_ID, REVOKER, SETTINGS
from chatsvc.service.revocation import NotCarriedOut, Origin
from chatsvc.settings import Settings
from chatsvc.store.revocations import EndedSession, NamedUser
from chatsvc.web.cookie import ServerSessionStorage, Tokens, cookie_key
from chatsvc.web.oidc import OIDC

log = logging.getLogger("chatsvc.idp")

GLOBAL_LOGOUT_PATH = "/api/idp/global-token-revocation"
BACKCHANNEL_PATH = "/auth/backchannel-logout"
EVENT_HOOK_PATH = "/api/idp/okta-event-hook"
BACKCHANNEL_EVENT = "http://schemas.openid.net/event/backchannel-logout"
# The audience of logout tokens when the development issuer mints them.
DEV_CLIENT_ID = "chatsvc-dev"

LOGOUT_VALIDATOR = web.AppKey[TokenValidator]("logout_validator")
STORAGE = web.AppKey[ServerSessionStorage]("idp_session_storage")
BACKGROUND = web.AppKey[set[asyncio.Task[None]]]("idp_background")


def client_id(settings: Settings) -> str | None:
    """The ``aud`` of the logout tokens this service accepts (None: browser sign-in off)."""
    if settings.dev_issuer:
        return settings.okta_client_id or DEV_CLIENT_ID
    return settings.okta_client_id


def endpoint_url(request: web.Request, path: str) -> str:
    """This endpoint's public URL, the ``aud`` a logout request must name:
    ``CHATSVC_PUBLIC_URL`` (with any path prefix) + the path. Without it (development
    and tests) the request's own origin; in production Universal Logout is off
    without it, since a ``Host`` header must not choose the audience."""
    public = request.app[SETTINGS].public_url
    if public:
        return public.rstrip("/") + path
    return public_origin(request) + path


@contextlib.contextmanager
def _database(where: str) -> Iterator[None]:
    """A database failure here: one log line and 503 (the IdP retries)."""
    try:
        yield
    except (SQLAlchemyError, OSError) as exc:
        log.warning("event=db_unavailable where=%s error=%s", where, type(exc).__name__)
        raise ServiceUnavailable("Database unavailable") from None


def _origin(request: web.Request, source: str) -> Origin:
    return Origin(source, request.get(REQUEST_ID), client_ip(request))


# --- Universal Logout --------------------------------------------------------------


class EmailSubject(BaseModel):
    model_config = ConfigDict(extra="allow")
    format: Literal["email"]
    email: str = Field(min_length=3, max_length=320, pattern=r"^[^@\s]+@[^@\s]+$")


class IssSubSubject(BaseModel):
    model_config = ConfigDict(extra="allow")
    format: Literal["iss_sub"]
    iss: str = Field(min_length=1, max_length=512)
    sub: str = Field(min_length=1, max_length=255)


class RevocationRequest(BaseModel):
    """RFC 9493 subject identifiers, the two formats Okta sends."""

    model_config = ConfigDict(extra="allow")
    sub_id: Annotated[EmailSubject | IssSubSubject, Field(discriminator="format")]


async def _validate(
    validator: TokenValidator, token: str, audience: str, *, require_sub: bool
) -> dict[str, Any]:
    try:
        return await validator.validate_for(
            token, audience, require_sub=require_sub, require_jti=True
        )
    except KeysUnavailable:
        raise ServiceUnavailable("Identity provider keys are unavailable") from None


async def _first_use(request: web.Request, claims: dict[str, Any]) -> bool:
    with _database("logout_token"):
        return await request.app[REVOKER].first_use(claims["iss"], claims["jti"], claims["exp"])


@contextlib.asynccontextmanager
async def _spent_on_success(request: web.Request, claims: dict[str, Any]) -> AsyncIterator[None]:
    """The token id stays spent unless what it asked for failed for our side (the
    database): then the IdP's retry with the same token must not be a replay."""
    try:
        yield
    except (NotCarriedOut, ServiceUnavailable):
        await request.app[REVOKER].forget_use(claims["iss"], claims["jti"])
        raise


def _body_errors(exc: ValidationError) -> str:
    errors = exc.errors(include_url=False, include_input=False)
    if not errors:
        return "invalid"
    where = ".".join(str(part) for part in errors[0]["loc"]) or "body"
    return f"{where}: {errors[0]['msg']}"


@own_authentication
async def global_token_revocation(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    if settings.env == "production" and not settings.public_url:
        raise NotFound("Universal Logout needs CHATSVC_PUBLIC_URL")
    token = bearer_token(request)
    if token is None:
        raise Unauthenticated()
    try:
        claims = await _validate(
            request.app[LOGOUT_VALIDATOR],
            token,
            endpoint_url(request, GLOBAL_LOGOUT_PATH),
            require_sub=False,
        )
    except InvalidToken as exc:
        log.info("event=logout_request_rejected reason=%s", exc.reason)
        raise Unauthenticated("Invalid logout request token", invalid_token=True) from None
    if not await _first_use(request, claims):
        log.warning("event=logout_request_rejected reason=replayed_jti")
        raise Unauthenticated("Logout request token already used", invalid_token=True)
    try:
        body = RevocationRequest.model_validate_json(await request.read())
    except ValidationError as exc:
        raise ValidationFailed(f"Invalid revocation request ({_body_errors(exc)})") from None
    revoker = request.app[REVOKER]
    subject = body.sub_id
    async with _spent_on_success(request, claims):
        with _database("global_logout"):
            if isinstance(subject, EmailSubject):
                users = await revoker.users_by_email(subject.email)
            elif subject.iss.rstrip("/") in {
                settings.issuer.rstrip("/"),
                settings.effective_logout_issuer.rstrip("/"),
            }:
                users = await revoker.users_by_subject(subject.sub)
            else:
                users = []  # a subject of another issuer names nobody here
        if not users:
            raise NotFound("No such user")
        ended = await revoker.revoke(
            users,
            _origin(request, "universal_logout"),
            "Universal Logout from the identity provider",
        )
    _revoke_refresh_tokens(request.app, ended)
    return web.Response(status=204)


# --- Back-Channel Logout -----------------------------------------------------------


def _logout_error(description: str) -> web.Response:
    # OIDC Back-Channel Logout 1.0, section 2.8: a JSON error body, not cached.
    return web.json_response(
        {"error": "invalid_request", "error_description": description},
        status=400,
        headers={"Cache-Control": "no-store"},
    )


async def backchannel_logout(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    audience = client_id(settings)
    if audience is None:
        raise NotFound("Browser sign-in is not configured")
    form = await request.post()
    token = form.get("logout_token")
    if not isinstance(token, str) or not token:
        return _logout_error("logout_token is required")
    try:
        claims = await _validate(
            request.app[AUTHENTICATOR].validator, token, audience, require_sub=False
        )
    except InvalidToken as exc:
        log.info("event=logout_token_rejected reason=%s", exc.reason)
        return _logout_error("Invalid logout token")
    events = claims.get("events")
    sub, sid = claims.get("sub"), claims.get("sid")
    if not isinstance(events, dict) or not isinstance(events.get(BACKCHANNEL_EVENT), dict):
        return _logout_error("Not a back-channel logout token")
    if "nonce" in claims:
        return _logout_error("A logout token carries no nonce")
    if not isinstance(sub, str | None) or not isinstance(sid, str | None) or not (sub or sid):
        return _logout_error("A logout token names a sub or a sid")
    if not await _first_use(request, claims):
        log.warning("event=logout_token_rejected reason=replayed_jti")
        return _logout_error("Logout token already used")
    revoker = request.app[REVOKER]
    async with _spent_on_success(request, claims):
        with _database("backchannel_logout"):
            users: list[NamedUser] | None = None
            if sub:
                users = await revoker.users_by_subject(sub)
            ended = [] if users == [] else await revoker.end_browser_sessions(sid=sid, users=users)
    _revoke_refresh_tokens(request.app, ended)
    return web.Response(status=200, headers={"Cache-Control": "no-store"})


# --- Okta Event Hooks ---------------------------------------------------------------

MEMBERSHIP = {"group.user_membership.add": True, "group.user_membership.remove": False}
ENDS_ACCESS = frozenset(
    {"user.lifecycle.deactivate", "user.lifecycle.suspend", "user.session.clear"}
)


def _check_hook_secret(request: web.Request) -> None:
    settings = request.app[SETTINGS]
    secret = settings.okta_event_hook_secret
    if secret is None:
        raise NotFound("Event hooks are not configured")
    supplied = request.headers.get(settings.okta_event_hook_header, "")
    if not hmac.compare_digest(supplied.encode(), secret.encode()):
        log.warning("event=event_hook_rejected reason=secret")
        raise Unauthenticated("Invalid event hook secret")


@own_authentication
async def event_hook_verification(request: web.Request) -> web.Response:
    _check_hook_secret(request)
    challenge = request.headers.get("x-okta-verification-challenge")
    if not challenge:
        raise ValidationFailed("x-okta-verification-challenge is required")
    return web.json_response({"verification": challenge})


class HookTarget(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)
    type: str = ""
    id: str | None = None
    alternate_id: str | None = Field(None, alias="alternateId")
    display_name: str | None = Field(None, alias="displayName")


class HookEvent(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)
    event_type: str = Field(alias="eventType")
    published: datetime | None = None
    target: list[HookTarget] = []


class HookData(BaseModel):
    model_config = ConfigDict(extra="allow")
    events: list[HookEvent] = Field(max_length=1000)


class HookDelivery(BaseModel):
    model_config = ConfigDict(extra="allow")
    data: HookData


def _target(event: HookEvent, kind: str) -> HookTarget | None:
    return next((t for t in event.target if t.type == kind), None)


async def _named(request: web.Request, user: HookTarget) -> list[NamedUser]:
    """The users an event's User target names: by Okta user id, else by login/email."""
    revoker = request.app[REVOKER]
    found = await revoker.users_by_subject(user.id) if user.id else []
    if not found and user.alternate_id:
        found = await revoker.users_by_email(user.alternate_id)
    return found


@own_authentication
async def event_hook(request: web.Request) -> web.Response:
    _check_hook_secret(request)
    try:
        delivery = HookDelivery.model_validate_json(await request.read())
    except ValidationError as exc:
        raise ValidationFailed(f"Invalid event hook delivery ({_body_errors(exc)})") from None
    settings = request.app[SETTINGS]
    mapped = {*settings.groups_read, *settings.groups_write, *settings.groups_admin}
    revoker = request.app[REVOKER]
    origin = _origin(request, "event_hook")
    for event in delivery.data.events:
        user = _target(event, "User")
        if user is None:
            continue
        cutoff = event.published.timestamp() if event.published is not None else None
        with _database("event_hook"):
            if event.event_type in MEMBERSHIP:
                group = _target(event, "UserGroup")
                name = group.display_name if group is not None else None
                if name is None or name not in mapped:
                    continue  # a group that grants nothing here changes nothing
                users = await _named(request, user)
                if users:
                    await revoker.revoke(
                        users,
                        origin,
                        f"{event.event_type} {name}",
                        cutoff=cutoff,
                        group=name,
                        added=MEMBERSHIP[event.event_type],
                    )
            elif event.event_type in ENDS_ACCESS:
                users = await _named(request, user)
                if users:
                    ended = await revoker.revoke(users, origin, event.event_type, cutoff=cutoff)
                    _revoke_refresh_tokens(request.app, ended)
            else:
                log.debug("event=event_hook_ignored type=%s", event.event_type)
    return web.Response(status=200)


# --- refresh tokens -----------------------------------------------------------------


def _revoke_refresh_tokens(app: web.Application, ended: list[EndedSession]) -> None:
    """RFC 7009, best effort and in the background: the sessions are already gone
    here, so a slow or failing IdP delays nothing and changes nothing for chatsvc."""
    oidc = app.get(OIDC)
    if oidc is None or not ended:
        return
    storage = app[STORAGE]
    refresh_tokens: list[str] = []
    for session in ended:
        if session.tokens is None:
            continue
        try:
            tokens = Tokens.from_json(storage.decrypt(session.tokens))
        except (InvalidCiphertext, ValueError, TypeError):
            continue  # written with another key: nothing to revoke
        if tokens.refresh_token:
            refresh_tokens.append(tokens.refresh_token)
    if not refresh_tokens:
        return

    async def revoke_all() -> None:
        for refresh_token in refresh_tokens:
            await oidc.revoke(refresh_token)

    task = asyncio.create_task(revoke_all(), name="revoke-refresh-tokens")
    app[BACKGROUND].add(task)
    task.add_done_callback(app[BACKGROUND].discard)


# --- wiring ---------------------------------------------------------------------------


async def idp_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    dev = app[DEV_ISSUER]
    source: KeySource
    if dev is not None and settings.logout_issuer is None:
        source = StaticKeySource(dev.jwks)
    else:
        source = HttpKeySource(
            lambda: app[HTTP_CLIENT],
            settings.effective_logout_issuer,
            settings.logout_jwks_uri,
            settings.jwks_fetch_timeout,
        )
    app[LOGOUT_VALIDATOR] = TokenValidator(
        source,
        issuer=settings.effective_logout_issuer,
        audience=GLOBAL_LOGOUT_PATH,  # every call names the request's own URL
        leeway=settings.jwt_leeway,
        min_refresh_interval=settings.jwks_min_refresh_interval,
    )
    tasks: set[asyncio.Task[None]] = set()
    app[BACKGROUND] = tasks
    yield
    pending = list(tasks)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)


def setup_idp(app: web.Application) -> None:
    # For reading the refresh tokens of ended sessions: the cookie middleware's key.
    app[STORAGE] = ServerSessionStorage(cookie_key(app[SETTINGS]))
    app.cleanup_ctx.append(idp_ctx)
    app.router.add_post(GLOBAL_LOGOUT_PATH, global_token_revocation)
    app.router.add_post(BACKCHANNEL_PATH, backchannel_logout)
    app.router.add_get(EVENT_HOOK_PATH, event_hook_verification)
    app.router.add_post(EVENT_HOOK_PATH, event_hook)
