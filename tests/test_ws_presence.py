"""Contract section 5, presence: coalesced ``presence`` frames (O(N) frames for
a room of N filling at once) and the ``connected`` frame's roster."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from typing import Any

import aiohttp
from aiohttp import ClientWebSocketResponse, WSMsgType
from aiohttp.test_utils import TestClient

from chatsvc.keys import HUB
from tests.conftest import Caller, create_session, sign_in
from tests.ws_helpers import connect, eventually, frames_within, next_presence, ws_path


class Roster:
    """One member's view of who is online, from its frames alone."""

    def __init__(self, connected: dict[str, Any]) -> None:
        self.online = {u["user_id"] for u in connected["online"]}
        self.count = connected["online_count"]
        self.presence_frames = 0

    def apply(self, frame: dict[str, Any]) -> None:
        if frame["type"] != "presence":
            return
        self.presence_frames += 1
        self.online |= {u["user_id"] for u in frame["joined"]}
        self.online -= {u["user_id"] for u in frame["left"]}
        self.count = frame["online_count"]


async def test_200_members_joining_at_once_cost_o_n_frames_and_agree_on_who_is_online(
    make_client: Callable[..., TestClient], caller: Callable[..., Caller]
) -> None:
    client = await make_client(presence_interval=0.1)
    owner = caller("owner@example.com", "write")
    session = await create_session(client, owner, is_shared=True)
    sid = session["id"]
    users = [caller(f"member{i}@example.com", "read") for i in range(200)]
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:

        async def join(who: Caller) -> tuple[ClientWebSocketResponse, Roster]:
            ws = await http.ws_connect(client.make_url(ws_path(sid)), headers=who.headers)
            connected = await ws.receive_json(timeout=10)
            assert connected["type"] == "connected"
            return ws, Roster(connected)

        async def read(ws: ClientWebSocketResponse, roster: Roster) -> None:
            async for msg in ws:
                if msg.type is WSMsgType.TEXT:
                    roster.apply(msg.json())

        async with asyncio.timeout(60):
            joined = await asyncio.gather(*map(join, users))
            readers = [asyncio.create_task(read(ws, r)) for ws, r in joined]
            hub = client.app[HUB]
            room = hub.rooms[uuid.UUID(sid)]
            await eventually(lambda: not room.presence_pending and room.presence_timer is None)
            server = {str(u) for u in hub.online(uuid.UUID(sid))}
            assert len(server) == 200
            # Every member's reader works through the frames already sent to it.
            await eventually(
                lambda: all(r.online == server and r.count == 200 for _, r in joined), within=10
            )
            # O(N): the whole room saw far fewer frames than one per (member, arrival).
            frames = sum(r.presence_frames for _, r in joined)
            assert frames <= 200 * 30, frames
            for ws, _ in joined:
                await ws.close()
            for task in readers:
                await task


async def test_a_user_who_joins_and_leaves_within_one_window_is_in_neither_list(
    make_client: Callable[..., TestClient], caller: Callable[..., Caller]
) -> None:
    client = await make_client(presence_interval=1.0)
    owner, first, brief = (
        caller("owner@example.com", "write"),
        caller("first@example.com", "read"),
        caller("brief@example.com", "read"),
    )
    brief_user = await sign_in(client, brief)
    session = await create_session(client, owner, is_shared=True)
    sid = session["id"]
    watcher, _ = await connect(client, owner, sid)
    await connect(client, first, sid)  # the leading edge: sent at once
    assert [u["user_email"] for u in await next_presence(watcher, "joined")] == [first.email]
    # Within the window that started then: a visit too short to show.
    ws, _ = await connect(client, brief, sid)
    await ws.close()
    frames = await frames_within(watcher, 1.5)
    listed = [
        u["user_id"] for f in frames if f["type"] == "presence" for u in f["joined"] + f["left"]
    ]
    assert brief_user["id"] not in listed


async def test_connected_lists_who_is_online_and_counts_them(
    make_client: Callable[..., TestClient], caller: Callable[..., Caller]
) -> None:
    client = await make_client()
    owner = caller("owner@example.com", "write")
    session = await create_session(client, owner, is_shared=True)
    sid = session["id"]
    for i in range(3):
        await connect(client, caller(f"m{i}@example.com", "read"), sid)
    _, connected = await connect(client, owner, sid)
    assert connected["online_count"] == 4
    assert sorted(u["user_email"] for u in connected["online"]) == [
        "m0@example.com",
        "m1@example.com",
        "m2@example.com",
        "owner@example.com",
    ]
