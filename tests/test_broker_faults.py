"""Redis faults under two real chatsvc processes, and the broker against a real Redis.

The cluster here talks to a ``redis-server`` of its own (through the cutting
proxy), so that a test can restart Redis for real without touching the
machine's shared one. Each figure a test measures is printed (``pytest -s``)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
import redis

from chatsvc.auth.dev_issuer import DevIssuer
from chatsvc.events import SessionDeleted, encode
from chatsvc.events.redis import RedisBroker
from chatsvc.metrics import Metrics
from chatsvc.settings import load_settings
from tests.cluster import Cluster, Node, RedisServer, TcpProxy, two_nodes
from tests.conftest import PG_URL
from tests.test_scale_out import bearer, frames_until, join, new_session, seqs

pytestmark = pytest.mark.slow

PRESENCE_TTL = 3.0  # a presence refresh every second
RESYNC_INTERVAL = 1.0  # broker_down_resync_interval's default


@pytest.fixture(scope="module")
def private_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def cluster(
    tmp_path_factory: pytest.TempPathFactory, private_redis: RedisServer
) -> Iterator[Cluster]:
    env = {"CHATSVC_PRESENCE_TTL": str(PRESENCE_TTL)}
    with two_nodes(
        tmp_path_factory.mktemp("cluster"), "127.0.0.1", private_redis.port, PG_URL, env
    ) as cluster:
        yield cluster


@pytest.fixture
def nodes(cluster: Cluster) -> tuple[Node, Node]:
    return cluster.nodes[0], cluster.nodes[1]


@pytest.fixture
def mint(cluster: Cluster) -> Any:
    issuer = DevIssuer(
        load_settings(environ={}, config_file=Path("/nonexistent"), data_dir=cluster.data_dir)
    )

    def token(email: str, group: str = "Onyx-Writers") -> str:
        return issuer.mint(email, [group], ttl=600)

    return token


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def broker_state(http: aiohttp.ClientSession, node: Node) -> str:
    async with http.get(f"{node.url}/readyz") as resp:
        return str((await resp.json())["broker"])


async def wait_broker(http: aiohttp.ClientSession, nodes: Any, state: str, within: float) -> float:
    """Seconds until every node's ``/readyz`` reports ``state``."""
    started = time.monotonic()
    async with asyncio.timeout(within):
        for node in nodes:
            while await broker_state(http, node) != state:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
    return time.monotonic() - started


async def stream(sender: Any, count: int, every: float, tag: str) -> None:
    for i in range(count):
        await sender.send_json({"type": "message", "content": f"{tag} {i}"})
        await asyncio.sleep(every)


def log_count(node: Node, needle: str) -> int:
    return node.log.read_text(errors="replace").count(needle)


async def message_seqs(ws: Any, last: int, within: float) -> list[int]:
    """The seqs of the message frames received until seq ``last`` (or ``within`` s)."""
    received: list[int] = []
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(within):
            while not received or received[-1] != last:
                msg = await ws.receive()
                if msg.type != aiohttp.WSMsgType.TEXT:
                    break
                frame = msg.json()
                if frame["type"] == "message":
                    received.append(frame["seq"])
    return received


# --- a Redis restart ---------------------------------------------------------------


