"""Request-latency scenarios, each sequential (one request in flight) after a warm-up.

Every figure is client-observed wall time in this process: from just before the
request is written to the last byte of the answer (REST), to the sender's own
``message`` frame (WebSocket send) or to the ``connected`` frame (connect).
Each scenario also reports the server's CPU milliseconds per operation.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from tests.bench.client import Api, BenchError, expect_frame
from tests.bench.service import Service
from tests.bench.stats import summarize

LIST_PATH = "/api/chat/sessions?limit=50&include_messages=true"


async def sample(
    service: Service,
    operation: Callable[[], Awaitable[float]],
    samples: int,
    warmup: int,
) -> dict[str, Any]:
    """Run ``operation`` (which returns its own milliseconds) warm-up + samples times."""
    for _ in range(warmup):
        await operation()
    cpu_before = service.cpu_seconds()
    started = time.perf_counter()
    values = [await operation() for _ in range(samples)]
    wall = time.perf_counter() - started
    result = summarize(values)
    result["server_cpu_ms_per_op"] = round((service.cpu_seconds() - cpu_before) * 1000 / samples, 3)
    result["ops_per_s"] = round(samples / wall, 1)
    result["load_average"] = os.getloadavg()[0]
    return result


async def auth_overhead(service: Service, api: Api, anonymous: Api, n: int) -> dict[str, Any]:
    """``/api/me`` (token validated once, then from the permission cache) against
    ``/healthz`` (no token): ``n`` sequential requests each, alternating, so that
    noise from the rest of the machine falls on both alike."""
    for _ in range(min(100, n)):
        await anonymous.timed("GET", "/healthz")
        await api.timed("GET", "/api/me")
    health: list[float] = []
    whoami: list[float] = []
    cpu_before = service.cpu_seconds()
    for _ in range(n):
        health.append((await anonymous.timed("GET", "/healthz"))[0])
        whoami.append((await api.timed("GET", "/api/me"))[0])
    cpu = (service.cpu_seconds() - cpu_before) * 1000
    h, m = summarize(health), summarize(whoami)
    return {
        "healthz": h,
        "me": m,
        "overhead_p50_ms": round(m["p50"] - h["p50"], 3),
        "server_cpu_ms_per_pair": round(cpu / n, 3),
    }


async def list_sessions(service: Service, api: Api, samples: int, warmup: int) -> dict[str, Any]:
    first = await api.get_json(LIST_PATH)
    if len(first) != 50 or any(len(s.get("recent_messages", ())) != 5 for s in first):
        raise BenchError("the list did not return 50 sessions with 5 recent messages each")

    async def operation() -> float:
        return (await api.timed("GET", LIST_PATH))[0]

    result = await sample(service, operation, samples, warmup)
    result["response_bytes"] = len(orjson.dumps(first))
    return result


async def send_rest(
    service: Service, api: Api, session_id: str, samples: int, warmup: int
) -> dict[str, Any]:
    path = f"/api/chat/sessions/{session_id}/messages"

    async def operation() -> float:
        body = {
            "content": "benchmark message " + "lorem ipsum " * 8,
            "metadata": {"t": time.time()},
        }
        return (await api.timed("POST", path, body, expect=201))[0]

    return await sample(service, operation, samples, warmup)


async def page_messages(
    service: Service, api: Api, session_id: str, samples: int, warmup: int
) -> dict[str, Any]:
    """The newest 100 messages of a session (``before_seq`` past the end: scroll-back)."""
    session = await api.get_json(f"/api/chat/sessions/{session_id}?include_messages=false")
    path = (
        f"/api/chat/sessions/{session_id}/messages?limit=100&before_seq={session['last_seq'] + 1}"
    )

    async def operation() -> float:
        return (await api.timed("GET", path))[0]

    result = await sample(service, operation, samples, warmup)
    result["session_messages"] = session["last_seq"]
    return result


async def send_ws(
    service: Service, api: Api, session_id: str, samples: int, warmup: int
) -> dict[str, Any]:
    """Send a ``message`` frame; the sender's own ``message`` frame (matched by
    ``client_msg_id``) is the acknowledgement."""
    ws = await api.ws_connect(session_id)
    try:
        await expect_frame(ws, "connected")

        async def operation() -> float:
            client_msg_id = uuid.uuid4().hex
            frame = {
                "type": "message",
                "content": "benchmark message " + "lorem ipsum " * 8,
                "metadata": {"t": time.time()},
                "client_msg_id": client_msg_id,
            }
            started = time.perf_counter()
            await ws.send_str(orjson.dumps(frame).decode())
            while True:
                reply = await expect_frame(ws, "message")
                if reply.get("client_msg_id") == client_msg_id:
                    return (time.perf_counter() - started) * 1000.0

        return await sample(service, operation, samples, warmup)
    finally:
        await ws.close()


async def ws_connect(
    service: Service, api: Api, session_id: str, samples: int, warmup: int
) -> dict[str, Any]:
    """From the upgrade request to the ``connected`` frame; closed between samples."""

    async def operation() -> float:
        started = time.perf_counter()
        ws = await api.ws_connect(session_id)
        try:
            await expect_frame(ws, "connected")
            return (time.perf_counter() - started) * 1000.0
        finally:
            await ws.close()

    return await sample(service, operation, samples, warmup)
