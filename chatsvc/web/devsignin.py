"""The development sign-in form (development issuer only): ``GET /auth/login``
shows it, ``POST /auth/login`` mints a token into a new server-side session."""

from __future__ import annotations

import html
import logging
from pathlib import Path
from string import Template

from aiohttp import web

from chatsvc.errors import NotFound, ValidationFailed
from chatsvc.keys import AUTHENTICATOR, DEV_ISSUER, REQUEST_ID, SETTINGS
from chatsvc.settings import Settings
from chatsvc.web.cookie import Tokens
from chatsvc.web.responses import no_store, redirect
from chatsvc.web.session import CSRF_FIELD, check_csrf, csrf_token, start_session

log = logging.getLogger("chatsvc.auth.browser")

FORM_FILE = Path(__file__).parent / "templates" / "dev_signin.html"
DEV_FORM = web.AppKey[Template]("dev_form")  # ``$csrf`` and ``$groups``, read at set-up
DEV_GROUP = Template(
    '          <label class="checkbox"><input type="checkbox" name="groups" value="$value"$checked>'
    " $value</label>"
)
DEV_FORM_CSP = "default-src 'self'; form-action 'self'; object-src 'none'; frame-ancestors 'none'"


def load_form() -> Template:
    return Template(FORM_FILE.read_text(encoding="utf-8"))


def dev_groups(settings: Settings) -> list[str]:
    """The groups the form offers: every group the level mapping knows."""
    groups = [*settings.groups_read, *settings.groups_write, *settings.groups_admin]
    return list(dict.fromkeys(groups))


async def dev_login_form(request: web.Request) -> web.Response:
    token = await csrf_token(request)
    offered = dev_groups(request.app[SETTINGS])
    default = request.app[SETTINGS].groups_write[:1]
    groups = "\n".join(
        DEV_GROUP.substitute(value=html.escape(g), checked=" checked" if g in default else "")
        for g in offered
    )
    body = request.app[DEV_FORM].substitute(csrf=html.escape(token), groups=groups)
    response = web.Response(text=body, content_type="text/html")
    response.headers["Content-Security-Policy"] = DEV_FORM_CSP
    return no_store(response)


async def dev_login(request: web.Request) -> web.StreamResponse:
    """``POST /auth/login`` (development issuer only): mint a token, set the cookie."""
    dev = request.app[DEV_ISSUER]
    if dev is None:
        raise NotFound("Development sign-in is only available without an Okta issuer")
    form = await request.post()
    supplied = form.get(CSRF_FIELD)
    await check_csrf(request, supplied if isinstance(supplied, str) else None)
    email = form.get("email")
    email = email.strip() if isinstance(email, str) else ""
    if not email or len(email) > 254 or any(ch.isspace() for ch in email):
        raise ValidationFailed("email: a user name or email is required")
    offered = dev_groups(request.app[SETTINGS])
    groups = [g for g in form.getall("groups", []) if isinstance(g, str)]
    unknown = [g for g in groups if g not in offered]
    if unknown:
        raise ValidationFailed(f"groups: unknown group {unknown[0]!r}")
    token = dev.mint(email, groups, ttl=int(request.app[SETTINGS].dev_sign_in_ttl))
    claims = await request.app[AUTHENTICATOR].validator.validate(token)
    tokens = Tokens(token, int(claims["exp"]), int(claims["iat"]))
    await start_session(request, tokens, None, None)
    log.info("event=signed_in method=dev_issuer request_id=%s", request.get(REQUEST_ID))
    raise redirect("/", web.HTTPSeeOther)
