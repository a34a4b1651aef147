"""Helpers for the WebSocket tests (contract section 5): connect, read frames
with a timeout, expect a close, read the audit trail."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from aiohttp import ClientWebSocketResponse, WSMsgType
from aiohttp.test_utils import TestClient

from tests.conftest import Caller

TIMEOUT = 5.0


def ws_path(session_id: str, **query: Any) -> str:
    path = f"/api/chat/sessions/{session_id}/ws"
    if query:
        path += "?" + "&".join(f"{key}={value}" for key, value in query.items())
    return path


async def open_ws(
    client: TestClient, who: Caller | None, session_id: str, **query: Any
) -> ClientWebSocketResponse:
    """The upgrade only; the caller reads the first frame (or the close)."""
    headers = who.headers if who is not None else {}
    return await client.ws_connect(ws_path(session_id, **query), headers=headers)


async def connect(
    client: TestClient, who: Caller, session_id: str, **query: Any
) -> tuple[ClientWebSocketResponse, dict[str, Any]]:
    """Open a member's socket and return it with its ``connected`` frame."""
    ws = await open_ws(client, who, session_id, **query)
    connected = await ws.receive_json(timeout=TIMEOUT)
    assert connected["type"] == "connected", connected
    return ws, connected


async def next_frame(
    ws: ClientWebSocketResponse, frame_type: str, within: float = TIMEOUT
) -> dict[str, Any]:
    """The next frame of ``frame_type``, skipping others (presence, typing, ...)."""
    deadline = time.monotonic() + within
    while True:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"no {frame_type!r} frame within {within} s"
        msg = await ws.receive(timeout=remaining)
        assert msg.type is WSMsgType.TEXT, f"expected a {frame_type!r} frame, got {msg}"
        frame = msg.json()
        if frame["type"] == frame_type:
            return frame


async def next_presence(
    ws: ClientWebSocketResponse, change: str, within: float = TIMEOUT
) -> list[dict[str, Any]]:
    """The users of the next ``presence`` frame with a non-empty ``change``
    (``"joined"`` or ``"left"``), skipping other frames."""
    deadline = time.monotonic() + within
    while True:
        frame = await next_frame(ws, "presence", within=max(0.01, deadline - time.monotonic()))
        assert isinstance(frame["online_count"], int) and frame["timestamp"]
        if frame[change]:
            return list(frame[change])


def presence_changes(frames: list[dict[str, Any]], change: str) -> list[dict[str, Any]]:
    """Every user listed under ``change`` in these frames' ``presence`` frames."""
    return [user for f in frames if f["type"] == "presence" for user in f[change]]


async def frames_within(ws: ClientWebSocketResponse, seconds: float) -> list[dict[str, Any]]:
    """Every text frame that arrives within ``seconds`` (stops early at a close)."""
    frames: list[dict[str, Any]] = []
    deadline = time.monotonic() + seconds
    while (remaining := deadline - time.monotonic()) > 0:
        try:
            msg = await ws.receive(timeout=remaining)
        except TimeoutError:
            break
        if msg.type is not WSMsgType.TEXT:
            break
        frames.append(msg.json())
    return frames


async def expect_close(
    ws: ClientWebSocketResponse, code: int, reason: str | None = None, within: float = TIMEOUT
) -> list[dict[str, Any]]:
    """Read until the server's close; assert its code (and reason). Returns the frames before it."""
    frames: list[dict[str, Any]] = []
    deadline = time.monotonic() + within
    while True:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"no close within {within} s; frames: {frames}"
        msg = await ws.receive(timeout=remaining)
        if msg.type is WSMsgType.TEXT:
            frames.append(msg.json())
            continue
        assert msg.type is WSMsgType.CLOSE, msg
        assert msg.data == code, (msg.data, msg.extra)
        if reason is not None:
            assert msg.extra == reason
        return frames


async def ping_pong(ws: ClientWebSocketResponse) -> None:
    """Prove the socket is still open and served."""
    await ws.send_json({"type": "ping"})
    assert await next_frame(ws, "pong") == {"type": "pong"}


async def frames_before_pong(ws: ClientWebSocketResponse) -> list[dict[str, Any]]:
    """Send a ``ping`` and return every frame that arrives before its ``pong``.

    The server handles a member's frames in order, so whatever an earlier frame
    made it send to this member is already queued ahead of the ``pong``."""
    await ws.send_json({"type": "ping"})
    frames: list[dict[str, Any]] = []
    async with asyncio.timeout(TIMEOUT):
        while (frame := await ws.receive_json()) != {"type": "pong"}:
            frames.append(frame)
    return frames


async def audit_events(client: TestClient, admin: Caller, action: str) -> list[dict[str, Any]]:
    resp = await client.get(f"/api/chat/audit?action={action}", headers=admin.headers)
    assert resp.status == 200, await resp.text()
    return await resp.json()


async def eventually(predicate: Any, within: float = TIMEOUT) -> None:
    """Wait for a server-side condition (a synchronous callable) to hold."""
    deadline = time.monotonic() + within
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


PERMISSION_NAMES = (
    "view",
    "send",
    "update",
    "share",
    "delete",
    "manage_collaborators",
    "post_system",
)


def permissions_granting(*granted: str) -> dict[str, bool]:
    """A session's ``permissions`` object with exactly ``granted`` true."""
    assert set(granted) <= set(PERMISSION_NAMES), granted
    return {name: name in granted for name in PERMISSION_NAMES}
