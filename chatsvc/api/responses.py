"""JSON responses (orjson: UUIDs and aware datetimes serialise natively)."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web


def dumps(data: Any) -> bytes:
    return orjson.dumps(data)


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


def no_content() -> web.Response:
    return web.Response(status=204)