@pytest.mark.parametrize(("fault", "senders"), [("restart", "a"), ("cut", "a"), ("restart", "a+b")])
async def test_a_redis_outage_loses_no_message_for_a_member_on_the_other_process(
    http, cluster, nodes, mint, private_redis, fault, senders
):
    """A steady stream from A (and, in "a+b", one from B as well, whose local
    messages reach B's member while A's are missing); Redis restarts (or the way
    to it is cut) for a second in the middle: the member on B gets every seq
    once, in order, live."""
    a, b = nodes
    alice, bob, carol = (
        mint("alice@example.com"),
        mint("bob@example.com"),
        mint("carol@example.com"),
    )
    sid = await new_session(http, a, alice)
    remote = await join(http, b, sid, bob)
    streams = [(await join(http, a, sid, alice), 150, 0.02)]
    if senders == "a+b":
        streams.append((await join(http, b, sid, carol), 50, 0.06))
    count = sum(n for _, n, _ in streams)

    async def outage() -> float:
        """Seconds from Redis' return until ``/readyz`` says broker up on both nodes."""
        await asyncio.sleep(0.8)
        if fault == "restart":
            await asyncio.to_thread(private_redis.restart, 1.0)
        else:
            cluster.proxy.cut()
            await asyncio.sleep(1.0)
            cluster.proxy.restore()
        return await wait_broker(http, (a, b), "up", within=10)

    fault_task = asyncio.create_task(outage())
    stream_task = asyncio.gather(*(stream(ws, n, every, fault) for ws, n, every in streams))
    try:
        received = await message_seqs(remote, count, within=30)
    finally:
        await stream_task
        up_after = await fault_task
    lost = count - len(set(received))
    label = f"[{fault}, senders on {senders}]"
    print(f"\n{label} messages lost for the member on B: {lost} of {count}")
    assert received == list(range(1, count + 1)), f"{lost} lost; seqs: {received}"

    print(f"{label} /readyz broker up on both nodes {up_after:.2f} s after Redis returned")
    assert up_after < 5

    # Nothing more arrives: each message was delivered once.
    with pytest.raises(TimeoutError):
        extra = await frames_until(remote, lambda f: f["type"] == "message", within=0.5)
        pytest.fail(f"duplicate delivery: {extra}")
    for ws in (remote, *(ws for ws, _, _ in streams)):
        await ws.close()


# --- a failing presence refresh ----------------------------------------------------


async def test_a_failing_presence_refresh_does_not_drop_the_subscription(
    http, nodes, mint, private_redis
):
    """Presence refreshes fail (the presence key is not a hash) while publishing
    works: no event from the other process is lost, and the broker stays up."""
    a, b = nodes
    alice, bob = mint("alice@example.com"), mint("bob@example.com")
    sid = await new_session(http, a, alice)
    remote = await join(http, b, sid, bob)
    sender = await join(http, a, sid, alice)
    failures_before = log_count(b, "event=presence_refresh_failed")
    subscribes_before = log_count(b, "event=broker_subscribed")
    store = redis.Redis(port=private_redis.port)
    store.set(f"chatsvc:presence:{sid}", "not a hash")  # each refresh now fails WRONGTYPE
    count = 100
    try:
        stream_task = asyncio.create_task(stream(sender, count, 0.035, "refresh"))
        try:
            received = await message_seqs(remote, count, within=20)
        finally:
            await stream_task
        state = await broker_state(http, b)
    finally:
        store.delete(f"chatsvc:presence:{sid}")
        store.close()
    lost = count - len(set(received))
    print(f"\nmessages lost while presence refreshes failed: {lost} of {count}")
    assert received == list(range(1, count + 1)), f"{lost} lost; seqs: {received}"
    assert state == "up"  # an error reply is no outage
    assert log_count(b, "event=presence_refresh_failed") > failures_before
    assert log_count(b, "event=broker_subscribed") == subscribes_before
    for ws in (remote, sender):
        await ws.close()


# --- a revocation during an outage ----------------------------------------------------


async def _me(http: aiohttp.ClientSession, node: Node, token: str) -> str:
    async with http.get(f"{node.url}/api/me", headers=bearer(token)) as resp:
        assert resp.status == 200, await resp.text()
        return str((await resp.json())["id"])


