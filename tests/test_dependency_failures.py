"""When PostgreSQL goes away: clear 503s (REST and WebSocket upgrade), and
recovery without a restart when it returns.

The app reaches PostgreSQL through a TCP proxy that the test cuts and restores.
These tests exist when ``CHATSVC_TEST_POSTGRES_URL`` is set (as in CI)."""

from __future__ import annotations

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
