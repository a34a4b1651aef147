"""Applies the Alembic history (``migrations/``) to the configured database.

Several replicas may start at once with auto-migrate on: the history runs under
a lock, so one of them migrates and the others find the database at head. On
PostgreSQL that is a transaction-level advisory lock (released with the
migration's commit, or when its connection dies); on SQLite, where only one
machine can share the file anyway, an ``flock`` on a file beside the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

# Beside the package in a checkout; an installed package is told where they are
# (CHATSVC_MIGRATIONS_DIR, as the container image does).
MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"


def alembic_config(directory: Path | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(directory or MIGRATIONS_DIR))
    return config


# Any constant both sides agree on: the first eight bytes of "chatsvc-migrations".
ADVISORY_LOCK_KEY = int.from_bytes(b"chatsvc-", "big") >> 1


@contextlib.asynccontextmanager
async def _file_lock(path: Path) -> AsyncIterator[None]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        await asyncio.to_thread(fcntl.flock, fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


@contextlib.asynccontextmanager
async def migration_lock(engine: AsyncEngine, conn: AsyncConnection) -> AsyncIterator[None]:
    if conn.dialect.name == "postgresql":
        await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": ADVISORY_LOCK_KEY})
        yield
        return
    database = engine.url.database
    if not database or database == ":memory:":
        yield
        return
    async with _file_lock(Path(database + ".migrate-lock")):
        yield


async def _run(
    engine: AsyncEngine,
    step: Callable[[Config, str], None],
    revision: str,
    directory: Path | None = None,
) -> None:
    """Run an Alembic command through a connection of ``engine`` (works inside a running loop)."""
    config = alembic_config(directory)

    def run(sync_connection: object) -> None:
        config.attributes["connection"] = sync_connection
        step(config, revision)

    async with engine.begin() as conn, migration_lock(engine, conn):
        await conn.run_sync(run)


async def upgrade(
    engine: AsyncEngine, revision: str = "head", directory: Path | None = None
) -> None:
    await _run(engine, command.upgrade, revision, directory)


async def downgrade(engine: AsyncEngine, revision: str = "base") -> None:
    await _run(engine, command.downgrade, revision)
