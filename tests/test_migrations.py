"""The migration history (contract §7): it builds the schema from nothing, tears it
down, builds it again, and what it builds is what the models describe -- on
SQLite and on PostgreSQL."""

from __future__ import annotations

import os
import random
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import column, insert, inspect, select, table, text
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine

from chatsvc.store.audit import ChainCheck, verify_chain
from chatsvc.store.migrate import alembic_config, downgrade, upgrade
from chatsvc.store.models import UUID, AuditEvent, Base, UTCDateTime, new_id

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


# audit_events as revision 0002 left it: no outcome, no hash.
OLD_AUDIT_EVENTS = table(
    "audit_events",
    column("id", UUID()),
    column("occurred_at", UTCDateTime()),
    column("user_id", UUID()),
    column("user_email"),
    column("permission"),
    column("action"),
    column("resource_type"),
    column("resource_id"),
    column("reason"),
    column("request_id"),
    column("client_ip"),
)


async def test_upgrade_chains_the_events_stored_before_the_chain(engine):
    """Events written before the hash chain existed are chained by the upgrade, in
    ``occurred_at, id`` order, so that the check of an upgraded trail passes. More
    events than one page of the migration and of the check; stored out of order,
    many sharing one instant; on SQLite also a timestamp in SQLite's own text form
    (no fraction), as a hand-written row has, across a page boundary."""
    await upgrade(engine, "0002")
    start = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    rows = [
        {
            "id": new_id() if i % 2 else uuid.uuid4(),
            "occurred_at": start + timedelta(microseconds=i // 3),  # three events an instant
            "user_id": uuid.uuid4() if i % 5 else None,
            "user_email": f"user{i}@example.com",
            "permission": "read",
            "action": "session.read",
            "resource_type": "chat_session",
            "resource_id": None,
            "reason": "Access denied to chat session",
            "request_id": f"r{i}",
            "client_ip": "10.0.0.1",
        }
        for i in range(1500)
    ]
    random.Random(7).shuffle(rows)
    async with engine.begin() as conn:
        await conn.execute(insert(OLD_AUDIT_EVENTS), rows)
        if engine.dialect.name == "sqlite":
            await conn.execute(
                text(
                    "INSERT INTO audit_events (id, occurred_at, action, resource_type, reason)"
                    " VALUES (:id, '2024-04-30 08:00:00', 'ws.connect', 'chat_session', 'old')"
                ),
                [{"id": uuid.uuid4().hex} for _ in range(1100)],
            )
    expected = 2600 if engine.dialect.name == "sqlite" else 1500

    await upgrade(engine)

    check = await verify_chain(async_sessionmaker(engine))
    assert check == ChainCheck(True, expected, None)
    async with engine.connect() as conn:
        outcomes = (await conn.execute(select(AuditEvent.outcome).distinct())).scalars().all()
        unhashed = (
            await conn.execute(select(AuditEvent.id).where(AuditEvent.hash.is_(None)))
        ).all()
    assert outcomes == ["denied"]
    assert unhashed == []


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


def test_the_chain_migration_hashes_and_locks_as_chatsvc_does():
    """Revision 0003 keeps its own frozen copy of the chain; today's code agrees with it."""
    import importlib.util

    from chatsvc.store import audit, chain

    path = REPO / "migrations" / "versions" / "0003_revocations_audit_outcome.py"
    spec = importlib.util.spec_from_file_location("revision_0003", path)
    assert spec is not None and spec.loader is not None
    revision = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(revision)
    assert revision.CHAIN_LOCK_KEY == audit.CHAIN_LOCK_KEY
    assert revision.CHAINED_FIELDS == chain.CHAINED_FIELDS
    assert revision.GENESIS == chain.GENESIS
