"""The structured access log: one line per request, never the query string
(WebSocket upgrades may carry ``access_token`` there).

The path is the one the client sent, still percent-encoded (``request.raw_path``
up to ``?``), and every byte of it outside a small safe set is percent-encoded
too -- ``=`` and ``"`` included -- so a path can neither break the line (``%0a``
stays the three characters ``%0a``; a NUL is never decoded) nor imitate another
field (``/x%20event=access_denied`` is logged as ``/x%20event%3Daccess_denied``).
"""

from __future__ import annotations

import time as clock

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from chatsvc.http.forwarded import client_ip
from chatsvc.keys import PRINCIPAL, REQUEST_ID

# Set by chatsvc.http.server when the request is built: a perf_counter() stamp,
# finer than the loop clock aiohttp passes (uvloop's counts whole milliseconds).
REQUEST_STARTED = web.RequestKey("chatsvc_request_started", float)

_PATH_SAFE = frozenset(
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~!$&'()*+,;:@/%"
)


def loggable_path(raw_path: str) -> str:
    """``raw_path`` without its query or fragment, with every unsafe byte percent-encoded."""
    path = raw_path.split("?", 1)[0].split("#", 1)[0]
    data = path.encode("utf-8", "surrogateescape")
    if all(byte in _PATH_SAFE for byte in data):
        return path
    return "".join(chr(byte) if byte in _PATH_SAFE else f"%{byte:02X}" for byte in data)


def duration_ms(seconds: float) -> str:
    """Milliseconds to the precision a request timing has: ``0.48``, ``12.3``, ``482``."""
    ms = max(seconds, 0.0) * 1000
    if ms < 10:
        return f"{ms:.2f}"
    if ms < 100:
        return f"{ms:.1f}"
    return f"{ms:.0f}"


class AccessLogger(AbstractAccessLogger):
    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        principal = request.get(PRINCIPAL)
        started = request.get(REQUEST_STARTED)
        elapsed = clock.perf_counter() - started if started is not None else time
        self.logger.info(
            "event=http method=%s path=%s status=%s duration_ms=%s request_id=%s user_id=%s remote=%s",
            request.method,
            loggable_path(request.raw_path),
            response.status,
            duration_ms(elapsed),
            request.get(REQUEST_ID, "-"),
            principal.user_id if principal else "-",
            client_ip(request),
        )
