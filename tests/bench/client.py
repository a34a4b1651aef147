"""A thin timed REST and WebSocket client for the measuring side (aiohttp)."""

from __future__ import annotations

import time
from typing import Any

import aiohttp
import orjson


class BenchError(RuntimeError):
    """The service answered something a benchmark step did not expect."""


class Api:
    """REST calls as one user, over the caller's keep-alive ``ClientSession``."""

    def __init__(self, http: aiohttp.ClientSession, base_url: str, token: str | None) -> None:
        self.http = http
        self.base_url = base_url
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}

    async def timed(
        self, method: str, path: str, body: Any = None, expect: int = 200
    ) -> tuple[float, bytes]:
        """One request, read to the end; (milliseconds, body)."""
        data = orjson.dumps(body) if body is not None else None
        headers = dict(self.headers)
        if data is not None:
            headers["Content-Type"] = "application/json"
        started = time.perf_counter()
        async with self.http.request(
            method, self.base_url + path, data=data, headers=headers
        ) as response:
            payload = await response.read()
        elapsed = (time.perf_counter() - started) * 1000.0
        if response.status != expect:
            raise BenchError(
                f"{method} {path}: {response.status} (expected {expect}): {payload[:300]!r}"
            )
        return elapsed, payload

    async def get_json(self, path: str, expect: int = 200) -> Any:
        return orjson.loads((await self.timed("GET", path, expect=expect))[1])

    async def post_json(self, path: str, body: Any, expect: int = 201) -> Any:
        return orjson.loads((await self.timed("POST", path, body, expect=expect))[1])

    def ws_url(self, session_id: str, query: str = "") -> str:
        base = self.base_url.replace("http://", "ws://", 1).replace("https://", "wss://", 1)
        return f"{base}/api/chat/sessions/{session_id}/ws" + (f"?{query}" if query else "")

    async def ws_connect(self, session_id: str) -> aiohttp.ClientWebSocketResponse:
        return await self.http.ws_connect(
            self.ws_url(session_id),
            headers=self.headers,
            autoping=True,
            max_msg_size=0,
        )


async def expect_frame(
    ws: aiohttp.ClientWebSocketResponse, kind: str, wait_s: float = 10.0
) -> dict[str, Any]:
    """The next frame of type ``kind`` (others are skipped)."""
    while True:
        msg = await ws.receive(timeout=wait_s)
        if msg.type is not aiohttp.WSMsgType.TEXT:
            raise BenchError(f"socket ended while waiting for {kind!r}: {msg.type} {msg.extra}")
        frame = orjson.loads(msg.data)
        if frame.get("type") == kind:
            return frame  # type: ignore[no-any-return]
        if frame.get("type") == "error":
            raise BenchError(f"error frame while waiting for {kind!r}: {frame}")
