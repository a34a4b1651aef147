"""The direct write path (:mod:`chatsvc.realtime.wire`): a broadcast's frame is
built once and written whole to every member's transport. Every member gets
every frame byte-identical and in order -- checked with aiohttp's client and
with a raw-socket client that parses the frames itself -- while pings, pongs
and close frames written by aiohttp interleave without corrupting the stream."""

from __future__ import annotations

import asyncio
import base64
import os
import struct
import uuid
from collections.abc import Callable
from typing import Any

import orjson
from aiohttp import ClientWebSocketResponse, WSMsgType
from aiohttp.test_utils import TestClient

from chatsvc.keys import HUB
from chatsvc.realtime import wire
from chatsvc.realtime.frames import SHUTDOWN
from tests.conftest import Caller, create_session
from tests.ws_helpers import connect, ws_path

OP_TEXT, OP_CLOSE, OP_PING, OP_PONG = 0x1, 0x8, 0x9, 0xA


class RawClient:
    """A WebSocket client on a bare socket: it masks what it sends and checks
    every bit of what it receives (RFC 6455 section 5)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def connect(cls, client: TestClient, who: Caller, path: str) -> RawClient:
        assert client.port is not None
        reader, writer = await asyncio.open_connection(client.host, client.port)
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(
            (
                f"GET {path} HTTP/1.1\r\nHost: {client.host}:{client.port}\r\n"
                "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                f"Authorization: Bearer {who.token}\r\n\r\n"
            ).encode()
        )
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101"), head
        assert b"sec-websocket-extensions" not in head.lower()  # no deflate: raw frames
        return cls(reader, writer)

    async def frame(self) -> tuple[int, bytes]:
        """One whole frame: (opcode, payload). Fails on anything a server may not send."""
        b0, b1 = await self.reader.readexactly(2)
        assert b0 & 0x80, "FIN not set: a server frame was split"
        assert b0 & 0x70 == 0, "RSV bits set"
        assert b1 & 0x80 == 0, "a server frame was masked"
        opcode, length = b0 & 0x0F, b1 & 0x7F
        if length == 126:
            (length,) = struct.unpack("!H", await self.reader.readexactly(2))
        elif length == 127:
            (length,) = struct.unpack("!Q", await self.reader.readexactly(8))
        assert opcode in (OP_TEXT, OP_CLOSE, OP_PING, OP_PONG), f"opcode {opcode}"
        return opcode, await self.reader.readexactly(length)

    def send(self, opcode: int, payload: bytes) -> None:
        mask = os.urandom(4)
        n = len(payload)
        if n < 126:
            head = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
        else:
            head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
        body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.writer.write(head + mask + body)

    def close(self) -> None:
        self.writer.close()


def test_text_frame_headers_for_each_length_form() -> None:
    for n, header in [
        (0, b"\x81\x00"),
        (125, b"\x81\x7d"),
        (126, b"\x81\x7e\x00\x7e"),
        (65535, b"\x81\x7e\xff\xff"),
        (65536, b"\x81\x7f" + struct.pack("!Q", 65536)),
    ]:
        payload = b"x" * n
        assert wire.text_frame(payload) == header + payload


def big_frame(i: int, size: int) -> dict[str, Any]:
    return {"type": "test", "n": i, "pad": "é" * (size // 2)}


async def test_every_member_gets_every_frame_byte_identical_in_order_among_control_frames(
    make_client: Callable[..., TestClient], caller: Callable[..., Caller]
) -> None:
    # A short heartbeat: aiohttp's own pings go out while the broadcasts do (not
    # shorter: a member that answers a ping later than half of it is closed, and a
    # busy machine delays the readers). A buffer large enough for the whole burst.
    client = await make_client(
        ws_heartbeat=0.5, ws_max_per_user=100, ws_send_queue_bytes=64 * 1024 * 1024
    )
    owner = caller("owner@example.com", "write")
    session = await create_session(client, owner, is_shared=True)
    sid = session["id"]
    hub = client.app[HUB]
    members: list[ClientWebSocketResponse] = []
    for i in range(5):
        ws, _ = await connect(client, caller(f"m{i}@example.com", "read"), sid)
        members.append(ws)
    raw = await RawClient.connect(client, caller("raw@example.com", "read"), ws_path(sid))
    opcode, first = await raw.frame()
    assert opcode == OP_TEXT and orjson.loads(first)["type"] == "connected"

    sizes = [10, 125, 126, 500, 65535, 65536, 200_000]
    total = 60
    sent: list[bytes] = []

    async def aiohttp_texts(ws: ClientWebSocketResponse) -> list[bytes]:
        got: list[bytes] = []
        while len(got) < total:
            msg = await ws.receive(timeout=10)  # answers the server's pings too
            assert msg.type is WSMsgType.TEXT, msg
            data = msg.data.encode()
            if data.startswith(b'{"type":"test"'):
                got.append(data)
        return got

    async def raw_texts() -> tuple[list[bytes], int]:
        got: list[bytes] = []
        pongs = 0
        while len(got) < total or pongs < 9:
            opcode, payload = await raw.frame()
            if opcode == OP_PING:
                raw.send(OP_PONG, payload)
            elif opcode == OP_PONG:
                assert payload.startswith(b"raw-")
                pongs += 1
            elif opcode == OP_TEXT and payload.startswith(b'{"type":"test"'):
                got.append(payload)
        return got, pongs

    readers = [asyncio.create_task(aiohttp_texts(ws)) for ws in members]
    raw_reader = asyncio.create_task(raw_texts())
    await asyncio.sleep(0.3)  # the presence frames of the arrivals have gone out
    room = hub.rooms[uuid.UUID(sid)]
    for i in range(total):
        payload = orjson.dumps(big_frame(i, sizes[i % len(sizes)]))
        sent.append(payload)
        hub.broadcast_payload(room, payload)
        if i % 7 == 0:
            raw.send(OP_PING, b"raw-%d" % i)  # aiohttp answers with a pong
            await members[0].ping(b"client")
            await members[1].send_json({"type": "ping"})  # a JSON pong among the broadcasts
        if i % 5 == 0:
            await asyncio.sleep(0.1)  # let heartbeats and pongs interleave

    async with asyncio.timeout(20):
        for got in await asyncio.gather(*readers):
            assert got == sent
        got, pongs = await raw_reader
        assert got == sent
        assert pongs == 9

    # A close after the broadcasts: the frames first, then aiohttp's close frame, whole.
    hub.broadcast_payload(room, b'{"type":"test","last":true}')
    for conn in room.connections():
        conn.close(SHUTDOWN)
    async with asyncio.timeout(10):
        opcode, payload = await raw.frame()
        while opcode != OP_TEXT or payload != b'{"type":"test","last":true}':
            opcode, payload = await raw.frame()
        opcode, payload = await raw.frame()
        while opcode in (OP_PING, OP_PONG):
            opcode, payload = await raw.frame()
        assert opcode == OP_CLOSE
        assert struct.unpack("!H", payload[:2])[0] == SHUTDOWN.code
    raw.close()
    for ws in members:
        async with asyncio.timeout(10):
            last = None
            while (msg := await ws.receive()).type is WSMsgType.TEXT:
                last = msg.data
            assert last == '{"type":"test","last":true}'
            assert msg.type is WSMsgType.CLOSE and msg.data == SHUTDOWN.code


async def test_nothing_is_written_after_aiohttp_started_closing(
    client: TestClient, writer: Caller
) -> None:
    session = await create_session(client, writer)
    ws, _ = await connect(client, writer, session["id"])
    hub = client.app[HUB]
    room = hub.rooms[uuid.UUID(session["id"])]
    (conn,) = room.connections()
    conn.close(SHUTDOWN)
    # The close has started (aiohttp's closed flag is set before its close frame goes).
    await asyncio.sleep(0)
    assert hub.broadcast(room, {"type": "test"}) == 0
    msg = await ws.receive(timeout=5)
    assert msg.type is WSMsgType.CLOSE and msg.data == SHUTDOWN.code
