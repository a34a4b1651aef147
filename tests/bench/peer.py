"""``python -m tests.bench.peer [--db sqlite|postgres] [--runs 3]``: chatsvc against
the bare aiohttp peer, the same client (this process) driving both in one run.

The peer is a bare aiohttp broadcast server (not part of chatsvc), given with
``--peer PATH`` (or ``CHATSVC_BENCH_PEER``; by default ``../shared/bench/
bare_aiohttp_peer.py`` beside the repository) and run as ``--strategy queued
--uvloop --orjson``; when it is absent (or ``--no-peer``) the comparison is
skipped with a message and chatsvc's absolute figures are still measured.
``--profile DIR`` samples chatsvc with py-spy in each phase of its first run
(``fill``, ``burst``, ``idle``; summarise with ``tests.bench.profile_summary``).
Per target and run:

- fill: ``members`` distinct users (chatsvc; the peer has no users) connect,
  50 at a time, until each has its first frame: seconds;
- saturation: one sender writes ``burst`` messages back to back; delivered
  frames/s = frames received by all members / (last receive - first send), and
  server CPU microseconds per delivered frame (the server's CPU time over the
  burst divided by the frames delivered);
- idle: ``idle`` sockets of one user connect (200 at a time, through the bare
  client of ``tests.bench.rawws``): sockets/s, the server's CPU microseconds
  per connect, and the server's RSS growth per socket.

The figures are medians over the runs; the ratios are chatsvc / peer (for
frames/s and sockets/s higher is better; for CPU, fill seconds and RSS lower
is better). See docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import orjson
from yarl import URL

from tests.bench import rawws
from tests.bench.profiling import PhaseProfiler
from tests.bench.service import (
    BENCH_SETTINGS,
    REPO,
    Service,
    cpu_split,
    free_port,
    process_cpu_seconds,
    raise_nofile_limit,
)

DEFAULT_PEER = REPO.parent / "shared" / "bench" / "bare_aiohttp_peer.py"
MARK = "burst-"


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class Target:
    """One server under test: how to reach a room, and how to send into it."""

    name: str
    pid: int
    profiler: PhaseProfiler | None = None

    @contextlib.asynccontextmanager
    async def phase(self, name: str) -> AsyncIterator[None]:
        """py-spy over one phase when this target is profiled, else nothing."""
        if self.profiler is None:
            yield
            return
        async with self.profiler.phase(name):
            yield

    def url(self, room: str) -> str:
        raise NotImplementedError

    def headers(self, i: int) -> dict[str, str]:
        return {}

    def idle_headers(self) -> dict[str, str]:
        return {}

    def message(self, n: int) -> str:
        return orjson.dumps({"type": "message", "content": f"{MARK}{n}"}).decode()

    async def new_room(self, http: aiohttp.ClientSession, label: str) -> str:
        return label


class Peer(Target):
    name = "peer"

    def __init__(self, path: Path, cpus: set[int] | None) -> None:
        self.path = path
        self.port = free_port()
        self.cpus = cpus
        self.process: subprocess.Popen[bytes] | None = None

    async def start(self) -> None:
        def pin() -> None:
            if self.cpus:
                os.sched_setaffinity(0, self.cpus)

        self.process = subprocess.Popen(  # noqa: ASYNC220
            [
                sys.executable,
                str(self.path),
                str(self.port),
                "--strategy",
                "queued",
                "--uvloop",
                "--orjson",
            ],
            stdout=subprocess.PIPE,
            preexec_fn=pin,
        )
        assert self.process.stdout is not None
        line = await asyncio.get_running_loop().run_in_executor(None, self.process.stdout.readline)
        if not line.startswith(b"READY"):
            raise RuntimeError(f"the peer did not start: {line!r}")
        self.pid = self.process.pid

    def url(self, room: str) -> str:
        return f"ws://127.0.0.1:{self.port}/ws/{room}"

    async def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            with contextlib.suppress(Exception):
                self.process.wait(10)


class Chatsvc(Target):
    name = "chatsvc"

    def __init__(self, service: Service) -> None:
        self.service = service
        self.pid = service.pid
        self.owner = service.mint("peer-owner@bench.example", ["Onyx-Writers"])
        self.idle_token = service.mint("peer-idle@bench.example", ["Onyx-Readers"])
        self._members: list[str] = []

    def tokens(self, n: int) -> None:
        while len(self._members) < n:
            i = len(self._members)
            self._members.append(self.service.mint(f"peer-m{i}@bench.example", ["Onyx-Readers"]))

    def url(self, room: str) -> str:
        return f"{self.service.ws_base_url}/api/chat/sessions/{room}/ws"

    def headers(self, i: int) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._members[i]}"}

    def idle_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.idle_token}"}

    async def new_room(self, http: aiohttp.ClientSession, label: str) -> str:
        resp = await http.post(
            f"{self.service.base_url}/api/chat/sessions",
            json={"title": label, "is_shared": True},
            headers={"Authorization": f"Bearer {self.owner}"},
        )
        assert resp.status == 201, await resp.text()
        return str((await resp.json())["id"])


class Member:
    __slots__ = ("frames", "last", "ws")

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.frames = 0
        self.last = 0.0

    async def read(self) -> None:
        async for msg in self.ws:
            if msg.type is aiohttp.WSMsgType.TEXT and MARK in msg.data:
                self.frames += 1
                self.last = time.time()


async def connect_many(
    http: aiohttp.ClientSession, url: str, headers: list[dict[str, str]], concurrency: int
) -> tuple[list[aiohttp.ClientWebSocketResponse], float]:
    gate = asyncio.Semaphore(concurrency)
    sockets: list[aiohttp.ClientWebSocketResponse] = []

    async def one(h: dict[str, str]) -> None:
        async with gate:
            ws = await http.ws_connect(url, headers=h, autoping=True, max_msg_size=0)
            if url.endswith("/ws"):  # chatsvc answers with its connected frame first
                first = await ws.receive(timeout=60)
                assert first.type is aiohttp.WSMsgType.TEXT, first
            sockets.append(ws)

    started = time.perf_counter()
    await asyncio.gather(*(one(h) for h in headers))
    return sockets, time.perf_counter() - started


async def fanout(
    http: aiohttp.ClientSession, target: Target, members: int, burst: int
) -> dict[str, float]:
    room = await target.new_room(http, f"peer-fanout-{time.time()}")
    url = target.url(room)
    headers = [target.headers(i) for i in range(members)]
    async with target.phase("fill"):
        sockets, fill_s = await connect_many(http, url, headers, 50)
    readers = [Member(ws) for ws in sockets]
    tasks = [asyncio.create_task(m.read()) for m in readers]
    await asyncio.sleep(1.0)  # presence frames of the fill settle
    if isinstance(target, Chatsvc):
        sender = await http.ws_connect(url, headers={"Authorization": f"Bearer {target.owner}"})
        await sender.receive(timeout=30)
    else:
        sender = await http.ws_connect(url)
    drain = asyncio.create_task(_drain(sender))
    expected = members * burst
    async with target.phase("burst"):
        cpu0 = process_cpu_seconds(target.pid)
        first = time.time()
        for n in range(burst):
            await sender.send_str(target.message(n))
        deadline = time.monotonic() + 60
        while sum(m.frames for m in readers) < expected and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        cpu = process_cpu_seconds(target.pid) - cpu0
    delivered = sum(m.frames for m in readers)
    last = max(m.last for m in readers)
    await sender.close()
    drain.cancel()
    await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
    for t in tasks:
        t.cancel()
    return {
        "fill_s": round(fill_s, 3),
        "frames_per_s": round(delivered / max(last - first, 1e-6), 1),
        "cpu_us_per_frame": round(cpu * 1e6 / max(delivered, 1), 2),
        "lost": expected - delivered,
    }


async def _drain(ws: aiohttp.ClientWebSocketResponse) -> None:
    async for _ in ws:
        pass


async def idle(http: aiohttp.ClientSession, target: Target, count: int) -> dict[str, float]:
    room = await target.new_room(http, f"peer-idle-{time.time()}")
    url = URL(target.url(room))
    assert url.host is not None and url.port is not None
    before = rss_kb(target.pid)
    async with target.phase("idle"):
        cpu0 = process_cpu_seconds(target.pid)
        # The bare client: aiohttp's own costs the measuring process about what
        # a handshake costs the server, which would cap both targets alike.
        sockets, seconds = await rawws.connect_many(
            url.host,
            url.port,
            url.path,
            target.idle_headers(),
            count,
            200,
            first_frame=isinstance(target, Chatsvc),
        )
        cpu = process_cpu_seconds(target.pid) - cpu0
    await asyncio.sleep(1.0)
    after = rss_kb(target.pid)
    for socket in sockets:
        socket.close()
    await asyncio.sleep(1.0)
    return {
        "sockets_per_s": round(count / seconds, 1),
        "cpu_us_per_connect": round(cpu * 1e6 / count, 1),
        "rss_kb_per_socket": round((after - before) / count, 2),
    }


async def measure(target: Target, args: argparse.Namespace) -> dict[str, float]:
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as http:
        result = await fanout(http, target, args.members, args.burst)
        result.update(await idle(http, target, args.idle))
    return result


def median(runs: list[dict[str, float]]) -> dict[str, float]:
    return {k: statistics.median(r[k] for r in runs) for k in runs[0]}


async def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.peer", description=__doc__)
    parser.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--members", type=int, default=1000)
    parser.add_argument("--burst", type=int, default=100)
    parser.add_argument("--idle", type=int, default=10_000)
    parser.add_argument("--no-pin", action="store_true")
    parser.add_argument(
        "--peer",
        type=Path,
        default=Path(os.environ.get("CHATSVC_BENCH_PEER", DEFAULT_PEER)),
        help="the bare aiohttp broadcast server to compare with (default: %(default)s)",
    )
    parser.add_argument("--no-peer", action="store_true", help="measure chatsvc only")
    parser.add_argument(
        "--profile", type=Path, default=None, help="py-spy chatsvc's first run into this folder"
    )
    args = parser.parse_args(argv)
    raise_nofile_limit()
    server_cpus, client_cpus = cpu_split(not args.no_pin)
    if client_cpus:
        os.sched_setaffinity(0, client_cpus)
    results: dict[str, list[dict[str, float]]] = {"chatsvc": [], "peer": []}
    has_peer = not args.no_peer and args.peer.exists()
    if not has_peer and not args.no_peer:
        print(f"peer comparison skipped: {args.peer} not found (only chatsvc is measured)")
    for run in range(args.runs):
        service = Service(args.db, dict(BENCH_SETTINGS), cpus=server_cpus)
        await service.start()
        try:
            target = Chatsvc(service)
            target.tokens(args.members)
            if args.profile is not None and run == 0:
                args.profile.mkdir(parents=True, exist_ok=True)
                target.profiler = PhaseProfiler(service.pid, args.profile, f"chatsvc-{args.db}")
            results["chatsvc"].append(await measure(target, args))
        finally:
            await service.stop()
        print(f"run {run + 1} chatsvc: {results['chatsvc'][-1]}", flush=True)
        if has_peer:
            peer = Peer(args.peer, server_cpus)
            await peer.start()
            try:
                results["peer"].append(await measure(peer, args))
            finally:
                await peer.stop()
            print(f"run {run + 1} peer:    {results['peer'][-1]}", flush=True)
    ours = median(results["chatsvc"])
    theirs = median(results["peer"]) if results["peer"] else None
    print(f"\nchatsvc vs bare aiohttp peer, {args.db}, medians of {args.runs} runs")
    print(f"{'figure':<22}{'chatsvc':>12}{'peer':>12}{'ratio':>9}")
    for key, value in ours.items():
        other = theirs[key] if theirs else None
        ratio = f"{value / other:.2f}x" if other else "-"
        print(f"{key:<22}{value:>12}{other if other is not None else '-':>12}{ratio:>9}")
    out = REPO / "var" / "bench" / f"peer-{args.db}-{int(time.time())}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"runs": results, "chatsvc": ours, "peer": theirs}, indent=2))
    print(f"written: {out.relative_to(REPO)}")
    return 0


def run() -> int:
    """The driver on uvloop when it is installed (as chatsvc serves): a cheaper
    client measures more of the servers and less of itself."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main())
    return uvloop.run(main())


if __name__ == "__main__":
    sys.exit(run())
