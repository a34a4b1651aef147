"""Contract section 5, fan-out: every member of a large room receives every
message in seq order, and a member that cannot keep up (its bounded send queue
is full) is closed with 1013 without slowing the others."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from typing import Any

import aiohttp
from aiohttp import ClientWebSocketResponse
from aiohttp.test_utils import TestClient

from tests.conftest import Caller, create_session, send_message
from tests.ws_helpers import connect, expect_close, next_frame, ws_path

TRY_AGAIN_LATER = 1013


async def read_messages(ws: ClientWebSocketResponse, count: int) -> list[dict[str, Any]]:
    return [await next_frame(ws, "message", within=10) for _ in range(count)]


async def slow_closes(client: TestClient) -> float:
    resp = await client.get("/metrics")
    assert resp.status == 200
    found = re.search(r"^chatsvc_ws_slow_consumer_closes_total (\S+)$", await resp.text(), re.M)
    assert found, "metric chatsvc_ws_slow_consumer_closes_total is missing"
    return float(found.group(1))


async def test_250_members_receive_all_20_messages_in_order(
    make_client: Callable[..., TestClient], caller: Callable[..., Caller]
) -> None:
    started = time.monotonic()
    client = await make_client(ws_max_per_user=1000)
    owner = caller("owner@example.com", "write")
    session = await create_session(client, owner, is_shared=True)
    sid = session["id"]
    users = [caller(f"member{i}@example.com", "read") for i in range(10)]
    # The test client's own session allows 100 connections; the room needs more.
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:

        async def join(who: Caller) -> ClientWebSocketResponse:
            ws = await http.ws_connect(client.make_url(ws_path(sid)), headers=who.headers)
            assert (await ws.receive_json(timeout=5))["type"] == "connected"
            return ws

        async with asyncio.timeout(30):
            members = [ws for _ in range(25) for ws in await asyncio.gather(*map(join, users))]
            assert len(members) == 250

            sent = [await send_message(client, owner, sid, f"broadcast {i}") for i in range(20)]
            received = await asyncio.gather(*(read_messages(ws, 20) for ws in members))

        expected = [(m["id"], m["seq"], m["content"]) for m in sent]
        assert [seq for _, seq, _ in expected] == list(range(1, 21))
        for frames in received:
            assert [(f["message_id"], f["seq"], f["content"]) for f in frames] == expected
        assert time.monotonic() - started < 15
        await asyncio.gather(*(ws.close() for ws in members))


async def test_member_that_does_not_read_is_closed_1013_and_others_get_everything(
    make_client: Callable[..., TestClient], caller: Callable[..., Caller]
) -> None:
    client = await make_client(
        ws_send_queue_bytes=64 * 1024, message_rate=10_000, message_burst=10_000
    )
    owner = caller("owner@example.com", "write")
    session = await create_session(client, owner, is_shared=True)
    sid = session["id"]
    fast = [
        (await connect(client, caller(f"fast{i}@example.com", "read"), sid))[0] for i in range(3)
    ]
    slow, _ = await connect(client, caller("slow@example.com", "read"), sid)
    assert await slow_closes(client) == 0

    # Big frames until the slow member's TCP buffers, then its queue, are full.
    async def read_until_end(ws: ClientWebSocketResponse) -> list[int]:
        seqs: list[int] = []
        while True:
            frame = await next_frame(ws, "message", within=10)
            seqs.append(frame["seq"])
            if frame["content"] == "end":
                return seqs

    readers = [asyncio.create_task(read_until_end(ws)) for ws in fast]
    big, sent = "x" * 30_000, 0
    while await slow_closes(client) == 0:
        assert sent < 3_000, "the slow member was never closed"
        for _ in range(10):
            sent += 1
            await send_message(client, owner, sid, f"{sent:05d}{big}")
    await send_message(client, owner, sid, "end")
    sent += 1
    sending_done = time.monotonic()
    received = await asyncio.wait_for(asyncio.gather(*readers), 10)
    # "Promptly": the fast members are not held back by the stalled one.
    assert time.monotonic() - sending_done < 5

    for seqs in received:
        assert seqs == list(range(1, sent + 1))
    assert await slow_closes(client) == 1

    # Once it reads again, the slow member finds some frames and then the 1013.
    frames = await expect_close(slow, TRY_AGAIN_LATER, within=15)
    got = [f["seq"] for f in frames if f["type"] == "message"]
    assert len(got) < sent
    assert got == list(range(1, len(got) + 1))
