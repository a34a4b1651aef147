"""Fan-out: one shared session, N members in separate client processes, one sender.

Members are read-level users (``Onyx-Readers``; a shared session may be viewed
by them), ``members_per_user`` sockets each, connected by
:mod:`tests.bench.fanout_client` processes. The sender is the session's owner
on its own WebSocket in this process; every message carries
``metadata = {"phase": ..., "t": time.time()}`` and each member records receive
time minus ``t`` (one clock: all processes run on this machine).

Phases:
- latency: ``messages`` messages, ``interval`` seconds apart; p50/p95/p99 over
  every (member, message) pair, and the loss (every member must get every one);
- burst (saturation): ``burst`` messages written back to back; delivered frames
  per second = frames received by all members / (last receive - first send).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import sys
import time
from typing import Any

import aiohttp
import orjson

from tests.bench.client import Api, BenchError, expect_frame
from tests.bench.service import (
    REPO,
    Service,
    process_cpu_seconds,
    system_cpu_seconds,
    wait_idle,
)
from tests.bench.stats import summarize

READY_TIMEOUT = 300.0


class Worker:
    """One fan-out client process."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    @classmethod
    async def start(
        cls, ws_url: str, tokens: list[str], concurrency: int, loop: str = "asyncio"
    ) -> Worker:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.bench.fanout_client",
            *(["--uvloop"] if loop == "uvloop" else []),
            cwd=REPO,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            limit=256 * 1024 * 1024,
        )
        worker = cls(process)
        await worker.send({"ws_url": ws_url, "tokens": tokens, "concurrency": concurrency})
        return worker

    async def send(self, payload: dict[str, Any]) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(orjson.dumps(payload) + b"\n")
        await self.process.stdin.drain()

    async def read(self, wait_s: float) -> dict[str, Any]:
        assert self.process.stdout is not None
        line = await asyncio.wait_for(self.process.stdout.readline(), wait_s)
        if not line:
            raise BenchError("a fan-out client process ended early")
        return orjson.loads(line)  # type: ignore[no-any-return]

    async def stop(self) -> None:
        with contextlib.suppress(Exception):
            await self.send({"cmd": "close"})
            await self.read(30)
        try:
            await asyncio.wait_for(self.process.wait(), 30)
        except TimeoutError:
            self.process.kill()
            await self.process.wait()


