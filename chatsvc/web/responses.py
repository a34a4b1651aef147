"""Response helpers for the sign-in routes: nothing they answer may be cached."""

from __future__ import annotations

from typing import TypeVar

from aiohttp import web

ResponseT = TypeVar("ResponseT", bound=web.StreamResponse)


def no_store(response: ResponseT) -> ResponseT:
    response.headers["Cache-Control"] = "no-store"
    return response


def redirect(location: str, status: type[web.HTTPMove] = web.HTTPFound) -> web.HTTPMove:
    return status(location=location, headers={"Cache-Control": "no-store"})
