"""Engine and session factory for SQLite (default) and PostgreSQL, and the
``setup_database`` hook that owns them for the application's lifetime."""

from __future__ import annotations

import asyncio
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

from chatsvc.keys import DB_ENGINE, DB_SESSIONS, METRICS, SETTINGS
from chatsvc.settings import Settings
from chatsvc.store.values import JSON_CODEC

log = logging.getLogger("chatsvc.store")


WAL_SIZE_LIMIT = 64 * 1024 * 1024  # bytes the log keeps after a checkpoint


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT}")
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
        # A frozen server must not hold a request longer than a connect would.
        connect_args={"timeout": settings.db_timeout, "command_timeout": settings.db_timeout},
        **JSON_CODEC,
    )


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


# A write that changes nothing but must reach the disk: a full disk (SQLite), a
# read-only or frozen server (PostgreSQL) fails it, where ``SELECT 1`` would pass.
# ``alembic_version`` exists in every migrated database, so no table of its own.
WRITE_PROBE = text("UPDATE alembic_version SET version_num = version_num")


async def database_ready(engine: AsyncEngine, within: float) -> bool:
    """Whether the database takes a write within ``within`` seconds."""
    try:
        async with asyncio.timeout(within), engine.begin() as conn:
            await conn.execute(WRITE_PROBE)
    except Exception as exc:  # any driver failure or the timeout means "not ready"
        log.warning("event=db_unready error=%s", type(exc).__name__)
        return False
    return True


async def checkpoint_sqlite(engine: AsyncEngine, interval: float) -> None:
    """Fold the write-ahead log back into the database and truncate it, so freed
    space is not eaten again by an ever-growing log (autocheckpoint never truncates)."""
    while True:
        await asyncio.sleep(interval)
        try:
            async with engine.connect() as conn:
                await conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        except Exception as exc:  # the next round tries again
            log.warning("event=sqlite_checkpoint_failed error=%s", type(exc).__name__)


async def database_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    engine = create_engine(settings)
    app[DB_ENGINE] = engine
    app[DB_SESSIONS] = create_sessionmaker(engine)
    pool: Any = engine.sync_engine.pool  # QueuePool for both databases
    app[METRICS].db_pool_in_use.set_function(pool.checkedout)
    app[METRICS].db_pool_size.set_function(pool.size)
    checkpoints = None
    if settings.is_sqlite:
        checkpoints = asyncio.create_task(
            checkpoint_sqlite(engine, settings.sqlite_checkpoint_interval), name="sqlite-checkpoint"
        )
    yield
    if checkpoints is not None:
        checkpoints.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await checkpoints
    await engine.dispose()


def setup_database(app: web.Application) -> None:
    app.cleanup_ctx.append(database_ctx)