class Sender:
    """The owner's socket; once connected, a task drains everything it receives
    (only one task may read a socket)."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.received = 0
        self.closed_code: int | None = None
        self._task: asyncio.Task[None] | None = None

    @classmethod
    async def connect(cls, owner: Api, session_id: str) -> Sender:
        sender = cls(await owner.ws_connect(session_id))
        await expect_frame(sender.ws, "connected")
        sender._task = asyncio.get_running_loop().create_task(sender._drain())
        return sender

    async def _drain(self) -> None:
        async for _ in self.ws:
            self.received += 1
        self.closed_code = self.ws.close_code

    async def send(self, phase: str, n: int) -> None:
        frame = {
            "type": "message",
            "content": f"fan-out {phase} {n}",
            "metadata": {"phase": phase, "t": time.time()},
        }
        await self.ws.send_str(orjson.dumps(frame).decode())

    async def close(self) -> None:
        await self.ws.close()
        if self._task is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._task, 10)


class CpuWindow:
    """CPU seconds used during a phase by the server, the client processes (and this
    driver, which sends) and the rest of the machine (PostgreSQL, and any other work
    on a shared host, shows up as ``others_s``)."""

    def __init__(self, server_pid: int, client_pids: list[int]) -> None:
        self.pids = [server_pid, *client_pids, os.getpid()]
        self.started = time.perf_counter()
        self.before = [process_cpu_seconds(p) for p in self.pids]
        self.system_before = system_cpu_seconds()

    def result(self) -> dict[str, float]:
        used = [process_cpu_seconds(p) - b for p, b in zip(self.pids, self.before, strict=True)]
        system = system_cpu_seconds() - self.system_before
        return {
            "wall_s": round(time.perf_counter() - self.started, 3),
            "server_s": round(used[0], 3),
            "clients_s": round(sum(used[1:]), 3),
            "others_s": round(system - sum(used), 3),
        }


def merge(reports: list[dict[str, Any]], expected: int, members: int) -> dict[str, Any]:
    latencies = [v for r in reports for v in r["latencies_ms"]]
    frames = sum(r["frames"] for r in reports)
    closed: dict[str, int] = {}
    for r in reports:
        for code, n in r["closed"].items():
            closed[code] = closed.get(code, 0) + n
    received_by = sum(r["members"] for r in reports)
    # Members that never connected also count as loss.
    missing = sum(r["missing"] for r in reports) + (members - received_by) * expected
    result = summarize(latencies)
    result.update(
        {
            "members": members,
            "messages": expected,
            "expected_frames": members * expected,
            "frames": frames,
            "missing": missing,
            "duplicates": sum(r["duplicates"] for r in reports),
            "loss": missing > 0,
            "members_incomplete": sum(r["incomplete_members"] for r in reports)
            + (members - received_by),
            "closed": closed,
        }
    )
    firsts = [r["first_sent"] for r in reports if r["first_sent"] is not None]
    lasts = [r["last_recv"] for r in reports if r["last_recv"] is not None]
    if firsts and lasts:
        result["first_sent"] = min(firsts)
        result["last_recv"] = max(lasts)
    by_seq: dict[str, list[float]] = {}
    for r in reports:
        for seq, (low, mid, high) in r.get("by_seq_ms", {}).items():
            if seq in by_seq:
                old = by_seq[seq]
                by_seq[seq] = [min(old[0], low), max(old[1], mid), max(old[2], high)]
            else:
                by_seq[seq] = [low, mid, high]
    # Per message: [min, median (largest of the processes' medians), max] milliseconds.
    result["by_message_ms"] = by_seq
    return result


async def run_fanout(
    service: Service,
    owner: Api,
    members: int,
    *,
    processes: int,
    members_per_user: int,
    messages: int,
    interval: float,
    burst: int,
    concurrency: int = 50,
    collect_s: float = 120.0,
    client_loop: str = "asyncio",
) -> dict[str, Any]:
    session = await owner.post_json(
        "/api/chat/sessions", {"title": f"fan-out {members}", "is_shared": True}
    )
    session_id = session["id"]
    users = math.ceil(members / members_per_user)
    user_tokens = [
        service.mint(f"member-{members}-{i}@bench.example", ["Onyx-Readers"]) for i in range(users)
    ]
    tokens = [user_tokens[i % users] for i in range(members)]
    shares = [tokens[i::processes] for i in range(processes)]
    ws_url = owner.ws_url(session_id)
    result: dict[str, Any] = {
        "members": members,
        "users": users,
        "client_processes": processes,
        "client_loop": client_loop,
        "session_id": session_id,
    }

    sender = await Sender.connect(owner, session_id)

    cpu_before = service.cpu_seconds()
    started = time.perf_counter()
    workers = [
        await Worker.start(ws_url, share, concurrency, client_loop) for share in shares if share
    ]
    client_pids = [w.process.pid for w in workers]
    window = CpuWindow(service.pid, client_pids)
    try:
        ready = [await w.read(READY_TIMEOUT) for w in workers]
        connected = sum(r["connected"] for r in ready)
        result["connect"] = {
            "connected": connected,
            "failed": sum(r["failed"] for r in ready),
            "errors": [r["errors"] for r in ready if r["errors"]],
            "room_fill_s": round(time.perf_counter() - started, 3),
            "latency_ms": summarize(v for r in ready for v in r["connect_latencies_ms"]),
        }
        # Presence (user_joined) frames still in flight are not part of the measurement.
        pids = [service.pid, *client_pids]
        result["connect"]["settle_s"] = round(await wait_idle(*pids), 3)
        result["connect"]["server_cpu_s"] = round(service.cpu_seconds() - cpu_before, 3)
        result["connect"]["cpu"] = window.result()
        if connected < members:
            result["connect"]["warning"] = f"only {connected} of {members} members connected"

        # --- latency -------------------------------------------------------------
        phase = f"latency-{members}"
        window = CpuWindow(service.pid, client_pids)
        cpu_before = service.cpu_seconds()
        for n in range(messages):
            await sender.send(phase, n)
            await asyncio.sleep(interval)
        for w in workers:
            await w.send(
                {"cmd": "collect", "phase": phase, "count": messages, "timeout": collect_s}
            )
        reports = [await w.read(collect_s + 60) for w in workers]
        latency = merge(reports, messages, members)
        latency["interval_s"] = interval
        latency["server_cpu_s"] = round(service.cpu_seconds() - cpu_before, 3)
        latency["cpu"] = window.result()
        latency.pop("first_sent", None)
        latency.pop("last_recv", None)
        result["latency"] = latency
        await wait_idle(*pids)

        # --- burst (saturation) ------------------------------------------------------
        if burst:
            phase = f"burst-{members}"
            window = CpuWindow(service.pid, client_pids)
            cpu_before = service.cpu_seconds()
            for n in range(burst):
                await sender.send(phase, n)
            for w in workers:
                await w.send(
                    {"cmd": "collect", "phase": phase, "count": burst, "timeout": collect_s}
                )
            reports = [await w.read(collect_s + 60) for w in workers]
            saturation = merge(reports, burst, members)
            saturation["server_cpu_s"] = round(service.cpu_seconds() - cpu_before, 3)
            saturation["cpu"] = window.result()
            if "last_recv" in saturation:
                elapsed = saturation["last_recv"] - saturation["first_sent"]
                saturation["elapsed_s"] = round(elapsed, 3)
                saturation["frames_per_s"] = round(saturation["frames"] / elapsed, 1)
                saturation["server_cpu_share"] = round(saturation["server_cpu_s"] / elapsed, 3)
            for key in ("first_sent", "last_recv", "p95", "mean", "min"):
                saturation.pop(key, None)
            result["burst"] = saturation
    except (BenchError, aiohttp.ClientError, OSError, TimeoutError) as exc:
        result["error"] = f"{type(exc).__name__}: {exc}"
        result["sender_close_code"] = sender.ws.close_code
    finally:
        for w in workers:
            await w.stop()
        await sender.close()
        # user_left storm of the closing room; let it drain before the next phase.
        result["teardown_settle_s"] = round(await wait_idle(service.pid), 3)
    result["sender_frames_received"] = sender.received
    return result
