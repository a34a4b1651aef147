"""Shared fixtures: the fake Okta, databases (SQLite always, PostgreSQL when
``CHATSVC_TEST_POSTGRES_URL`` is set -- and then it must be reachable), the app
built by the same factory as ``run.py``, and callers at every level."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import create_async_engine

from chatsvc.app import create_app
from chatsvc.keys import CLOCK, DB_ENGINE
from chatsvc.settings import Settings, load_settings
from chatsvc.store.migrate import upgrade
from chatsvc.store.models import Base
from tests.fake_okta import AUDIENCE, FakeOkta

PG_URL = os.environ.get("CHATSVC_TEST_POSTGRES_URL")
DATABASES = ["sqlite", "postgres"] if PG_URL else ["sqlite"]

GROUPS = {
    "read": ["Onyx-Readers"],
    "write": ["Onyx-Writers"],
    "admin": ["Onyx-Admins"],
    "none": ["Some-Other-Group"],
}


@pytest.fixture(scope="session")
def okta() -> Iterator[FakeOkta]:
    server = FakeOkta()
    yield server
    server.close()


@pytest.fixture(autouse=True)
def _fresh_okta(okta: FakeOkta) -> None:
    okta.reset()


# --- databases -----------------------------------------------------------------


def run_in_thread(make_coro: Callable[[], Awaitable[None]]) -> None:
    """Run set-up in its own loop; session fixtures may be first requested inside a test's loop."""
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, make_coro()).result()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One migrated SQLite file, copied for each test (migrating per test is slow)."""
    path = tmp_path_factory.mktemp("template") / "chatsvc.db"

    async def migrate() -> None:
        engine = create_async_engine(f"sqlite+aiosqlite:///{path}")
        await upgrade(engine)
        await engine.dispose()

    run_in_thread(migrate)
    return path


@pytest.fixture(scope="session")
def postgres_schema() -> str:
    """Migrate the PostgreSQL test database once per run; unreachable means failure."""
    assert PG_URL, "CHATSVC_TEST_POSTGRES_URL is not set"

    async def migrate() -> None:
        engine = create_async_engine(PG_URL)
        async with engine.begin() as conn:
            await conn.execute(text("DROP TABLE IF EXISTS alembic_version"))
            await conn.run_sync(Base.metadata.drop_all)
        await upgrade(engine)
        await engine.dispose()

    run_in_thread(migrate)
    return PG_URL


async def _truncate_postgres(url: str) -> None:
    engine = create_async_engine(url)
    tables = ", ".join(table.name for table in Base.metadata.sorted_tables)
    async with engine.begin() as conn:
        await conn.execute(text(f"TRUNCATE {tables} CASCADE"))
    await engine.dispose()


@pytest.fixture(params=DATABASES)
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        template = request.getfixturevalue("sqlite_template")
        target = tmp_path / "chatsvc.db"
        shutil.copy(template, target)
        return f"sqlite+aiosqlite:///{target}"
    url = request.getfixturevalue("postgres_schema")
    await _truncate_postgres(url)
    return url


# --- the application ---------------------------------------------------------


def settings_for(
    tmp_path: Path, database_url: str | None, okta: FakeOkta, **overrides: Any
) -> Settings:
    values: dict[str, Any] = {
        "env": "test",
        "data_dir": tmp_path,
        "database_url": database_url,
        "okta_issuer": okta.issuer,
        "okta_audience": AUDIENCE,
        "audit_flush_interval": 0.05,
        "log_level": "DEBUG",
    }
    values.update(overrides)
    return load_settings(environ={}, config_file=tmp_path / "absent.toml", **values)


class Clock:
    """The app's clock (``CLOCK``): real time, plus however far the test moved it."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds


@pytest.fixture
def clock() -> Clock:
    """``clock.advance(61)``: the apps ``make_client`` builds live 61 s later from now on."""
    return Clock()


MakeClient = Callable[..., Awaitable[TestClient]]


