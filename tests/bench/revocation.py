"""``python -m tests.bench.revocation [--runs 100] [--db sqlite|postgres]``: how fast
continuous access acts, and what it costs the requests that are not revoked.

- revocation to closed socket: two chatsvc processes on one database and Redis;
  per run, a fresh user opens a socket on process B, a Universal Logout request
  for them goes to process A, and the time from sending it to B's close frame
  (1008 ``Access revoked``) arriving is taken. p50/p99/max over the runs.
- the check on a cached token: ``Authenticator.authenticate`` of a cached token
  timed in-process with no revocation in force and with 10,000 of other users in
  force, beside the revocation lookup alone. Microseconds per call.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import tempfile
import time
import timeit
import uuid
from pathlib import Path

import aiohttp

from chatsvc.auth.dev_issuer import DevIssuer
from chatsvc.settings import load_settings
from tests.cluster import redis_target, two_nodes

LOGOUT = "/api/idp/global-token-revocation"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def revocation_latency(runs: int, pg_url: str | None) -> list[float]:
    with (
        tempfile.TemporaryDirectory() as tmp,
        two_nodes(Path(tmp), *redis_target(), pg_url) as cluster,
    ):
        a, b = cluster.nodes
        issuer = DevIssuer(
            load_settings(environ={}, config_file=Path("/nonexistent"), data_dir=cluster.data_dir)
        )
        timings: list[float] = []
        async with aiohttp.ClientSession() as http:
            owner = issuer.mint("owner@example.com", ["Onyx-Writers"], ttl=3600)
            auth = {"Authorization": f"Bearer {owner}"}
            resp = await http.post(
                f"{b.url}/api/chat/sessions",
                json={"title": "bench", "is_shared": True},
                headers=auth,
            )
            session_id = (await resp.json())["id"]
            for run in range(runs):
                email = f"user{run}-{uuid.uuid4().hex[:6]}@example.com"
                token = issuer.mint(email, ["Onyx-Writers"], ttl=3600)
                ws = await http.ws_connect(
                    f"{b.url}/api/chat/sessions/{session_id}/ws",
                    headers={"Authorization": f"Bearer {token}"},
                )
                assert (await ws.receive_json())["type"] == "connected"
                logout = issuer.mint_logout_request(a.url + LOGOUT)
                started = time.perf_counter()
                resp = await http.post(
                    f"{a.url}{LOGOUT}",
                    json={"sub_id": {"format": "email", "email": email}},
                    headers={"Authorization": f"Bearer {logout}"},
                )
                while True:
                    msg = await ws.receive(timeout=5)
                    if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
                        break
                elapsed = time.perf_counter() - started
                assert resp.status == 204 and msg.data == 1008 and msg.extra == "Access revoked"
                timings.append(elapsed)
                await ws.close()
        return timings


def check_cost() -> dict[str, float]:
    from chatsvc.auth.cache import PermissionCache
    from chatsvc.auth.principal import Level, Principal
    from chatsvc.auth.revocations import RevocationList
    from chatsvc.service.identity import Authenticator

    class Counter:
        def labels(self, *_: str) -> Counter:
            return self

        def inc(self, *_: float) -> None:
            return None

    class Metrics:
        permission_cache = auth_failures = Counter()

    now = time.time()
    principal = Principal(
        uuid.uuid4(), "iss", "sub", "a@example.com", Level.WRITE, (), int(now) + 3600, int(now)
    )
    revocations = RevocationList()
    cache = PermissionCache(60, 1000)
    cache.put("token", principal)
    authenticator = Authenticator(None, None, cache, None, Metrics(), revocations)  # type: ignore[arg-type]

    def authenticate() -> None:
        # A cache hit never awaits: one step of the coroutine runs it to the end.
        with contextlib.suppress(StopIteration):
            authenticator.authenticate("token").send(None)

    def per_call(fn: object, number: int = 200_000) -> float:
        return min(timeit.repeat(fn, number=number, repeat=5)) / number * 1e6  # type: ignore[arg-type]

    figures = {
        "authenticate, cached, nothing revoked": per_call(authenticate),
        "revocation lookup alone, nothing revoked": per_call(lambda: revocations.covers(principal)),
    }
    for _ in range(10_000):
        revocations.apply(uuid.uuid4(), now, now + 3600)
    figures["authenticate, cached, 10,000 others revoked"] = per_call(authenticate)
    figures["revocation lookup alone, 10,000 others revoked"] = per_call(
        lambda: revocations.covers(principal)
    )
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.revocation")
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="postgres")
    args = parser.parse_args()
    pg_url = os.environ.get("CHATSVC_TEST_POSTGRES_URL") if args.db == "postgres" else None
    if args.db == "postgres" and not pg_url:
        parser.error("--db postgres needs CHATSVC_TEST_POSTGRES_URL")
    for name, micros in check_cost().items():
        print(f"{name:<50} {micros:8.3f} µs")
    timings = asyncio.run(revocation_latency(args.runs, pg_url))
    ms = [t * 1000 for t in timings]
    print(
        f"revocation request on A -> socket closed on B ({args.db}, {len(ms)} runs): "
        f"p50 {statistics.median(ms):.1f} ms, p99 {percentile(ms, 0.99):.1f} ms, "
        f"max {max(ms):.1f} ms"
    )


if __name__ == "__main__":
    main()
