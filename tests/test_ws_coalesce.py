"""A pipelining sender's broadcasts are coalesced (``Hub.cork``): written to
each member together, in the same order, with the sender's own frames after
the broadcasts that came before them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
from aiohttp.test_utils import TestClient

from chatsvc.keys import HUB
from chatsvc.realtime.hub import Hub
from tests.conftest import Caller, create_session
from tests.ws_helpers import connect

TOTAL = 20


async def frames_until(ws: Any, count: int, kinds: set[str]) -> list[dict[str, Any]]:
    got: list[dict[str, Any]] = []
    while len(got) < count:
        frame = await ws.receive_json(timeout=10)
        if frame["type"] in kinds:
            got.append(frame)
    return got


async def test_pipelined_messages_go_out_together_in_order_before_the_senders_pong(
    make_client: Callable[..., TestClient], caller: Callable[..., Caller], monkeypatch: Any
) -> None:
    client = await make_client(message_rate=1000, message_burst=1000)
    owner = caller("owner@example.com", "write")
    session = await create_session(client, owner, is_shared=True)
    sid = session["id"]
    batches: list[int] = []
    fan_out = Hub._fan_out

    def recording(self: Hub, room: Any, entries: list[Any], exclude: Any) -> int:
        batches.append(len(entries))
        return fan_out(self, room, entries, exclude)

    monkeypatch.setattr(Hub, "_fan_out", recording)
    member, _ = await connect(client, caller("m@example.com", "read"), sid)
    sender, _ = await connect(client, owner, sid)
    batches.clear()
    # Back to back, without waiting for an answer, then a ping.
    for n in range(TOTAL):
        await sender.send_str(orjson.dumps({"type": "message", "content": f"m{n}"}).decode())
    await sender.send_str('{"type":"ping"}')

    got = await frames_until(member, TOTAL, {"message"})
    assert [f["content"] for f in got] == [f"m{n}" for n in range(TOTAL)]
    seqs = [f["seq"] for f in got]
    assert seqs == sorted(seqs)
    mine = await frames_until(sender, TOTAL + 1, {"message", "pong"})
    assert [f["type"] for f in mine] == ["message"] * TOTAL + ["pong"]
    assert [f["seq"] for f in mine[:TOTAL]] == seqs
    assert sum(batches) >= TOTAL  # (and presence frames, if any)
    assert max(batches) > 1  # some were written together
    assert client.app[HUB].rooms  # (the room is still live)
