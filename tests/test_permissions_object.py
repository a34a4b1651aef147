"""``permissions`` on a session says true exactly where the request succeeds:
for every role (owner, collaborator, stranger, admin), level and sharing state,
each flag is checked against the real request on a fresh session."""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from tests.conftest import Caller, create_session, sign_in

Attempt = Callable[[TestClient, Caller, dict[str, Any], str], Awaitable[int]]


async def view(client: TestClient, who: Caller, session: dict[str, Any], _third: str) -> int:
    return (await client.get(f"/api/chat/sessions/{session['id']}", headers=who.headers)).status


async def send(client: TestClient, who: Caller, session: dict[str, Any], _third: str) -> int:
    resp = await client.post(
        f"/api/chat/sessions/{session['id']}/messages", json={"content": "hi"}, headers=who.headers
    )
    return resp.status


async def post_system(client: TestClient, who: Caller, session: dict[str, Any], _t: str) -> int:
    resp = await client.post(
        f"/api/chat/sessions/{session['id']}/messages",
        json={"content": "notice", "message_type": "system"},
        headers=who.headers,
    )
    return resp.status


async def update(client: TestClient, who: Caller, session: dict[str, Any], _third: str) -> int:
    resp = await client.put(
        f"/api/chat/sessions/{session['id']}", json={"title": "renamed"}, headers=who.headers
    )
    return resp.status


async def share(client: TestClient, who: Caller, session: dict[str, Any], _third: str) -> int:
    resp = await client.put(
        f"/api/chat/sessions/{session['id']}",
        json={"is_shared": not session["is_shared"]},
        headers=who.headers,
    )
    return resp.status


async def delete(client: TestClient, who: Caller, session: dict[str, Any], _third: str) -> int:
    return (await client.delete(f"/api/chat/sessions/{session['id']}", headers=who.headers)).status


async def manage(client: TestClient, who: Caller, session: dict[str, Any], third: str) -> int:
    resp = await client.post(
        f"/api/chat/sessions/{session['id']}/collaborators",
        json={"user_id": third},
        headers=who.headers,
    )
    return resp.status


ATTEMPTS: dict[str, Attempt] = {
    "view": view,
    "send": send,
    "update": update,
    "share": share,
    "delete": delete,
    "manage_collaborators": manage,
    "post_system": post_system,
}
ROLES = ["owner", "collaborator", "stranger", "admin"]


@pytest.mark.parametrize(
    ("role", "level", "shared"),
    [
        (role, level, shared)
        for role, level, shared in itertools.product(ROLES, ["read", "write"], [False, True])
        if not (role == "admin" and level == "read")
    ],
)
async def test_permissions_agree_with_the_requests(
    make_client: Callable[..., Awaitable[TestClient]],
    caller: Callable[..., Caller],
    role: str,
    level: str,
    shared: bool,
) -> None:
    client = await make_client(message_rate=1000.0, message_burst=1000)
    me = caller("me@example.com", "admin" if role == "admin" else level)
    # An owner at read level: a writer who created the session and was demoted since.
    owner = caller("me@example.com" if role == "owner" else "owner@example.com", "write")
    third = (await sign_in(client, caller("third@example.com", "write")))["id"]

    async def fresh() -> dict[str, Any]:
        session = await create_session(client, owner, is_shared=shared)
        if role == "collaborator":
            resp = await client.post(
                f"/api/chat/sessions/{session['id']}/collaborators",
                json={"user_id": (await sign_in(client, me))["id"]},
                headers=owner.headers,
            )
            assert resp.status == 201, await resp.text()
        return session

    first = await fresh()
    resp = await client.get(f"/api/chat/sessions/{first['id']}", headers=me.headers)
    if resp.status == 403:  # not a viewer: nothing to read, and nothing may succeed
        granted = dict.fromkeys(ATTEMPTS, False)
    else:
        granted = (await resp.json())["permissions"]
        listed = await client.get("/api/chat/sessions", headers=me.headers)
        in_list = next(s for s in await listed.json() if s["id"] == first["id"])
        assert in_list["permissions"] == granted
    assert set(granted) == set(ATTEMPTS)
    for name, attempt in ATTEMPTS.items():
        status = await attempt(client, me, await fresh(), third)
        assert status in (200, 201, 204, 403), (name, status)
        assert (status != 403) is granted[name], (name, status, granted)