@pytest.fixture
def make_client(
    aiohttp_client: Any, database_url: str, tmp_path: Path, okta: FakeOkta, clock: Clock
) -> MakeClient:
    """Build the app with the same factory as ``run.py``; keyword arguments override settings."""

    async def factory(**overrides: Any) -> TestClient:
        settings = settings_for(tmp_path, database_url, okta, **overrides)
        app = create_app(settings)
        app[CLOCK] = clock  # before start-up: a started app's state is frozen
        return await aiohttp_client(app)

    return factory


@pytest.fixture
async def client(make_client: MakeClient) -> TestClient:
    return await make_client()


# --- callers -------------------------------------------------------------------


@dataclass
class Caller:
    """A user with a valid token; ``headers`` authenticate a request."""

    name: str
    token: str
    level: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    @property
    def email(self) -> str:
        return self.name


@pytest.fixture
def caller(okta: FakeOkta) -> Callable[..., Caller]:
    """``caller("alice@example.com", "write")`` -> a :class:`Caller` at that level."""

    def make(name: str, level: str = "write", ttl: int = 3600, **claims: Any) -> Caller:
        return Caller(name, okta.token(name, GROUPS[level], ttl=ttl, **claims), level)

    return make


@pytest.fixture
def reader(caller: Callable[..., Caller]) -> Caller:
    return caller("reader@example.com", "read")


@pytest.fixture
def writer(caller: Callable[..., Caller]) -> Caller:
    return caller("writer@example.com", "write")


@pytest.fixture
def other_writer(caller: Callable[..., Caller]) -> Caller:
    return caller("other@example.com", "write")


@pytest.fixture
def admin(caller: Callable[..., Caller]) -> Caller:
    return caller("admin@example.com", "admin")


@pytest.fixture
def nobody(caller: Callable[..., Caller]) -> Caller:
    """Authenticated, but in no mapped group."""
    return caller("nobody@example.com", "none")


# --- helpers -------------------------------------------------------------------


class QueryCounter:
    def __init__(self) -> None:
        self.statements: list[str] = []

    def __call__(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        self.statements.append(statement)

    @property
    def count(self) -> int:
        return len(self.statements)

    def reset(self) -> None:
        self.statements.clear()


@pytest.fixture
def count_queries() -> Iterator[Callable[[TestClient], QueryCounter]]:
    """``counter = count_queries(client)``: every SQL statement the app runs from now on."""
    attached: list[tuple[Any, QueryCounter]] = []

    def attach(client: TestClient) -> QueryCounter:
        counter = QueryCounter()
        engine = client.app[DB_ENGINE].sync_engine
        event.listen(engine, "before_cursor_execute", counter)
        attached.append((engine, counter))
        return counter

    yield attach
    for engine, counter in attached:
        event.remove(engine, "before_cursor_execute", counter)


async def create_session(client: TestClient, who: Caller, **body: Any) -> dict[str, Any]:
    body.setdefault("title", "a session")
    resp = await client.post("/api/chat/sessions", json=body, headers=who.headers)
    assert resp.status == 201, await resp.text()
    return await resp.json()


async def send_message(
    client: TestClient, who: Caller, session_id: str, content: str = "hello", **body: Any
) -> dict[str, Any]:
    resp = await client.post(
        f"/api/chat/sessions/{session_id}/messages",
        json={"content": content, **body},
        headers=who.headers,
    )
    assert resp.status in (200, 201), await resp.text()
    return await resp.json()


async def sign_in(client: TestClient, who: Caller) -> dict[str, Any]:
    """Make the user known to chatsvc (first sight), as a real client's first request would."""
    resp = await client.get("/api/me", headers=who.headers)
    assert resp.status == 200, await resp.text()
    return await resp.json()


def run_cli(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``python run.py ARGS`` with only the given settings (``PORT="1"`` -> ``CHATSVC_PORT``)."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("CHATSVC_")}
    environ.update(CHATSVC_DATA_DIR=str(tmp_path), CHATSVC_CONFIG=os.devnull)
    environ.update({f"CHATSVC_{k}": v for k, v in env.items()})
    return subprocess.run(
        [sys.executable, "run.py", *args],
        cwd=Path(__file__).resolve().parents[1],
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
