"""The built-in web chat page, ``GET /``.

The page is ``static/index.html`` with the session's CSRF token rendered into its
``<meta name="csrf-token">``; ``app.js`` sends it back as ``X-CSRF-Token``.
"""

from __future__ import annotations

import html
from pathlib import Path

from aiohttp import web
from aiohttp_session import get_session

from chatsvc.web.responses import redirect
from chatsvc.web.session import S_END_SESSION, csrf_token

STATIC_DIR = Path(__file__).parent / "static"
CSRF_PLACEHOLDER = "{{ csrf_token }}"
PAGE_CSP = "default-src 'self'; connect-src 'self'; object-src 'none'; frame-ancestors 'none'"
PAGE_TEMPLATE = web.AppKey[str]("page_template")


def load_page() -> str:
    return (STATIC_DIR / "index.html").read_text(encoding="utf-8")


async def index(request: web.Request) -> web.Response:
    session = await get_session(request)
    end_session = session.pop(S_END_SESSION, None)
    if isinstance(end_session, str):
        # Right after logout: on to the provider's end-session endpoint (RP-initiated
        # logout), which sends the browser back here.
        raise redirect(end_session)
    token = await csrf_token(request)
    body = request.app[PAGE_TEMPLATE].replace(CSRF_PLACEHOLDER, html.escape(token))
    response = web.Response(text=body, content_type="text/html")
    response.headers["Cache-Control"] = "no-store"  # the page carries a per-session token
    response.headers["Content-Security-Policy"] = PAGE_CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    return response
