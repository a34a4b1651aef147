"""Request ids and RFC 9457 problem responses.

Two middlewares: ``request_context`` (outermost) gives every request an id, and
``problem_middleware`` turns every error -- domain errors, aiohttp's HTTP errors,
database failures, anything unexpected -- into problem JSON. Denials are audited
here, once, whatever route raised them. No stack trace or SQL leaves the process.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from typing import Any

import orjson
from aiohttp import web
from aiohttp.typedefs import Handler
from sqlalchemy.exc import SQLAlchemyError

from chatsvc.errors import (
    AccessDenied,
    ChatError,
    RateLimited,
    ServiceUnavailable,
    Unauthenticated,
    ValidationFailed,
)
from chatsvc.http.forwarded import client_ip
from chatsvc.keys import ACTION, AUDIT, METRICS, PRINCIPAL, REQUEST_ID, RESOURCE_ID

log = logging.getLogger("chatsvc.http")

_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
REALM = 'Bearer realm="chatsvc"'

HTTP_CODES = {
    400: "BAD_REQUEST",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    413: "PAYLOAD_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
}


def problem(
    request: web.Request,
    status: int,
    title: str,
    detail: str,
    code: str,
    errors: list[dict[str, str]] | None = None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    body: dict[str, Any] = {
        "type": f"urn:chatsvc:problem:{code.lower().replace('_', '-')}",
        "title": title,
        "status": status,
        "detail": detail,
        "code": code,
        "request_id": request.get(REQUEST_ID, ""),
    }
    if errors is not None:
        body["errors"] = errors
    return web.Response(
        body=orjson.dumps(body),
        status=status,
        content_type="application/problem+json",
        headers=headers,
    )


def _chat_error_response(request: web.Request, exc: ChatError) -> web.Response:
    headers: dict[str, str] = {}
    errors = None
    if isinstance(exc, Unauthenticated):
        headers["WWW-Authenticate"] = (
            f'{REALM}, error="invalid_token"' if exc.invalid_token else REALM
        )
    elif isinstance(exc, AccessDenied):
        action = exc.action or request.get(ACTION)
        if action is not None:
            request.app[AUDIT].deny(
                request.get(PRINCIPAL),
                action,
                exc.detail,
                resource_id=request.get(RESOURCE_ID),
                request_id=request.get(REQUEST_ID),
                client_ip=client_ip(request),
            )
    elif isinstance(exc, RateLimited):
        headers["Retry-After"] = str(exc.retry_after)
    elif isinstance(exc, ValidationFailed):
        errors = [{"field": e.field, "message": e.message} for e in exc.errors]
    return problem(request, exc.status, exc.title, exc.detail, exc.code, errors, headers)


@web.middleware
async def request_context(request: web.Request, handler: Handler) -> web.StreamResponse:
    incoming = request.headers.get("X-Request-ID", "")
    request[REQUEST_ID] = incoming if _VALID_REQUEST_ID.match(incoming) else uuid.uuid4().hex
    metrics = request.app[METRICS]
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        info = request.match_info.route.resource
        route = info.canonical if info is not None else "unmatched"
        metrics.requests.labels(request.method, route, str(status)).inc()
        metrics.latency.labels(route).observe(time.perf_counter() - started)


@web.middleware
async def problem_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ChatError as exc:
        return _chat_error_response(request, exc)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = HTTP_CODES.get(exc.status, "HTTP_ERROR")
        detail = exc.reason
        if exc.status == 413:
            detail = "Request body is too large"
        response = problem(request, exc.status, exc.reason, detail, code)
        for name in ("Allow", "Retry-After"):
            if name in exc.headers:
                response.headers[name] = exc.headers[name]
        return response
    except (SQLAlchemyError, OSError) as exc:
        log.warning(
            "event=db_unavailable request_id=%s error=%s",
            request.get(REQUEST_ID),
            type(exc).__name__,
        )
        err = ServiceUnavailable("Database unavailable")
        return problem(request, err.status, err.title, err.detail, err.code)
    except Exception as exc:
        tb = exc.__traceback__
        while tb is not None and tb.tb_next is not None:
            tb = tb.tb_next
        where = f"{tb.tb_frame.f_code.co_filename.rsplit('/', 1)[-1]}:{tb.tb_lineno}" if tb else "?"
        log.error(
            "event=unhandled_error request_id=%s error=%s where=%s",
            request.get(REQUEST_ID),
            type(exc).__name__,
            where,
        )
        return problem(
            request, 500, "Internal Server Error", "Internal server error", "INTERNAL_ERROR"
        )


async def add_request_id_header(request: web.Request, response: web.StreamResponse) -> None:
    """``on_response_prepare``: the id also reaches WebSocket upgrade and static responses."""
    request_id = request.get(REQUEST_ID)
    if request_id:
        response.headers["X-Request-ID"] = request_id
