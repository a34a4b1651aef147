"""``python -m tests.load.run [--users N --spawn-rate R --run-time 30s]``.

Starts a local service (as the benchmark does: ``python run.py`` on a free
port with a fresh data directory, or a fresh PostgreSQL database with
``--db postgres``), runs Locust headless against it::

    locust -f tests/load/locustfile.py --headless -u N -r R -t T --host <service>
           --csv var/load/chatsvc --html var/load/report.html

with the service's ``CHATSVC_DATA_DIR``/``CHATSVC_PORT`` in Locust's environment
(so the locustfile can mint development tokens), stops the service, prints the
aggregated figures and exits with Locust's status. Arguments after ``--`` go to
Locust unchanged (e.g. ``-- RestReader WebSocketMember`` to pick user classes).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

from tests.bench.service import REPO, Service

OUT_DIR = REPO / "var" / "load"

# Realistic limits, except that Locust users share a few identities (so the
# per-user message rate and socket cap are those of several people).
LOAD_SETTINGS = {
    "CHATSVC_ACCESS_LOG": "false",
    "CHATSVC_LOG_LEVEL": "WARNING",
    "CHATSVC_MESSAGE_RATE": "1000",
    "CHATSVC_MESSAGE_BURST": "2000",
    "CHATSVC_WS_MAX_PER_USER": "1000",
}


def parse_args(argv: list[str] | None = None) -> tuple[argparse.Namespace, list[str]]:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, extra = argv[:cut], argv[cut + 1 :]
    parser = argparse.ArgumentParser(
        prog="python -m tests.load.run",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-u", "--users", type=int, default=20)
    parser.add_argument("-r", "--spawn-rate", type=float, default=10)
    parser.add_argument("-t", "--run-time", default="30s")
    parser.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--out", type=Path, default=OUT_DIR, help="CSV and HTML report folder")
    return parser.parse_args(argv), extra


def _percentile(times: dict[str, int], fraction: float) -> float:
    """Locust's own way: the smallest recorded time that covers ``fraction`` of requests."""
    total = sum(times.values())
    if not total:
        return 0.0
    seen = 0
    for value, count in sorted(((float(k), c) for k, c in times.items()), key=lambda kv: kv[0]):
        seen += count
        if seen >= total * fraction:
            return value
    return max(float(k) for k in times)


def summary(prefix: Path) -> str:
    """The table from Locust's final statistics (``--json-file``), the same ones its
    own closing report prints (its CSV is written a moment before the last requests)."""
    path = Path(f"{prefix}.json")
    if not path.is_file():
        return f"(no {path})"
    entries = json.loads(path.read_text())
    rows = []
    merged: dict[str, int] = {}
    first = min((e["start_time"] for e in entries), default=0.0)
    last = max((e["last_request_timestamp"] or 0.0 for e in entries), default=0.0)
    for e in sorted(entries, key=lambda e: (e["method"], e["name"])):
        for k, c in e["response_times"].items():
            merged[k] = merged.get(k, 0) + c
        rows.append(
            (
                f"{e['method']} {e['name']}",
                e["num_requests"],
                e["num_failures"],
                e["response_times"],
            )
        )
    rows.append(("Aggregated", sum(r[1] for r in rows), sum(r[2] for r in rows), merged))
    seconds = max(last - first, 1e-9)
    width = max(len(r[0]) for r in rows)
    lines = [
        f"{'request'.ljust(width)}  {'count':>7}  {'fails':>6}  {'req/s':>8}  {'p50 ms':>7}  "
        f"{'p95 ms':>7}  {'p99 ms':>7}"
    ]
    for name, count, fails, times in rows:
        lines.append(
            f"{name.ljust(width)}  {count:>7}  {fails:>6}  {count / seconds:8.1f}  "
            f"{_percentile(times, 0.5):>7.0f}  {_percentile(times, 0.95):>7.0f}  "
            f"{_percentile(times, 0.99):>7.0f}"
        )
    return "\n".join(lines)


async def main(argv: list[str] | None = None) -> int:
    args, extra = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    prefix = args.out / "chatsvc"
    service = Service(args.db, LOAD_SETTINGS)
    await service.start()
    print(
        f"service pid {service.pid} on {service.base_url} ({args.db}, {service.loop_used})",
        flush=True,
    )
    command = [
        sys.executable, "-m", "locust",
        "-f", str(REPO / "tests" / "load" / "locustfile.py"),
        "--headless",
        "-u", str(args.users),
        "-r", str(args.spawn_rate),
        "-t", args.run_time,
        "--host", service.base_url,
        "--csv", str(prefix),
        "--html", str(args.out / "report.html"),
        "--only-summary",
        "--json-file", str(prefix),
        "--stop-timeout", "5",
        *extra,
    ]  # fmt: skip
    print("$ " + " ".join(command), flush=True)
    env = dict(service.env)
    env.setdefault("PYTHONPATH", str(REPO))
    try:
        process = await asyncio.create_subprocess_exec(*command, cwd=REPO, env=env)
        status = await process.wait()
    finally:
        server_status = await service.stop()
    print()
    print(summary(prefix))
    print(f"\nreports: {prefix}.json, {prefix}_stats.csv, {args.out / 'report.html'}")
    print(f"locust exit status {status}; service exit status {server_status}")
    return status


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
