"""A fan-out client process: many WebSocket members of one session.

``python -m tests.bench.fanout_client`` speaks JSON lines. It reads one config
line ``{"ws_url", "tokens", "concurrency"}``, connects one member per token
(upgrade, then the ``connected`` frame) and answers ``{"event": "ready", ...}``.
Then, per command line:

- ``{"cmd": "collect", "phase", "count", "timeout"}``: wait until every open
  member has ``count`` distinct ``message`` frames whose ``metadata.phase`` is
  ``phase`` (or the timeout), then answer with every receive latency
  (receive ``time.time()`` minus the sender's ``metadata.t``), the loss and the
  first and last receive times;
- ``{"cmd": "close"}``: close every member and exit.

It runs on the plain asyncio loop, so that a change of the server's loop
(uvloop or not) is the only difference between two runs; with ``--uvloop``
(``python -m tests.bench --client-loop uvloop``) on uvloop, a cheaper client
for rates where the one client process is as busy as the server.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections import Counter
from typing import Any

import aiohttp
import orjson

MESSAGE_PREFIX = '{"type":"message",'
POLL = 0.02


class Member:
    __slots__ = ("close_code", "frames", "other", "ws")

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.frames: dict[str, list[tuple[int, float, float]]] = {}
        self.other = 0
        self.close_code: int | None = None

    async def receive(self) -> None:
        ws = self.ws
        frames = self.frames
        text = aiohttp.WSMsgType.TEXT
        try:
            async for msg in ws:
                now = time.time()
                if msg.type is not text:
                    continue
                data = msg.data
                if data.startswith(MESSAGE_PREFIX):
                    frame = orjson.loads(data)
                    meta = frame["metadata"]
                    phase = meta.get("phase")
                    if phase is not None:
                        frames.setdefault(phase, []).append((frame["seq"], now, meta["t"]))
                        continue
                self.other += 1
        finally:
            self.close_code = ws.close_code if ws.close_code is not None else -1

    def count(self, phase: str) -> int:
        return len(self.frames.get(phase, ()))


def emit(payload: dict[str, Any]) -> None:
    sys.stdout.write(orjson.dumps(payload).decode() + "\n")
    sys.stdout.flush()


async def connect_all(
    http: aiohttp.ClientSession, url: str, tokens: list[str], concurrency: int
) -> tuple[list[Member], list[float], Counter[str]]:
    gate = asyncio.Semaphore(concurrency)
    members: list[Member] = []
    latencies: list[float] = []
    errors: Counter[str] = Counter()

    async def connect(token: str) -> None:
        async with gate:
            started = time.perf_counter()
            # Like a well-behaved client, retry a connect that the server answered
            # with "try again" (503 before the upgrade, 1013 after it).
            for attempt in range(1, 4):
                try:
                    ws = await http.ws_connect(
                        url,
                        headers={"Authorization": f"Bearer {token}"},
                        autoping=True,
                        max_msg_size=0,
                    )
                    first = await ws.receive(timeout=60)
                except aiohttp.WSServerHandshakeError as exc:
                    if exc.status == 503 and attempt < 3:
                        errors["retried after 503"] += 1
                        await asyncio.sleep(0.5 * attempt)
                        continue
                    errors[f"handshake {exc.status}"] += 1
                    return
                except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                    errors[type(exc).__name__] += 1
                    return
                if first.type is aiohttp.WSMsgType.CLOSE and first.data == 1013 and attempt < 3:
                    errors["retried after 1013"] += 1
                    await asyncio.sleep(0.5 * attempt)
                    continue
                if first.type is not aiohttp.WSMsgType.TEXT or not first.data.startswith(
                    '{"type":"connected"'
                ):
                    errors[f"first frame {first.type.name}: {str(first.data)[:80]}"] += 1
                    await ws.close()
                    return
                break
            else:
                return
            latencies.append((time.perf_counter() - started) * 1000.0)
            member = Member(ws)
            members.append(member)
            asyncio.get_running_loop().create_task(member.receive())

    await asyncio.gather(*(connect(t) for t in tokens))
    return members, latencies, errors


async def collect(members: list[Member], phase: str, count: int, wait_s: float) -> dict[str, Any]:
    started = time.monotonic()
    while time.monotonic() - started < wait_s:
        if all(m.count(phase) >= count or m.close_code is not None for m in members):
            break
        await asyncio.sleep(POLL)
    latencies: list[float] = []
    by_seq: dict[int, list[float]] = {}
    first_recv = float("inf")
    last_recv = 0.0
    first_sent = float("inf")
    missing = 0
    duplicates = 0
    incomplete = 0
    frames = 0
    for member in members:
        received = member.frames.get(phase, [])
        frames += len(received)
        seqs = {seq for seq, _, _ in received}
        duplicates += len(received) - len(seqs)
        if len(seqs) < count:
            incomplete += 1
            missing += count - len(seqs)
        for seq, recv, sent in received:
            latency = round((recv - sent) * 1000.0, 3)
            latencies.append(latency)
            by_seq.setdefault(seq, []).append(latency)
            first_recv = min(first_recv, recv)
            last_recv = max(last_recv, recv)
            first_sent = min(first_sent, sent)
    closed = Counter(str(m.close_code) for m in members if m.close_code is not None)
    return {
        "event": "collected",
        "phase": phase,
        "members": len(members),
        "frames": frames,
        "missing": missing,
        "duplicates": duplicates,
        "incomplete_members": incomplete,
        "closed": dict(closed),
        "first_sent": first_sent if frames else None,
        "first_recv": first_recv if frames else None,
        "last_recv": last_recv if frames else None,
        "waited_s": round(time.monotonic() - started, 3),
        "cpu_s": round(time.process_time(), 3),
        "latencies_ms": latencies,
        "by_seq_ms": {
            str(seq): [min(v), sorted(v)[len(v) // 2], max(v)] for seq, v in sorted(by_seq.items())
        },
    }


async def main() -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=64 * 1024 * 1024)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    config = orjson.loads(await reader.readline())
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as http:
        started = time.perf_counter()
        members, latencies, errors = await connect_all(
            http, config["ws_url"], config["tokens"], int(config.get("concurrency", 50))
        )
        emit(
            {
                "event": "ready",
                "connected": len(members),
                "failed": sum(errors.values()),
                "errors": dict(errors),
                "connect_seconds": round(time.perf_counter() - started, 3),
                "cpu_s": round(time.process_time(), 3),
                "connect_latencies_ms": [round(v, 3) for v in latencies],
            }
        )
        while True:
            line = await reader.readline()
            if not line:
                break
            command = orjson.loads(line)
            if command["cmd"] == "collect":
                emit(
                    await collect(
                        members, command["phase"], int(command["count"]), float(command["timeout"])
                    )
                )
            elif command["cmd"] == "presence":
                emit({"event": "presence", "frames": sum(m.other for m in members)})
            elif command["cmd"] == "close":
                break
        await asyncio.gather(*(m.ws.close() for m in members), return_exceptions=True)
    emit({"event": "closed"})


if __name__ == "__main__":
    if "--uvloop" in sys.argv[1:]:
        import uvloop

        uvloop.run(main())
    else:
        asyncio.run(main())