@pytest.mark.parametrize("change", ["unshare", "remove_collaborator", "delete"])
async def test_a_revocation_during_a_redis_outage_closes_the_member_on_the_other_process(
    http, cluster, nodes, mint, change
):
    """Redis is unreachable; the owner revokes on A. Within the resync interval
    the member on B is closed (1008), and of what is posted on B after the
    revocation (B's own local delivery) nothing reaches it once closed."""
    a, b = nodes
    alice, bob = mint("alice@example.com"), mint("bob@example.com")
    sid = await new_session(http, a, alice, shared=change != "remove_collaborator")
    if change == "remove_collaborator":
        bob_id = await _me(http, b, bob)
        resp = await http.post(
            f"{a.url}/api/chat/sessions/{sid}/collaborators",
            json={"email": "bob@example.com"},
            headers=bearer(alice),
        )
        assert resp.status == 201, await resp.text()
    bob_ws = await join(http, b, sid, bob)
    owner_on_b = await join(http, b, sid, alice)
    cluster.proxy.cut()
    try:
        await wait_broker(http, (a, b), "down", within=5)
        await asyncio.sleep(0.2)  # the down-loop is well into its interval
        started = time.monotonic()
        if change == "unshare":
            resp = await http.put(
                f"{a.url}/api/chat/sessions/{sid}", json={"is_shared": False}, headers=bearer(alice)
            )
            assert resp.status == 200
        elif change == "remove_collaborator":
            resp = await http.delete(
                f"{a.url}/api/chat/sessions/{sid}/collaborators/{bob_id}", headers=bearer(alice)
            )
            assert resp.status == 204
        else:
            resp = await http.delete(f"{a.url}/api/chat/sessions/{sid}", headers=bearer(alice))
            assert resp.status == 204
        revoked_at = time.monotonic()

        async def post_on_b() -> None:
            # The owner keeps posting on B (not for a deleted session): B's hub
            # delivers locally, so these are what a stale view would leak.
            for i in range(40):
                await http.post(
                    f"{b.url}/api/chat/sessions/{sid}/messages",
                    json={"content": f"private {i}"},
                    headers=bearer(alice),
                )
                await asyncio.sleep(0.05)

        poster = asyncio.create_task(post_on_b()) if change != "delete" else None
        try:
            frames = await frames_until(bob_ws, lambda f: f["type"] == "_close", within=5)
        except TimeoutError:
            frames = []
        closed_at = time.monotonic()
        if poster is not None:
            await poster
    finally:
        cluster.proxy.restore()
    seconds = closed_at - started
    print(f"\n[{change}] seconds from the revocation to the close on B: {seconds:.2f}")
    assert frames, "the member on B was not closed during the outage"
    why = "Session deleted" if change == "delete" else "Access revoked"
    assert (frames[-1]["code"], frames[-1]["reason"]) == (1008, why)
    assert closed_at - revoked_at <= RESYNC_INTERVAL + 1.0
    late = [f for f in frames if f["type"] == "message"]
    assert len(late) <= RESYNC_INTERVAL / 0.05 + 2  # only within the interval, if at all

    await wait_broker(http, (a, b), "up", within=10)
    if change != "delete":
        # The rest of the room is untouched: the owner on B got every message in order.
        frames = await frames_until(owner_on_b, lambda f: f.get("seq") == 40)
        assert seqs(frames) == list(range(1, 41))
    await owner_on_b.close()


# --- the broker against a real Redis ------------------------------------------------


class Recorder:
    def __init__(self) -> None:
        self.events: list[Any] = []

    def on_event(self, event: Any) -> None:
        self.events.append(event)

    def present_users(self) -> list[tuple[uuid.UUID, uuid.UUID]]:
        return []


def _settings(tmp_path: Path, **values: Any) -> Any:
    return load_settings(environ={}, config_file=tmp_path / "absent.toml", **values)


async def _until(predicate: Any, within: float) -> float:
    started = time.monotonic()
    async with asyncio.timeout(within):
        while not predicate():  # noqa: ASYNC110
            await asyncio.sleep(0.02)
    return time.monotonic() - started


