"""The REST API: thin handlers (parse -> use case -> answer), declared in one table."""

from __future__ import annotations

from aiohttp import web

from chatsvc.api.routes import ROUTES
from chatsvc.api.routing import mount


def setup_routes(app: web.Application) -> None:
    mount(app, ROUTES)
