"""The REST API: thin handlers (parse -> policy -> store -> answer)."""

from __future__ import annotations

from aiohttp import web

from chatsvc.api import audit, collaborators, health, me, messages, openapi, sessions


def setup_routes(app: web.Application) -> None:
    for module in (health, me, sessions, messages, collaborators, audit, openapi):
        module.setup(app)
