"""``python -m tests.bench.cross_process [--members 500] [--messages 20]``

Delivery latency for one session whose members are split over two chatsvc
processes that share PostgreSQL and Redis: the sender is on process A; members
on A are served locally, members on B through Redis pub/sub. Both figures come
from the same run. Needs the local PostgreSQL and Redis (``CHATSVC_BENCH_REDIS_URL``,
default ``redis://127.0.0.1:6379/0``). Writes JSON to ``var/bench/``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from datetime import UTC, datetime
from typing import Any

import aiohttp

from tests.bench.service import BENCH_SETTINGS, REPO, Service, raise_nofile_limit
from tests.bench.stats import summarize

REDIS_URL = os.environ.get("CHATSVC_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")


class Member:
    def __init__(self, node: str, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.node = node
        self.ws = ws
        self.latencies: dict[int, float] = {}

    async def receive(self) -> None:
        async for msg in self.ws:
            if msg.type is not aiohttp.WSMsgType.TEXT:
                break
            frame = json.loads(msg.data)
            if frame.get("type") == "message" and "t" in frame.get("metadata", {}):
                self.latencies[frame["seq"]] = (time.time() - frame["metadata"]["t"]) * 1000.0


async def connect(
    http: aiohttp.ClientSession, url: str, token: str, node: str, gate: asyncio.Semaphore
) -> Member:
    async with gate:
        ws = await http.ws_connect(url, headers={"Authorization": f"Bearer {token}"})
        first = await ws.receive_json(timeout=30)
        assert first["type"] == "connected", first
    member = Member(node, ws)
    asyncio.get_running_loop().create_task(member.receive())
    return member


async def run(members: int, messages: int, interval: float) -> dict[str, Any]:
    shared = {**BENCH_SETTINGS, "CHATSVC_BROKER_URL": REDIS_URL}
    a = Service("postgres", shared)
    await a.start()
    b = Service(
        "sqlite",
        {
            **shared,
            "CHATSVC_DATA_DIR": str(a.data_dir),  # the same signing key
            "CHATSVC_DATABASE_URL": a.env["CHATSVC_DATABASE_URL"],
            "CHATSVC_AUTO_MIGRATE": "false",
        },
    )
    try:
        await b.start()
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector) as http:
            owner = a.mint("owner@example.com", ["Onyx-Writers"])
            resp = await http.post(
                f"{a.base_url}/api/chat/sessions",
                json={"title": "cross-process", "is_shared": True},
                headers={"Authorization": f"Bearer {owner}"},
            )
            session_id = (await resp.json())["id"]
            path = f"/api/chat/sessions/{session_id}/ws"
            gate = asyncio.Semaphore(50)
            joined = await asyncio.gather(
                *(
                    connect(
                        http,
                        (a if i % 2 == 0 else b).ws_base_url + path,
                        a.mint(f"member{i}@example.com", ["Onyx-Readers"]),
                        "A" if i % 2 == 0 else "B",
                        gate,
                    )
                    for i in range(members)
                )
            )
            sender = await http.ws_connect(
                a.ws_base_url + path, headers={"Authorization": f"Bearer {owner}"}
            )
            await sender.receive_json(timeout=30)
            await asyncio.sleep(2.0)  # let the presence storm of the room fill settle
            for i in range(messages):
                await sender.send_json(
                    {"type": "message", "content": f"m{i}", "metadata": {"t": time.time()}}
                )
                await asyncio.sleep(interval)
            await asyncio.sleep(2.0)
            result: dict[str, Any] = {}
            for node, label in (("A", "same process"), ("B", "other process (Redis)")):
                group = [m for m in joined if m.node == node]
                samples = [v for m in group for v in m.latencies.values()]
                expected = len(group) * messages
                result[label] = {
                    "members": len(group),
                    **summarize(samples),
                    "missing": expected - len(samples),
                }
            for member in joined:
                await member.ws.close()
            await sender.close()
    finally:
        await b.stop()
        await a.stop()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.cross_process")
    parser.add_argument("--members", type=int, default=500)
    parser.add_argument("--messages", type=int, default=20)
    parser.add_argument("--interval", type=float, default=0.1, help="seconds between messages")
    args = parser.parse_args()
    raise_nofile_limit()
    result = asyncio.run(run(args.members, args.messages, args.interval))
    print(
        f"\n{args.members} members in one session, split over two processes, {args.messages} messages"
    )
    print(f"{'members served by':<24} {'n':>5} {'p50 ms':>8} {'p99 ms':>8} {'missing':>8}")
    for label, row in result.items():
        print(
            f"{label:<24} {row['members']:>5} {row['p50']:>8} {row['p99']:>8} {row['missing']:>8}"
        )
    out = REPO / "var" / "bench" / f"cross-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps({"members": args.members, "messages": args.messages, **result}, indent=2)
    )
    print(f"written: {out.relative_to(REPO)}")


if __name__ == "__main__":
    main()
