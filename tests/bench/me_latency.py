"""Median latency of ``GET /api/me`` over 1,000 requests against a running service.

    python tests/bench/me_latency.py --url http://127.0.0.1:8080 --token "$TOKEN" [-n 1000]

(or ``python -m tests.bench.me_latency``; the token may also come from
``CHATSVC_TOKEN``). Requests are sequential on one keep-alive connection, after
a warm-up that also puts the token in the service's permission cache; the same
number of ``/healthz`` requests (no token) are interleaved for comparison, so
the difference is the cost of a cached-token request. Standard library only.
"""

from __future__ import annotations

import argparse
import http.client
import os
import statistics
import sys
import time
from urllib.parse import urlsplit


def timed_get(conn: http.client.HTTPConnection, path: str, headers: dict[str, str]) -> float:
    started = time.perf_counter()
    conn.request("GET", path, headers=headers)
    response = conn.getresponse()
    body = response.read()
    elapsed = (time.perf_counter() - started) * 1000.0
    if response.status != 200:
        raise SystemExit(f"GET {path}: {response.status} {body[:200]!r}")
    return elapsed


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:8080", help="the service's base URL")
    parser.add_argument("--token", default=os.environ.get("CHATSVC_TOKEN"), help="a bearer token")
    parser.add_argument("-n", "--requests", type=int, default=1000)
    parser.add_argument("--warmup", type=int, default=100)
    args = parser.parse_args(argv)
    if not args.token:
        parser.error("a token is needed: --token or CHATSVC_TOKEN")
    url = urlsplit(args.url)
    connection_class = (
        http.client.HTTPSConnection if url.scheme == "https" else http.client.HTTPConnection
    )
    conn = connection_class(url.hostname or "127.0.0.1", url.port, timeout=10)
    prefix = url.path.rstrip("/")
    auth = {"Authorization": f"Bearer {args.token}"}
    for _ in range(args.warmup):
        timed_get(conn, f"{prefix}/api/me", auth)
        timed_get(conn, f"{prefix}/healthz", {})
    me: list[float] = []
    health: list[float] = []
    for _ in range(args.requests):
        me.append(timed_get(conn, f"{prefix}/api/me", auth))
        health.append(timed_get(conn, f"{prefix}/healthz", {}))
    conn.close()
    me_median, health_median = statistics.median(me), statistics.median(health)
    print(f"GET /api/me   x{len(me)}: median {me_median:.3f} ms, p95 {quantile(me, 0.95):.3f} ms")
    print(
        f"GET /healthz  x{len(health)}: median {health_median:.3f} ms, "
        f"p95 {quantile(health, 0.95):.3f} ms"
    )
    print(f"cached-token overhead (median difference): {me_median - health_median:.3f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
