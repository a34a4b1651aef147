"""Continuous access across processes: two real chatsvc processes on one database
(PostgreSQL when configured) and Redis. A revocation received by one process ends
the user's socket and tokens on the other within a second, a group change from an
event hook re-checks a socket on the other, and a process started afterwards
honours the revocation."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from chatsvc.auth.dev_issuer import DevIssuer
from chatsvc.settings import load_settings
from tests.cluster import Cluster, Node, redis_target, two_nodes
from tests.conftest import PG_URL

pytestmark = pytest.mark.slow

LOGOUT = "/api/idp/global-token-revocation"
HOOK = "/api/idp/okta-event-hook"
SECRET = "cluster-hook-secret"
TIMEOUT = 5


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    extra = {"CHATSVC_OKTA_EVENT_HOOK_SECRET": SECRET}
    with two_nodes(
        tmp_path_factory.mktemp("revocations"), *redis_target(), PG_URL, extra
    ) as cluster:
        yield cluster


@pytest.fixture
def issuer(cluster: Cluster) -> DevIssuer:
    return DevIssuer(
        load_settings(environ={}, config_file=Path("/nonexistent"), data_dir=cluster.data_dir)
    )


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def open_socket(http: aiohttp.ClientSession, node: Node, token: str) -> Any:
    resp = await http.post(
        f"{node.url}/api/chat/sessions",
        json={"title": "t", "is_shared": True},
        headers=bearer(token),
    )
    assert resp.status == 201, await resp.text()
    session_id = (await resp.json())["id"]
    ws = await http.ws_connect(
        f"{node.url}/api/chat/sessions/{session_id}/ws", headers=bearer(token)
    )
    assert (await ws.receive_json(timeout=TIMEOUT))["type"] == "connected"
    return ws


async def closed_with(ws: Any, within: float) -> tuple[int | None, str | None, list[Any]]:
    frames: list[Any] = []
    deadline = time.monotonic() + within
    while (remaining := deadline - time.monotonic()) > 0:
        msg = await ws.receive(timeout=remaining)
        if msg.type == aiohttp.WSMsgType.TEXT:
            frames.append(msg.json())
            continue
        return (
            (msg.data if msg.type == aiohttp.WSMsgType.CLOSE else ws.close_code),
            msg.extra,
            frames,
        )
    raise AssertionError(f"not closed within {within} s; frames {frames}")


async def me(http: aiohttp.ClientSession, node: Node, token: str) -> tuple[int, Any]:
    async with http.get(f"{node.url}/api/me", headers=bearer(token)) as resp:
        return resp.status, await resp.json()


async def test_universal_logout_on_one_process_ends_access_on_the_other(
    cluster: Cluster, issuer: DevIssuer, http: aiohttp.ClientSession
) -> None:
    a, b = cluster.nodes[0], cluster.nodes[1]
    token = issuer.mint("erin@example.com", ["Onyx-Writers"], ttl=600)
    ws = await open_socket(http, b, token)
    assert (await me(http, b, token))[0] == 200  # cached on b

    started = time.monotonic()
    resp = await http.post(
        f"{a.url}{LOGOUT}",
        json={"sub_id": {"format": "email", "email": "erin@example.com"}},
        headers=bearer(issuer.mint_logout_request(a.url + LOGOUT)),
    )
    assert resp.status == 204, await resp.text()
    code, reason, _ = await closed_with(ws, within=1.0)
    assert (code, reason) == (1008, "Access revoked")
    assert time.monotonic() - started < 1.0
    status, problem = await me(http, b, token)
    assert status == 401 and problem["detail"] == "Token revoked"

    later = cluster.start_node(migrate=False)  # started after the revocation
    status, problem = await me(http, later, token)
    assert status == 401 and problem["detail"] == "Token revoked"
    await asyncio.sleep(1.05)  # a token of a later second
    fresh = issuer.mint("erin@example.com", ["Onyx-Writers"], ttl=600)
    for node in (a, b, later):
        assert (await me(http, node, fresh))[0] == 200


async def test_a_group_removal_from_the_hook_rechecks_a_socket_on_the_other_process(
    cluster: Cluster, issuer: DevIssuer, http: aiohttp.ClientSession
) -> None:
    a, b = cluster.nodes[0], cluster.nodes[1]
    token = issuer.mint("frank@example.com", ["Onyx-Writers", "Onyx-Readers"], ttl=600)
    ws = await open_socket(http, b, token)
    published = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    event = {
        "eventType": "group.user_membership.remove",
        "published": published,
        "target": [
            {"type": "User", "id": "frank@example.com", "alternateId": "frank@example.com"},
            {"type": "UserGroup", "displayName": "Onyx-Writers"},
        ],
    }
    resp = await http.post(
        f"{a.url}{HOOK}", json={"data": {"events": [event]}}, headers={"Authorization": SECRET}
    )
    assert resp.status == 200, await resp.text()
    deadline = time.monotonic() + 1.0
    seen: list[Any] = []
    while not any(f.get("type") == "permission_changed" for f in seen):
        msg = await ws.receive(timeout=max(0.01, deadline - time.monotonic()))
        assert msg.type == aiohttp.WSMsgType.TEXT, msg
        seen.append(msg.json())
    changed = next(f for f in seen if f["type"] == "permission_changed")
    assert changed["permission"] == "read" and changed["can_send"] is False
    assert (await me(http, b, token))[0] == 401
    await asyncio.sleep(1.05)
    renewed = issuer.mint("frank@example.com", ["Onyx-Readers"], ttl=600)
    await ws.send_json({"type": "auth", "access_token": renewed})
    while (frame := await ws.receive_json(timeout=TIMEOUT))["type"] != "auth_ok":
        assert frame["type"] != "error" or frame["message"] == "Token revoked", frame
    await ws.send_json({"type": "ping"})
    while (await ws.receive_json(timeout=TIMEOUT))["type"] != "pong":
        pass
    await ws.close()
