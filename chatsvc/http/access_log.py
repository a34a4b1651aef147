"""The structured access log: one line per request, never the query string
(WebSocket upgrades may carry ``access_token`` there)."""

from __future__ import annotations

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from chatsvc.keys import PRINCIPAL, REQUEST_ID


class AccessLogger(AbstractAccessLogger):
    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        principal = request.get(PRINCIPAL)
        self.logger.info(
            "event=http method=%s path=%s status=%s duration_ms=%.2f request_id=%s user_id=%s remote=%s",
            request.method,
            request.rel_url.path,
            response.status,
            time * 1000,
            request.get(REQUEST_ID, "-"),
            principal.user_id if principal else "-",
            request.remote,
        )
