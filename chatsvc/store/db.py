"""Engine and session factory for SQLite (default) and PostgreSQL, and the
``setup_database`` hook that owns them for the application's lifetime."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web
from sqlalchemy import event, make_url, text
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from chatsvc.keys import DB_ENGINE, DB_SESSIONS, SETTINGS
from chatsvc.settings import Settings
from chatsvc.store.values import JSON_CODEC

log = logging.getLogger("chatsvc.store")


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


def _create_private(path: str | None) -> None:
    """Create the SQLite file readable by its owner only (messages, audit, sessions
    live in it); SQLite gives its -wal and -shm files the same mode."""
    if not path or path == ":memory:" or os.path.exists(path):
        return
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


def create_engine(settings: Settings) -> AsyncEngine:
    url = settings.effective_database_url
    if settings.is_sqlite:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        _create_private(make_url(url).database)
        # SQLite has one writer at a time. A single pooled connection queues
        # transactions in asyncio instead of letting a read transaction fail to
        # upgrade to a write (SQLITE_BUSY) under concurrent senders.
        engine = create_async_engine(
            url,
            pool_size=1,
            max_overflow=0,
            pool_timeout=settings.db_timeout * 6,
            connect_args={"timeout": settings.db_timeout},
            **JSON_CODEC,
        )
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    return create_async_engine(
        url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_pool_size,
        pool_pre_ping=True,
        pool_timeout=settings.db_timeout,
        connect_args={"timeout": settings.db_timeout, "command_timeout": settings.db_timeout * 6},
        **JSON_CODEC,
    )


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


async def database_ready(engine: AsyncEngine) -> bool:
    try:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
    except Exception as exc:  # any driver failure means "not ready"
        log.warning("event=db_unreachable error=%s", type(exc).__name__)
        return False
    return True


async def database_ctx(app: web.Application) -> AsyncIterator[None]:
    engine = create_engine(app[SETTINGS])
    app[DB_ENGINE] = engine
    app[DB_SESSIONS] = create_sessionmaker(engine)
    yield
    await engine.dispose()


def setup_database(app: web.Application) -> None:
    app.cleanup_ctx.append(database_ctx)
