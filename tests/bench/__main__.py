"""``python -m tests.bench [--db sqlite|postgres|both] [--quick]``: see :mod:`tests.bench`.

Steps, per database, against a service this command starts itself:
1. ``/healthz`` and ``/api/me`` (cached token), sequential;
2. seed 50 sessions x 20 messages through REST (1,000 stored messages);
3. at that size: list (``limit=50&include_messages=true``), REST send, newest
   page of messages; then WebSocket send and WebSocket connect;
4. seed through SQL up to 100,000 stored messages (``--quick``: 10,000), spread
   over the 50 listed sessions, and measure list, REST send and page again;
5. fan-out to 200, 1,000 and 2,000 members (``--quick``: 200), every member a
   distinct read-level user: room fill, then 20 messages 100 ms apart (200 ms at
   2,000 members) for latency and loss, then a burst of 100 messages written back
   to back for delivered frames per second (at 1,000 members; ``--quick``: 200);
6. chatsvc against the bare aiohttp peer (``../shared/bench/bare_aiohttp_peer.py``,
   skipped with a message when absent), both driven by this process: see
   :mod:`tests.bench.peer` and docs/benchmarks.md.

The server is pinned to the first CPU and this driver and the fan-out client
processes to the others (``--no-pin`` to switch off); the record says who had
which CPUs and how much CPU the rest of the machine used meanwhile.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import aiohttp

from tests.bench import report, scenarios
from tests.bench.client import Api
from tests.bench.fanout import run_fanout
from tests.bench.profiling import PhaseProfiler
from tests.bench.seed import BenchDatabase, seed_sessions
from tests.bench.service import (
    BENCH_SETTINGS,
    REPO,
    Service,
    cpu_split,
    raise_nofile_limit,
    system_cpu_seconds,
)

SESSIONS = 50
MESSAGES_PER_SESSION = 20


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tests.bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--db", choices=("sqlite", "postgres", "both"), default="sqlite")
    parser.add_argument("--quick", action="store_true", help="reduced run (< 1 min per database)")
    parser.add_argument(
        "--samples", type=int, help="samples per latency figure (default 300; quick 50)"
    )
    parser.add_argument("--members", help="fan-out sizes, comma-separated (default 200,1000,2000)")
    parser.add_argument("--burst-members", type=int, help="fan-out size that gets the burst (1000)")
    parser.add_argument("--burst", type=int, help="messages in the saturation burst (default 100)")
    parser.add_argument("--fanout-messages", type=int, help="latency messages per fan-out (20)")
    parser.add_argument(
        "--fanout-interval",
        type=float,
        help="seconds between latency messages (default 0.1 up to 1,000 members, else 0.2)",
    )
    parser.add_argument("--fanout-processes", type=int, default=1, help="fan-out client processes")
    parser.add_argument(
        "--client-loop",
        choices=("asyncio", "uvloop"),
        default="asyncio",
        help="the fan-out client processes' event loop (default: %(default)s)",
    )
    parser.add_argument(
        "--members-per-user",
        type=int,
        default=1,
        help="sockets per member user (1: every member is a distinct user)",
    )
    parser.add_argument("--large", type=int, help="stored messages for the scale step (100000)")
    parser.add_argument(
        "--skip",
        default="",
        help="comma-separated steps to skip: auth,data,ws,scale,fanout,peer",
    )
    parser.add_argument(
        "--server-loop",
        choices=("auto", "asyncio"),
        default="auto",
        help="auto: uvloop when installed (as run.py); asyncio: hide uvloop",
    )
    parser.add_argument(
        "--no-pin",
        action="store_true",
        help="do not pin the server to the first CPU and the clients to the others",
    )
    parser.add_argument(
        "--server-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra CHATSVC_* setting for the service (repeatable)",
    )
    parser.add_argument(
        "--profile", action="store_true", help="py-spy each phase (var/bench/profile/)"
    )
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=0,
        metavar="SECONDS",
        help="before each database, wait up to this long for a 1-min load average < 1",
    )
    parser.add_argument("--label", default="", help="added to the JSON file name and record")
    parser.add_argument("--keep", action="store_true", help="keep the temporary data directory")
    args = parser.parse_args(argv)
    quick = args.quick
    args.samples = args.samples or (50 if quick else 300)
    args.me_requests = 200 if quick else 1000
    args.members = [
        int(x) for x in (args.members or ("200" if quick else "200,1000,2000")).split(",")
    ]
    args.burst_members = args.burst_members or (200 if quick else 1000)
    args.burst = args.burst if args.burst is not None else (50 if quick else 100)
    args.fanout_messages = args.fanout_messages or (10 if quick else 20)
    args.large = args.large or (10_000 if quick else 100_000)
    args.skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    return args


def host_info(client_cpus: set[int] | None, server_cpus: set[int] | None) -> dict[str, Any]:
    versions = {}
    for name in ("aiohttp", "orjson", "SQLAlchemy", "asyncpg", "aiosqlite", "uvloop"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "hostname": platform.node(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "cpus_available": sorted(os.sched_getaffinity(0)),
        "server_cpus": sorted(server_cpus) if server_cpus else "unpinned (all)",
        "client_cpus": sorted(client_cpus) if client_cpus else "unpinned (all)",
        "cpu_note": (
            "server pinned to its CPU set (its aiosqlite thread too); this driver and the fan-out "
            "client processes pinned to theirs; PostgreSQL's backends are not pinned"
            if server_cpus
            else "nothing pinned"
        ),
        "load_average_at_start": os.getloadavg(),
        "git": git_state(),
        "versions": versions,
    }


def git_state() -> dict[str, Any]:
    """The commit measured, and whether chatsvc/ had uncommitted changes."""

    def git(*args: str) -> str:
        try:
            out = subprocess.run(
                ["git", *args], cwd=REPO, capture_output=True, text=True, timeout=10, check=False
            )
        except OSError:
            return ""
        return out.stdout.strip()

    return {
        "commit": git("rev-parse", "HEAD"),
        "chatsvc_dirty": bool(git("status", "--porcelain", "chatsvc")),
    }


async def run_database(
    db: str, args: argparse.Namespace, server_cpus: set[int] | None, stamp: str
) -> dict[str, Any]:
    settings = dict(BENCH_SETTINGS)
    for item in args.server_env:
        key, _, value = item.partition("=")
        settings[key] = value
    service = Service(db, settings, cpus=server_cpus, loop=args.server_loop, keep=args.keep)
    run: dict[str, Any] = {"started_at": datetime.now(UTC).isoformat()}
    t0 = time.perf_counter()
    machine_before = system_cpu_seconds()
    driver_before = time.process_time()
    log = lambda msg: print(f"[{db} {time.perf_counter() - t0:6.1f}s] {msg}", flush=True)  # noqa: E731
    await service.start()
    run["service"] = service.describe()
    log(f"service pid {service.pid} on {service.base_url} ({service.loop_used})")
    profiler = None
    if args.profile:
        out_dir = REPO / "var" / "bench" / "profile"
        out_dir.mkdir(parents=True, exist_ok=True)
        profiler = PhaseProfiler(service.pid, out_dir, f"{stamp}-{db}")

    def phase(name: str) -> Any:
        return contextlib.nullcontext() if profiler is None else profiler.phase(name)

    store = BenchDatabase(service.settings())
    try:
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector) as http:
            owner = Api(
                http, service.base_url, service.mint("bench-owner@bench.example", ["Onyx-Writers"])
            )
            anonymous = Api(http, service.base_url, None)
            me = await owner.get_json("/api/me")
            n, warm = args.samples, max(10, args.samples // 10)

            if "auth" not in args.skip:
                async with phase("auth"):
                    run["auth"] = await scenarios.auth_overhead(
                        service, owner, anonymous, args.me_requests
                    )
                log(
                    f"/api/me p50 {run['auth']['me']['p50']} ms, /healthz p50 {run['auth']['healthz']['p50']} ms"
                )

            seeded = await seed_sessions(owner, SESSIONS, MESSAGES_PER_SESSION)
            target_id = seeded[0]["id"]
            await store.analyze()
            log(f"seeded {SESSIONS} sessions x {MESSAGES_PER_SESSION} messages through REST")

            async def data_path(label: str) -> dict[str, Any]:
                stage: dict[str, Any] = {"stored_messages": await store.count_messages()}
                async with phase(f"list-{label}"):
                    stage["list"] = await scenarios.list_sessions(service, owner, n, warm)
                async with phase(f"send-rest-{label}"):
                    stage["send_rest"] = await scenarios.send_rest(
                        service, owner, target_id, n, warm
                    )
                async with phase(f"page-{label}"):
                    stage["page"] = await scenarios.page_messages(
                        service, owner, target_id, n, warm
                    )
                log(
                    f"@{stage['stored_messages']} msgs: list p95 {stage['list']['p95']} ms, "
                    f"send p95 {stage['send_rest']['p95']} ms, page p95 {stage['page']['p95']} ms"
                )
                return stage

            if "data" not in args.skip:
                run["stage_small"] = await data_path("small")
            if "ws" not in args.skip:
                async with phase("send-ws"):
                    run["send_ws"] = await scenarios.send_ws(service, owner, target_id, n, warm)
                async with phase("connect"):
                    run["connect"] = await scenarios.ws_connect(
                        service, owner, seeded[1]["id"], n, warm
                    )
                log(
                    f"ws send p95 {run['send_ws']['p95']} ms, connect p95 {run['connect']['p95']} ms"
                )
            if "scale" not in args.skip and "data" not in args.skip:
                stored = await store.count_messages()
                started = time.perf_counter()
                added = await store.add_messages(
                    [uuid.UUID(s["id"]) for s in seeded],
                    max(0, args.large - stored),
                    uuid.UUID(me["id"]),
                )
                run["scale_seed"] = {
                    "method": "SQL insert into chat_messages (seq after each session's last_seq), "
                    "then chat_sessions.last_seq updated; spread over the 50 listed sessions",
                    "added": added,
                    "seconds": round(time.perf_counter() - started, 2),
                }
                log(f"seeded {added} messages through SQL in {run['scale_seed']['seconds']} s")
                run["stage_large"] = await data_path("large")
            if "fanout" not in args.skip:
                run["fanout"] = []
                for members in args.members:
                    async with phase(f"fanout-{members}"):
                        result = await run_fanout(
                            service,
                            owner,
                            members,
                            processes=args.fanout_processes,
                            members_per_user=args.members_per_user,
                            messages=args.fanout_messages,
                            interval=args.fanout_interval or (0.1 if members <= 1000 else 0.2),
                            burst=args.burst if members == args.burst_members else 0,
                            client_loop=args.client_loop,
                        )
                    run["fanout"].append(result)
                    lat = result.get("latency", {})
                    line = (
                        f"fan-out {members}: connected {result['connect']['connected']} in "
                        f"{result['connect']['room_fill_s']} s, p50 {lat.get('p50')} p99 {lat.get('p99')} ms, "
                        f"missing {lat.get('missing')}"
                    )
                    if "burst" in result:
                        line += f", burst {result['burst'].get('frames_per_s')} frames/s"
                    log(line)
    except Exception as exc:
        # Keep what was measured; the error is part of the record.
        run["error"] = f"{type(exc).__name__}: {exc}"
        print(f"[{db}] FAILED: {run['error']}", file=sys.stderr, flush=True)
        run["server_log_tail"] = service.log_tail()
    finally:
        await store.close()
        log_copy = REPO / "var" / "bench" / f"{stamp}-{db}-server.log"
        log_copy.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(OSError):
            log_copy.write_bytes(service.log_path.read_bytes())
            run["server_log"] = str(log_copy.relative_to(REPO))
        server_cpu = service.cpu_seconds() if service.process else 0.0
        run["server_exit_code"] = await service.stop()
        machine = system_cpu_seconds() - machine_before
        driver = time.process_time() - driver_before
        run["machine_cpu"] = {
            "wall_s": round(time.perf_counter() - t0, 1),
            "cores": os.cpu_count(),
            "server_s": round(server_cpu, 1),
            "bench_driver_s": round(driver, 1),
            "everything_else_s": round(machine - server_cpu - driver, 1),
            "note": "everything_else: fan-out clients, PostgreSQL, and other work on the host",
        }
        if profiler is not None:
            run["profiles"] = profiler.files
    run["seconds"] = round(time.perf_counter() - t0, 1)
    run["load_average_at_end"] = os.getloadavg()
    run["rows"] = [r.as_dict() for r in report.rows_for(run)]
    return run


async def wait_quiet(limit: float, load: float = 1.0) -> float:
    started = time.monotonic()
    while os.getloadavg()[0] >= load and time.monotonic() - started < limit:  # noqa: ASYNC110
        await asyncio.sleep(5)
    return time.monotonic() - started


async def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    raise_nofile_limit()
    server_cpus, client_cpus = cpu_split(not args.no_pin)
    if client_cpus:
        os.sched_setaffinity(0, client_cpus)  # fan-out client processes inherit it
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    record: dict[str, Any] = {
        "command": " ".join(
            [Path(sys.executable).name, "-m", "tests.bench", *(argv or sys.argv[1:])]
        ),
        "label": args.label,
        "quick": args.quick,
        "host": host_info(client_cpus, server_cpus),
        "options": {k: (sorted(v) if isinstance(v, set) else v) for k, v in vars(args).items()},
        "runs": {},
    }
    databases = ["sqlite", "postgres"] if args.db == "both" else [args.db]
    failed = False
    for db in databases:
        if args.wait_quiet:
            waited = await wait_quiet(args.wait_quiet)
            print(
                f"[{db}] waited {waited:.0f} s for a quiet machine (load {os.getloadavg()[0]:.2f})"
            )
        try:
            record["runs"][db] = await run_database(db, args, server_cpus, stamp)
        except Exception as exc:  # the service did not start
            record["runs"][db] = {"error": f"{type(exc).__name__}: {exc}"}
            print(f"[{db}] FAILED: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        failed = failed or "error" in record["runs"][db]
    out_dir = REPO / "var" / "bench"
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / f"{stamp}{'-' + args.label if args.label else ''}.json"
    out.write_text(json.dumps(record, indent=2, default=str))
    print()
    for db, run in record["runs"].items():
        if "service" not in run:
            print(f"{db}: FAILED: {run['error']}\n")
            continue
        service = run["service"]
        title = (
            f"chatsvc benchmark: {db}, {service['event_loop']}, server CPUs {service['cpus']}, "
            f"client CPUs {record['host']['client_cpus']}{' (quick)' if args.quick else ''}"
        )
        print(report.render(title, [report.Row(**r) for r in run["rows"]]))
        cpu = run.get("machine_cpu")
        if cpu:
            print(
                f"CPU over {cpu['wall_s']} s wall on {cpu['cores']} cores: server {cpu['server_s']} s, "
                f"bench driver {cpu['bench_driver_s']} s, everything else {cpu['everything_else_s']} s "
                "(fan-out clients, PostgreSQL, other work on the host)"
            )
        if "error" in run:
            print(f"FAILED: {run['error']}")
        print()
    if "peer" not in args.skip:
        # chatsvc against the bare aiohttp peer, the same client for both (tests/bench/peer.py).
        peer_args = ["--db", databases[0], "--runs", "1" if args.quick else "3"]
        if args.quick:
            peer_args += ["--members", "200", "--burst", "20", "--idle", "1000"]
        if args.no_pin:
            peer_args.append("--no-pin")
        # Its own process: its driver runs on uvloop (see tests.bench.peer.run).
        peer = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tests.bench.peer", *peer_args, cwd=REPO
        )
        if await peer.wait() != 0:
            failed = True
    print(f"load average at start {record['host']['load_average_at_start']}")
    print(f"written: {out.relative_to(REPO)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
