"""Contract section 5, resuming with ``since_seq=N``: every message with
``seq > N`` that still exists is delivered, in order, before live ones, with no
gap and no duplicate -- also while other members keep sending."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from aiohttp import ClientWebSocketResponse
from aiohttp.test_utils import TestClient

from tests.conftest import Caller, create_session, send_message
from tests.ws_helpers import connect, next_frame, ping_pong


async def last_seq(client: TestClient, who: Caller, session_id: str) -> int:
    resp = await client.get(
        f"/api/chat/sessions/{session_id}?include_messages=false", headers=who.headers
    )
    assert resp.status == 200
    return (await resp.json())["last_seq"]


async def collect_until(
    ws: ClientWebSocketResponse, final_seq: int, within: float = 10
) -> list[dict[str, Any]]:
    """Message frames until one with ``final_seq`` arrives."""
    frames: list[dict[str, Any]] = []
    async with asyncio.timeout(within):
        while not frames or frames[-1]["seq"] < final_seq:
            frames.append(await next_frame(ws, "message", within=within))
    return frames


async def test_resume_delivers_missed_then_live_messages_without_gap_or_duplicate(
    make_client: Callable[..., TestClient], caller: Callable[..., Caller]
) -> None:
    client = await make_client(message_rate=1000, message_burst=1000)
    owner = caller("owner@example.com", "write")
    chatter = caller("chatter@example.com", "write")
    resumer = caller("resumer@example.com", "read")
    session = await create_session(client, owner, is_shared=True)
    sid = session["id"]

    ws, _ = await connect(client, resumer, sid)
    for i in range(3):
        await send_message(client, owner, sid, f"before {i}")
    seen = [(await next_frame(ws, "message"))["seq"] for _ in range(3)]
    assert seen == [1, 2, 3]
    await ws.close()

    talker, _ = await connect(client, chatter, sid)
    reconnected = asyncio.Event()
    sent_over_ws = 0

    async def keep_sending() -> None:
        # Before, during and after the reconnection: 20 more once it has happened.
        nonlocal sent_over_ws
        after = 0
        while after < 20:
            await talker.send_json({"type": "message", "content": f"ws {sent_over_ws}"})
            sent_over_ws += 1
            after += reconnected.is_set()
            await asyncio.sleep(0.005)

    chatting = asyncio.create_task(keep_sending())
    for i in range(30):
        await send_message(client, owner, sid, f"missed {i}")

    ws, connected = await connect(client, resumer, sid, since_seq=seen[-1])
    reconnected.set()
    assert connected["last_seq"] >= 33
    await chatting
    # The talker's own copies prove every one of its sends was stored.
    mine = 0
    async with asyncio.timeout(10):
        while mine < sent_over_ws:
            frame = await next_frame(talker, "message")
            mine += frame["user_email"] == chatter.email
    final = await last_seq(client, owner, sid)
    assert final == 3 + 30 + sent_over_ws

    frames = await collect_until(ws, final)
    assert [f["seq"] for f in frames] == list(range(4, final + 1))
    stored = await client.get(
        f"/api/chat/sessions/{sid}/messages?after_seq=3&limit=500", headers=owner.headers
    )
    assert [(f["message_id"], f["content"]) for f in frames] == [
        (m["id"], m["content"]) for m in await stored.json()
    ]
    await ping_pong(ws)


async def test_resume_skips_deleted_messages(client: TestClient, writer: Caller) -> None:
    session = await create_session(client, writer)
    sid = session["id"]
    sent = [await send_message(client, writer, sid, f"m{i}") for i in range(5)]
    resp = await client.delete(f"/api/chat/messages/{sent[2]['id']}", headers=writer.headers)
    assert resp.status == 204

    ws, _ = await connect(client, writer, sid, since_seq=1)
    frames = await collect_until(ws, 5)
    assert [f["seq"] for f in frames] == [2, 4, 5]


async def test_resume_frames_equal_live_frames(
    client: TestClient, writer: Caller, other_writer: Caller
) -> None:
    session = await create_session(client, writer, is_shared=True)
    sid = session["id"]
    live, _ = await connect(client, other_writer, sid)
    await send_message(client, writer, sid, "same", metadata={"a": 1}, client_msg_id="c1")
    live_frame = await next_frame(live, "message")

    resumed, _ = await connect(client, other_writer, sid, since_seq=0)
    assert await next_frame(resumed, "message") == live_frame


async def test_since_seq_zero_replays_everything(client: TestClient, writer: Caller) -> None:
    session = await create_session(client, writer)
    for i in range(3):
        await send_message(client, writer, session["id"], f"m{i}")
    ws, _ = await connect(client, writer, session["id"], since_seq=0)
    frames = await collect_until(ws, 3)
    assert [f["content"] for f in frames] == ["m0", "m1", "m2"]


async def test_since_seq_at_last_seq_replays_nothing_then_live(
    client: TestClient, writer: Caller
) -> None:
    session = await create_session(client, writer)
    for i in range(3):
        await send_message(client, writer, session["id"], f"m{i}")
    ws, connected = await connect(client, writer, session["id"], since_seq=3)
    assert connected["last_seq"] == 3
    await send_message(client, writer, session["id"], "live")
    frame = await next_frame(ws, "message")
    assert (frame["seq"], frame["content"]) == (4, "live")


async def test_without_since_seq_nothing_is_replayed(client: TestClient, writer: Caller) -> None:
    session = await create_session(client, writer)
    await send_message(client, writer, session["id"], "old")
    ws, _ = await connect(client, writer, session["id"])
    await send_message(client, writer, session["id"], "new")
    frame = await next_frame(ws, "message")
    assert (frame["seq"], frame["content"]) == (2, "new")


async def test_large_backlog_is_replayed_in_order(
    make_client: Callable[..., TestClient], caller: Callable[..., Caller]
) -> None:
    # More than one page of backlog (the server reads it in pages).
    client = await make_client(message_rate=10_000, message_burst=10_000)
    owner = caller("owner@example.com", "write")
    session = await create_session(client, owner)
    sid = session["id"]
    total = 520
    ws, _ = await connect(client, owner, sid)
    for i in range(total):
        await ws.send_json({"type": "message", "content": f"m{i}"})
    await collect_until(ws, total, within=30)
    await ws.close()

    resumed, _ = await connect(client, owner, sid, since_seq=5)
    frames = await collect_until(resumed, total, within=30)
    assert [f["seq"] for f in frames] == list(range(6, total + 1))


async def test_live_messages_follow_connected_last_seq_while_others_send(
    make_client: Callable[..., TestClient], caller: Callable[..., Caller]
) -> None:
    # ``connected.last_seq`` is a clean cut: history up to it, live frames after
    # it -- also for a message committed while the connection is being set up.
    client = await make_client(message_rate=100_000, message_burst=100_000)
    owner = caller("owner@example.com", "write")
    session = await create_session(client, owner, is_shared=True)
    sid = session["id"]
    sending = True

    async def keep_sending() -> None:
        while sending:
            await send_message(client, owner, sid, "busy")

    senders = [asyncio.create_task(keep_sending()) for _ in range(3)]
    try:
        cuts = []
        for _ in range(30):
            ws, connected = await connect(client, owner, sid)
            first = await next_frame(ws, "message")
            cuts.append((connected["last_seq"], first["seq"]))
            await ws.close()
    finally:
        sending = False
        await asyncio.gather(*senders)
    assert [first - last for last, first in cuts] == [1] * len(cuts), cuts


async def test_since_seq_past_the_last_seq_still_gets_every_new_message(
    client: TestClient, writer: Caller, other_writer: Caller
) -> None:
    session = await create_session(client, writer, is_shared=True)
    await send_message(client, writer, session["id"], "one")
    ahead, _ = await connect(client, other_writer, session["id"], since_seq=999)
    await send_message(client, writer, session["id"], "two")
    await send_message(client, writer, session["id"], "three")
    frames = await collect_until(ahead, 3)
    assert [(f["seq"], f["content"]) for f in frames] == [(2, "two"), (3, "three")]
