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
import csv
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


def summary(prefix: Path) -> str:
    path = Path(f"{prefix}_stats.csv")
    if not path.is_file():
        return f"(no {path})"
    with path.open() as fh:
        rows = list(csv.DictReader(fh))
    width = max(len(f"{r['Type']} {r['Name']}") for r in rows)
    lines = [
        f"{'request'.ljust(width)}  {'count':>7}  {'fails':>6}  {'req/s':>8}  {'p50 ms':>7}  "
        f"{'p95 ms':>7}  {'p99 ms':>7}"
    ]
    for r in rows:
        name = f"{r['Type']} {r['Name']}".strip()
        lines.append(
            f"{name.ljust(width)}  {r['Request Count']:>7}  {r['Failure Count']:>6}  "
            f"{float(r['Requests/s']):8.1f}  {r['50%']:>7}  {r['95%']:>7}  {r['99%']:>7}"
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
    print(f"\nreports: {prefix}_stats.csv, {args.out / 'report.html'}")
    print(f"locust exit status {status}; service exit status {server_status}")
    return status


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
