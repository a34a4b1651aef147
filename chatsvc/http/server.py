"""The HTTP server ``python run.py`` runs: aiohttp's, with one change. A request
aiohttp's HTTP parser refuses (a bare CR in a header, a request line over 8 KiB,
...) is answered with problem JSON and logged as one line, never echoed.

Why a private override (checked against aiohttp 3.14.5): such a request never
reaches the application -- no middleware runs, and ``on_response_prepare`` does
not fire, since its request has no ``match_info``. ``RequestHandler.handle_error``
answers it with ``text/plain`` quoting the parser's message, which contains the
offending header line (``Authorization: Bearer <token>``) or the first bytes of
the URL (``?access_token=...``), and logs the same message with a traceback on
``aiohttp.server``. No public option replaces it: ``web.Server.__call__`` always
builds a plain ``RequestHandler`` (``handler_args`` only pass its keyword
arguments), and ``web.run_app``/``web.AppRunner`` always build a plain
``web.Server``. So, here and nowhere else:

- :class:`ProblemRequestHandler` overrides ``RequestHandler.handle_error``;
- :class:`ProblemServer` overrides ``web.Server.__call__`` to build it (with the
  keyword arguments the server keeps in its private ``_kwargs``);
- :class:`ProblemAppRunner` overrides the private ``AppRunner._make_server`` to
  serve the application through a :class:`ProblemServer`.

tests/test_logging.py sends malformed requests over a raw socket to a real
``run.py``; an aiohttp release that moves any of these fails there.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import BadHttpMethod, HttpProcessingError
from aiohttp.web_protocol import RequestHandler

from chatsvc.http.access_log import REQUEST_STARTED
from chatsvc.http.problems import HTTP_CODES, problem
from chatsvc.keys import REQUEST_ID
from chatsvc.logs import short_reason

TITLES = {400: "Bad Request", 500: "Internal Server Error", 504: "Gateway Timeout"}
DETAILS = {
    400: "The request is not valid HTTP",
    500: "Internal server error",
    504: "The request took too long",
}
CODES = {**HTTP_CODES, 500: "INTERNAL_ERROR", 504: "GATEWAY_TIMEOUT"}


class ProblemRequestHandler(RequestHandler):
    __slots__ = ()

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        """Like aiohttp's: answer ``status`` and close the connection; but the answer is
        problem JSON naming no part of the request, and a parser error is one log line."""
        if request.get(REQUEST_ID) is None:
            request[REQUEST_ID] = uuid.uuid4().hex
        if isinstance(exc, HttpProcessingError):
            # aiohttp logs a non-HTTP first line (TLS on the HTTP port, a scanner) at debug.
            level = logging.DEBUG if isinstance(exc, BadHttpMethod) else logging.WARNING
            self.logger.log(
                level,
                "event=bad_request status=%s error=%s detail=%r request_id=%s remote=%s",
                status,
                type(exc).__name__,
                short_reason(exc),
                request[REQUEST_ID],
                request.remote,
            )
        else:
            self.logger.error(
                "event=request_failed status=%s request_id=%s remote=%s",
                status,
                request[REQUEST_ID],
                request.remote,
                exc_info=exc,
            )
        # Some of a response already went out: the connection is broken, as in aiohttp.
        if request.writer.output_size > 0:
            raise ConnectionError(
                "Response is sent already, cannot send another response with the error message"
            )
        response = problem(
            request,  # type: ignore[arg-type]  # a BaseRequest is mapping enough
            status,
            TITLES.get(status, "HTTP Error"),
            DETAILS.get(status, "The request failed"),
            CODES.get(status, "HTTP_ERROR"),
        )
        # on_response_prepare does not run for this request: add the id here.
        response.headers["X-Request-ID"] = request[REQUEST_ID]
        response.force_close()
        return response


class ProblemServer(web.Server):
    def __init__(self, handler: Any, *, request_factory: Any = None, **kwargs: Any) -> None:
        super().__init__(handler, request_factory=request_factory, **kwargs)
        built = self.request_factory

        def timed_request(*args: Any) -> web.BaseRequest:
            request = built(*args)
            request[REQUEST_STARTED] = time.perf_counter()
            return request

        self.request_factory = timed_request

    def __call__(self) -> RequestHandler:
        return ProblemRequestHandler(self, loop=self._loop, **self._kwargs)


class ProblemAppRunner(web.AppRunner):
    async def _make_server(self) -> web.Server:
        plain = await super()._make_server()  # starts the application up
        return ProblemServer(
            plain.request_handler,
            request_factory=plain.request_factory,
            handler_cancellation=plain.handler_cancellation,
            loop=asyncio.get_running_loop(),
            **plain._kwargs,
        )