async def test_the_broker_is_up_after_a_successful_publish_before_it_resubscribes(
    tmp_path, private_redis
):
    proxy = TcpProxy("127.0.0.1", private_redis.port)
    metrics = Metrics()
    # Long reconnect waits: the listener stays unsubscribed for seconds after the cut.
    settings = _settings(tmp_path, broker_reconnect_max=30.0)
    broker = RedisBroker(f"redis://127.0.0.1:{proxy.port}/0", metrics, settings)
    broker.attach(Recorder())
    await broker.start()
    try:
        await _until(lambda: broker.status == "up", 5)
        proxy.cut()
        await _until(lambda: broker.status == "down", 5)
        assert metrics.broker_up._value.get() == 0
        # Attempts at ~0.2, 0.6, 1.4 and 3.0 s after the cut: restore between the last two.
        await asyncio.sleep(1.8)
        proxy.restore()
        broker.publish(SessionDeleted(uuid.uuid4()))
        took = await _until(lambda: broker.status == "up", 0.6)
        print(f"\nup {took:.2f} s after the first publish once Redis was back")
        assert metrics.broker_up._value.get() == 1
        assert not broker.subscribed  # the status came from the publish alone
    finally:
        await broker.close()
        proxy.close()


async def test_a_subscription_that_went_silent_is_noticed_and_renewed(tmp_path, private_redis):
    """The way to Redis becomes a black hole (nothing is closed, nothing arrives):
    the listener's PING goes unanswered, so the broker is down within the health
    interval plus the timeout, and subscribed again once the way is clear."""
    proxy = TcpProxy("127.0.0.1", private_redis.port)
    settings = _settings(tmp_path, broker_health_check_interval=0.5, broker_timeout=0.5)
    broker = RedisBroker(f"redis://127.0.0.1:{proxy.port}/0", Metrics(), settings)
    broker.attach(Recorder())
    await broker.start()
    try:
        await _until(lambda: broker.subscribed, 5)
        proxy.frozen = True
        took = await _until(lambda: not broker.subscribed, 3)
        print(f"\nsilent subscription noticed after {took:.2f} s")
        assert broker.status == "down"
        proxy.frozen = False
        await _until(lambda: broker.subscribed and broker.status == "up", 5)
    finally:
        proxy.frozen = False
        await broker.close()
        proxy.close()


async def test_a_pooled_connection_that_died_with_redis_is_retried_once(tmp_path, caplog):
    """Redis restarts between two commands: the next one succeeds on a new
    connection (no failure, no down), and no log line carries the password."""
    caplog.set_level(logging.INFO, logger="chatsvc")
    server = RedisServer(tmp_path, password="s3cret-pw")
    metrics = Metrics()
    broker = RedisBroker(server.url, metrics, _settings(tmp_path))
    other = redis.Redis(port=server.port, password="s3cret-pw")
    recorder = Recorder()
    broker.attach(recorder)
    await broker.start()
    try:
        await _until(lambda: broker.status == "up", 5)
        sid, uid = uuid.uuid4(), uuid.uuid4()
        assert await broker.presence_join(sid, uid) is True
        await asyncio.to_thread(server.restart, 0.2)
        # The pooled connection is dead; one retry on a fresh one answers for real.
        assert await broker.presence_join(sid, uid) is True
        assert other.hexists(f"chatsvc:presence:{sid}", f"{uid}:{broker.node_id}")
        errors_before = metrics.broker_errors._value.get()
        assert await broker.presence_leave(sid, uid) is True
        assert metrics.broker_errors._value.get() == errors_before
        # The listener comes back by itself and relays again.
        await _until(lambda: broker.subscribed, 5)
        relayed = SessionDeleted(uuid.uuid4())
        other.publish("chatsvc:events", orjson.dumps({"o": "elsewhere", "e": encode(relayed)}))
        await _until(lambda: relayed in recorder.events, 2)
    finally:
        await broker.close()
        other.close()
        server.stop()
    for record in caplog.records:
        assert "s3cret-pw" not in record.getMessage()
    assert any("event=broker_down" in r.getMessage() for r in caplog.records)
    assert any("event=broker_up" in r.getMessage() for r in caplog.records)
