"""When PostgreSQL goes away: clear 503s (REST and WebSocket upgrade), and
recovery without a restart when it returns.

The app reaches PostgreSQL through a TCP proxy that the test cuts and restores.
These tests exist when ``CHATSVC_TEST_POSTGRES_URL`` is set (as in CI)."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
import time
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import pytest

from chatsvc.app import create_app
from tests.cluster import TcpProxy
from tests.conftest import PG_URL, _truncate_postgres, settings_for

if PG_URL:

    @pytest.fixture
    def pg_proxy() -> TcpProxy:
        parts = urlsplit(PG_URL)
        proxy = TcpProxy(parts.hostname or "127.0.0.1", parts.port or 5432)
        yield proxy
        proxy.close()

    @pytest.fixture
    async def proxied_client(aiohttp_client, postgres_schema, pg_proxy, tmp_path, okta):
        await _truncate_postgres(postgres_schema)
        parts = urlsplit(postgres_schema)
        netloc = (
            f"{parts.username}@127.0.0.1:{pg_proxy.port}"
            if parts.username
            else f"127.0.0.1:{pg_proxy.port}"
        )
        url = urlunsplit(parts._replace(netloc=netloc))
        return await aiohttp_client(create_app(settings_for(tmp_path, url, okta, db_timeout=1.0)))

    async def test_rest_answers_503_while_the_database_is_down_and_recovers(
        proxied_client, pg_proxy, writer
    ):
        assert (await proxied_client.get("/api/me", headers=writer.headers)).status == 200
        pg_proxy.cut()
        resp = await proxied_client.post(
            "/api/chat/sessions", json={"title": "t"}, headers=writer.headers
        )
        assert resp.status == 503
        body = await resp.json()
        assert body["code"] == "SERVICE_UNAVAILABLE"
        assert body["detail"] == "Database unavailable"
        assert "SELECT" not in await resp.text() and "INSERT" not in await resp.text()
        ready = await proxied_client.get("/readyz")
        assert ready.status == 503
        assert (await ready.json())["database"] == "down"

        pg_proxy.restore()
        resp = await proxied_client.post(
            "/api/chat/sessions", json={"title": "t"}, headers=writer.headers
        )
        assert resp.status == 201
        assert (await proxied_client.get("/readyz")).status == 200

    async def test_websocket_upgrade_answers_503_while_the_database_is_down(
        proxied_client, pg_proxy, writer
    ):
        resp = await proxied_client.post(
            "/api/chat/sessions", json={"title": "t"}, headers=writer.headers
        )
        session_id = (await resp.json())["id"]
        path = f"/api/chat/sessions/{session_id}/ws"
        pg_proxy.cut()
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await proxied_client.ws_connect(path, headers=writer.headers)
        assert refused.value.status == 503

        pg_proxy.restore()
        ws = await proxied_client.ws_connect(path, headers=writer.headers)
        assert (await ws.receive_json(timeout=5))["type"] == "connected"
        await ws.close()

    async def test_a_frozen_database_makes_readyz_and_requests_answer_503_quickly(
        proxied_client, pg_proxy, writer
    ):
        assert (await proxied_client.get("/readyz")).status == 200
        assert (await proxied_client.get("/api/me", headers=writer.headers)).status == 200
        pg_proxy.freeze()
        try:
            started = time.monotonic()
            ready = await proxied_client.get("/readyz")
            readyz_seconds = time.monotonic() - started
            assert ready.status == 503
            assert (await ready.json())["database"] == "down"
            assert readyz_seconds < 2.5, readyz_seconds  # readiness_timeout is 2 s

            started = time.monotonic()
            resp = await proxied_client.post(
                "/api/chat/sessions", json={"title": "t"}, headers=writer.headers
            )
            assert resp.status == 503
            assert time.monotonic() - started < 4.0  # db_timeout is 1 s here
        finally:
            pg_proxy.thaw()
        for _ in range(50):
            if (await proxied_client.get("/readyz")).status == 200:
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError("/readyz did not recover")
        resp = await proxied_client.post(
            "/api/chat/sessions", json={"title": "t"}, headers=writer.headers
        )
        assert resp.status == 201


@pytest.fixture
def small_disk(tmp_path):
    """A 2 MiB filesystem of its own (tmpfs; the tests run as root, as in CI)."""
    mount_point = tmp_path / "small-disk"
    mount_point.mkdir()
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, f"cannot mount a small filesystem: {result.stderr}"
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


async def test_readyz_says_database_down_while_the_disk_is_full_and_recovers(
    aiohttp_client, sqlite_template, small_disk, okta, tmp_path
):
    database = small_disk / "chatsvc.db"
    shutil.copy(sqlite_template, database)
    settings = settings_for(tmp_path, f"sqlite+aiosqlite:///{database}", okta)
    client = await aiohttp_client(create_app(settings))
    assert (await client.get("/readyz")).status == 200
    filler = small_disk / "filler"
    with filler.open("wb") as fh, contextlib.suppress(OSError):
        while True:  # until the filesystem is full
            fh.write(b"\0" * 65536)
            fh.flush()
    ready = await client.get("/readyz")
    assert ready.status == 503
    assert (await ready.json())["database"] == "down"
    filler.unlink()
    assert (await client.get("/readyz")).status == 200
