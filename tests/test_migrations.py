"""The migration history (contract §7): it builds the schema from nothing, tears it
down, builds it again, and what it builds is what the models describe -- on
SQLite and on PostgreSQL."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from chatsvc.store.migrate import alembic_config, downgrade, upgrade
from chatsvc.store.models import Base

REPO = Path(__file__).resolve().parents[1]
APP_TABLES = {table.name for table in Base.metadata.sorted_tables}
HEAD = ScriptDirectory.from_config(alembic_config()).get_current_head()


@pytest.fixture
async def engine(database_url: str, tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    """An engine on an empty database: a new SQLite file, or the PostgreSQL test
    database taken down to base (and left at head afterwards for other tests)."""
    if database_url.startswith("sqlite"):
        engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}")
        yield engine
        await engine.dispose()
        return
    engine = create_async_engine(database_url)
    await downgrade(engine, "base")
    try:
        yield engine
    finally:
        await upgrade(engine, "head")
        await engine.dispose()


async def tables(engine: AsyncEngine) -> set[str]:
    async with engine.connect() as conn:
        names = await conn.run_sync(lambda sync: set(inspect(sync).get_table_names()))
    return names - {"alembic_version"}


async def revision(engine: AsyncEngine) -> str | None:
    async with engine.connect() as conn:
        return await conn.run_sync(
            lambda sync: MigrationContext.configure(sync).get_current_revision()
        )


async def test_upgrade_from_empty_creates_every_table(engine):
    assert await tables(engine) == set()
    await upgrade(engine)
    assert await tables(engine) == APP_TABLES
    assert await revision(engine) == HEAD


async def test_downgrade_to_base_removes_every_table(engine):
    await upgrade(engine)
    await downgrade(engine, "base")
    assert await tables(engine) == set()
    assert await revision(engine) is None


async def test_upgrade_after_downgrade_restores_the_schema(engine):
    await upgrade(engine)
    await downgrade(engine, "base")
    await upgrade(engine)
    assert await tables(engine) == APP_TABLES
    assert await revision(engine) == HEAD


async def test_upgrade_at_head_is_a_no_op(engine):
    await upgrade(engine)
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO audit_events (id, occurred_at, action, resource_type, reason)"
                " VALUES (:id, CURRENT_TIMESTAMP, 'session.read', 'chat_session', 'kept')"
            ),
            {"id": "0190a8b0-0000-7000-8000-000000000001"},
        )
    await upgrade(engine)
    async with engine.connect() as conn:
        assert (await conn.execute(text("SELECT reason FROM audit_events"))).scalars().all() == [
            "kept"
        ]


async def test_migrated_schema_matches_the_models(engine):
    await upgrade(engine)

    def diff(sync: Any) -> list[Any]:
        context = MigrationContext.configure(sync, opts={"compare_type": True})
        return compare_metadata(context, Base.metadata)

    async with engine.connect() as conn:
        assert await conn.run_sync(diff) == []


def test_run_py_migrate_creates_the_default_database(tmp_path):
    environ = {k: v for k, v in os.environ.items() if not k.startswith("CHATSVC_")}
    environ.update(CHATSVC_DATA_DIR=str(tmp_path), CHATSVC_CONFIG=os.devnull)
    for _ in range(2):  # the second run finds nothing pending
        result = subprocess.run(
            [sys.executable, "run.py", "migrate"],
            cwd=REPO,
            env=environ,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, result.stderr

    with sqlite3.connect(tmp_path / "chatsvc.db") as conn:
        names = {
            row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
        }
        version = conn.execute("SELECT version_num FROM alembic_version").fetchall()
    assert names - {"alembic_version"} == APP_TABLES
    assert version == [(HEAD,)]
