"""Rooms in memory: a connect to a room with live members takes the access
facts from the room (no query once the token is cached), the facts still
change at once, and a resume is answered from the room's ring of recent
message frames or, past it, from the database -- gapless either way."""

from __future__ import annotations

import uuid
from collections.abc import Callable

from aiohttp.test_utils import TestClient

from chatsvc.keys import HUB
from tests.conftest import Caller, create_session, send_message, sign_in
from tests.test_ws_revocation import add_collaborator, remove_collaborator, set_shared
from tests.ws_helpers import connect, expect_close, next_frame, ping_pong


async def test_a_connect_to_a_live_room_runs_no_query(
    client: TestClient, caller: Callable[..., Caller], count_queries
) -> None:
    owner, member = caller("owner@example.com", "write"), caller("member@example.com", "read")
    session = await create_session(client, owner, is_shared=True)
    await send_message(client, owner, session["id"], "one")
    await connect(client, owner, session["id"])
    await sign_in(client, member)  # the member's token is cached from here on
    counter = count_queries(client)
    ws, connected = await connect(client, member, session["id"])
    await ping_pong(ws)
    assert counter.statements == []
    assert connected["last_seq"] == 1
    assert connected["can_send"] is False


async def test_a_connect_to_a_live_room_sees_unsharing_at_once(
    client: TestClient, caller: Callable[..., Caller]
) -> None:
    owner, member = caller("owner@example.com", "write"), caller("member@example.com", "read")
    session = await create_session(client, owner, is_shared=True)
    await connect(client, owner, session["id"])
    await set_shared(client, owner, session["id"], False)
    ws, _ = (
        await client.ws_connect(f"/api/chat/sessions/{session['id']}/ws", headers=member.headers),
        None,
    )
    await expect_close(ws, 1008, "Access denied")


async def test_a_connect_to_a_live_room_sees_collaborator_removal_at_once(
    client: TestClient, caller: Callable[..., Caller]
) -> None:
    owner, helper = caller("owner@example.com", "write"), caller("helper@example.com", "write")
    session = await create_session(client, owner)
    sid = session["id"]
    await connect(client, owner, sid)
    user_id = await add_collaborator(client, owner, sid, helper)
    ws, _ = await connect(client, helper, sid)  # admitted from the room's facts
    await remove_collaborator(client, owner, sid, user_id)
    await expect_close(ws, 1008, "Access revoked")
    again = await client.ws_connect(f"/api/chat/sessions/{sid}/ws", headers=helper.headers)
    await expect_close(again, 1008, "Access denied")


async def test_a_connect_to_a_deleted_live_room_is_session_not_found(
    client: TestClient, caller: Callable[..., Caller]
) -> None:
    owner = caller("owner@example.com", "write")
    session = await create_session(client, owner, is_shared=True)
    sid = session["id"]
    await connect(client, owner, sid)
    resp = await client.delete(f"/api/chat/sessions/{sid}", headers=owner.headers)
    assert resp.status == 204
    ws = await client.ws_connect(f"/api/chat/sessions/{sid}/ws", headers=owner.headers)
    await expect_close(ws, 1008, "Session not found")


async def test_resume_from_the_ring_and_from_past_it_are_gapless(
    make_client: Callable[..., TestClient], caller: Callable[..., Caller], count_queries
) -> None:
    client = await make_client(ws_replay_ring=8, message_rate=1000, message_burst=1000)
    owner, member = caller("owner@example.com", "write"), caller("member@example.com", "read")
    session = await create_session(client, owner, is_shared=True)
    sid = session["id"]
    keeper, _ = await connect(client, owner, sid)  # keeps the room live
    await sign_in(client, member)
    sent = [await send_message(client, owner, sid, f"m{i}") for i in range(20)]
    for i in range(20):
        assert (await next_frame(keeper, "message"))["seq"] == i + 1
    # Edit one and delete one inside the ring: a resume replays them as they are now.
    resp = await client.put(
        f"/api/chat/messages/{sent[16]['id']}",
        json={"content": "edited"},
        headers=owner.headers,
    )
    assert resp.status == 200, await resp.text()
    resp = await client.delete(f"/api/chat/messages/{sent[17]['id']}", headers=owner.headers)
    assert resp.status == 204, await resp.text()
    room = client.app[HUB].rooms[uuid.UUID(sid)]
    assert room.ring_floor == 12

    last = 20
    for since, expect_sql in ((14, False), (3, True)):
        counter = count_queries(client)
        ws, connected = await connect(client, member, sid, since_seq=since)
        assert connected["last_seq"] == last
        expected = [s for s in range(since + 1, last + 1) if s != 18]
        frames = [await next_frame(ws, "message") for _ in expected]
        assert [f["seq"] for f in frames] == expected
        assert next(f for f in frames if f["seq"] == 17)["content"] == "edited"
        assert bool(counter.statements) is expect_sql
        await send_message(client, owner, sid, "live")
        last += 1
        live = await next_frame(ws, "message")
        assert (live["seq"], live["content"]) == (last, "live")
        await ws.close()
        await next_frame(keeper, "message")
