"""Replicas starting at once may all migrate: one history runs, the others wait
for it and find the database at head -- on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
import fcntl
import os
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
from alembic.script import ScriptDirectory

from chatsvc.store.migrate import ADVISORY_LOCK_KEY, alembic_config
from tests.conftest import PG_URL

REPO = Path(__file__).resolve().parents[1]
HEAD = ScriptDirectory.from_config(alembic_config()).get_current_head()
STARTS = 4
# Collected where CHATSVC_TEST_POSTGRES_URL is set, as in CI (the other database tests do the same).
postgres_only = pytest.mark.postgres if PG_URL else lambda test: None


def migrate_at_once(tmp_path: Path, **env: str) -> list[subprocess.CompletedProcess[str]]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("CHATSVC_")}
    environ.update(CHATSVC_DATA_DIR=str(tmp_path), CHATSVC_CONFIG=os.devnull)
    environ.update(env)
    procs = [
        subprocess.Popen(
            [sys.executable, "run.py", "migrate"],
            cwd=REPO,
            env=environ,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(STARTS)
    ]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        results.append(subprocess.CompletedProcess(proc.args, proc.returncode, out, err))
    return results


def test_concurrent_migrations_on_one_sqlite_file_all_succeed(tmp_path: Path) -> None:
    results = migrate_at_once(tmp_path)
    assert [r.returncode for r in results] == [0] * STARTS, [r.stderr[-2000:] for r in results]
    with sqlite3.connect(tmp_path / "chatsvc.db") as conn:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchall() == [(HEAD,)]


@postgres_only
async def test_concurrent_migrations_on_one_postgres_database_all_succeed(tmp_path: Path) -> None:
    assert PG_URL
    parts = urlsplit(PG_URL)
    admin_dsn = urlunsplit(parts._replace(scheme="postgresql", path="/postgres"))
    name = f"chatsvc_lock_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(admin_dsn)
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        url = urlunsplit(parts._replace(path=f"/{name}"))
        results = migrate_at_once(tmp_path, CHATSVC_DATABASE_URL=url)
        assert [r.returncode for r in results] == [0] * STARTS, [r.stderr[-2000:] for r in results]
        conn = await asyncpg.connect(
            urlunsplit(parts._replace(scheme="postgresql", path=f"/{name}"))
        )
        try:
            assert await conn.fetchval("SELECT version_num FROM alembic_version") == HEAD
        finally:
            await conn.close()
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


def start_migrate(tmp_path: Path, **env: str) -> subprocess.Popen[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("CHATSVC_")}
    environ.update(CHATSVC_DATA_DIR=str(tmp_path), CHATSVC_CONFIG=os.devnull)
    environ.update(env)
    return subprocess.Popen(
        [sys.executable, "run.py", "migrate"],
        cwd=REPO,
        env=environ,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def assert_waits_then_finishes(proc: subprocess.Popen[str], release: Callable[[], None]) -> None:
    with pytest.raises(subprocess.TimeoutExpired):
        proc.wait(timeout=4)  # another migrator holds the lock
    release()
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err[-2000:]


def test_a_migration_waits_for_the_sqlite_lock_holder(tmp_path: Path) -> None:
    fd = os.open(tmp_path / "chatsvc.db.migrate-lock", os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    proc = start_migrate(tmp_path)
    assert_waits_then_finishes(proc, lambda: os.close(fd))


@postgres_only
async def test_a_migration_waits_for_the_postgres_lock_holder(tmp_path: Path) -> None:
    assert PG_URL
    parts = urlsplit(PG_URL)
    holder = await asyncpg.connect(urlunsplit(parts._replace(scheme="postgresql")))
    try:
        await holder.execute("SELECT pg_advisory_lock($1)", ADVISORY_LOCK_KEY)
        proc = start_migrate(tmp_path, CHATSVC_DATABASE_URL=PG_URL)
        await asyncio.sleep(4)
        assert proc.poll() is None, "migrated while another migrator held the lock"
        await holder.execute("SELECT pg_advisory_unlock($1)", ADVISORY_LOCK_KEY)
        _, err = await asyncio.to_thread(proc.communicate, timeout=60)
        assert proc.returncode == 0, err[-2000:]
    finally:
        await holder.close()
