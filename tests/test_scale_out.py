"""Two chatsvc processes serving the same sessions through Redis pub/sub.

Real processes (``python run.py``) on two ports share one database (PostgreSQL
when ``CHATSVC_TEST_POSTGRES_URL`` is set, else one SQLite file) and reach Redis
through a proxy that can cut the connection."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from chatsvc.auth.dev_issuer import DevIssuer
from chatsvc.settings import load_settings
from tests.cluster import Cluster, Node, redis_target, two_nodes
from tests.conftest import PG_URL

pytestmark = pytest.mark.slow

TIMEOUT = 5


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with two_nodes(tmp_path_factory.mktemp("cluster"), *redis_target(), PG_URL) as cluster:
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


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def new_session(
    http: aiohttp.ClientSession, node: Node, token: str, shared: bool = True
) -> str:
    resp = await http.post(
        f"{node.url}/api/chat/sessions",
        json={"title": "cluster", "is_shared": shared},
        headers=bearer(token),
    )
    assert resp.status == 201, await resp.text()
    return (await resp.json())["id"]


async def join(
    http: aiohttp.ClientSession, node: Node, sid: str, token: str, since: int | None = None
) -> Any:
    query = f"?since_seq={since}" if since is not None else ""
    ws = await http.ws_connect(
        f"{node.url}/api/chat/sessions/{sid}/ws{query}", headers=bearer(token)
    )
    first = await ws.receive_json(timeout=TIMEOUT)
    assert first["type"] == "connected", first
    return ws


async def frames_until(ws: Any, predicate: Any, within: float = TIMEOUT) -> list[dict[str, Any]]:
    """Collect frames until one satisfies ``predicate``; return all collected."""
    collected: list[dict[str, Any]] = []
    async with asyncio.timeout(within):
        while True:
            msg = await ws.receive()
            if msg.type != aiohttp.WSMsgType.TEXT:
                code = msg.data if msg.type == aiohttp.WSMsgType.CLOSE else ws.close_code
                collected.append({"type": "_close", "code": code, "reason": msg.extra})
                if predicate(collected[-1]):
                    return collected
                raise AssertionError(f"socket closed: {collected}")
            collected.append(msg.json())
            if predicate(collected[-1]):
                return collected


def seqs(frames: list[dict[str, Any]]) -> list[int]:
    return [f["seq"] for f in frames if f["type"] == "message"]


async def test_a_message_sent_on_one_process_reaches_members_on_both_once_in_order(
    http, nodes, mint
):
    a, b = nodes
    alice, bob, carol = (
        mint("alice@example.com"),
        mint("bob@example.com"),
        mint("carol@example.com"),
    )
    sid = await new_session(http, a, alice)
    on_a = await join(http, a, sid, bob)
    on_b = await join(http, b, sid, carol)
    sender = await join(http, a, sid, alice)
    for i in range(10):
        if i % 2:
            await sender.send_json({"type": "message", "content": f"ws {i}"})
        else:
            resp = await http.post(
                f"{b.url}/api/chat/sessions/{sid}/messages",
                json={"content": f"rest {i}"},
                headers=bearer(alice),
            )
            assert resp.status == 201
    for ws in (on_a, on_b):
        frames = await frames_until(ws, lambda f: f.get("seq") == 10)
        assert seqs(frames) == list(range(1, 11))
    # Nothing more arrives: each event was delivered once.
    await sender.send_json({"type": "ping"})
    for ws in (on_a, on_b):
        with pytest.raises(TimeoutError):
            extra = await frames_until(ws, lambda f: f["type"] == "message", within=0.5)
            pytest.fail(f"duplicate delivery: {extra}")
    for ws in (on_a, on_b, sender):
        await ws.close()


async def test_typing_and_presence_cross_processes(http, nodes, mint):
    a, b = nodes
    alice, bob = mint("alice@example.com"), mint("bob@example.com")
    sid = await new_session(http, a, alice)
    alice_ws = await join(http, a, sid, alice)
    bob_ws = await join(http, b, sid, bob)
    joined = await frames_until(alice_ws, lambda f: f["type"] == "presence" and f["joined"])
    assert [u["user_email"] for u in joined[-1]["joined"]] == ["bob@example.com"]

    # Bob's second socket, on the other process, is not a new arrival.
    bob_again = await join(http, a, sid, bob)
    await bob_ws.send_json({"type": "typing", "is_typing": True})
    typing = await frames_until(alice_ws, lambda f: f["type"] == "typing")
    assert [f["type"] for f in typing] == ["typing"]
    assert typing[-1] == {**typing[-1], "user_email": "bob@example.com", "is_typing": True}

    # Closing one of Bob's sockets is not a departure; closing the last one is.
    await bob_ws.close()
    await bob_again.send_json({"type": "typing", "is_typing": False})
    stop = await frames_until(alice_ws, lambda f: f["type"] == "typing")
    assert [f["type"] for f in stop] == ["typing"]
    await bob_again.close()
    left = await frames_until(alice_ws, lambda f: f["type"] == "presence" and f["left"])
    assert [u["user_email"] for u in left[-1]["left"]] == ["bob@example.com"]
    await alice_ws.close()


async def test_unsharing_on_one_process_revokes_a_member_on_the_other(http, nodes, mint):
    a, b = nodes
    alice, bob = mint("alice@example.com"), mint("bob@example.com")
    sid = await new_session(http, a, alice, shared=True)
    bob_ws = await join(http, b, sid, bob)
    resp = await http.put(
        f"{a.url}/api/chat/sessions/{sid}", json={"is_shared": False}, headers=bearer(alice)
    )
    assert resp.status == 200
    closed = await frames_until(bob_ws, lambda f: f["type"] == "_close")
    assert closed[-1]["code"] == 1008
    assert closed[-1]["reason"] == "Access revoked"


async def test_deleting_on_one_process_closes_sockets_on_the_other(http, nodes, mint):
    a, b = nodes
    alice, bob = mint("alice@example.com"), mint("bob@example.com")
    sid = await new_session(http, a, alice)
    alice_ws = await join(http, a, sid, alice)
    bob_ws = await join(http, a, sid, bob)
    resp = await http.delete(f"{b.url}/api/chat/sessions/{sid}", headers=bearer(alice))
    assert resp.status == 204
    for ws in (alice_ws, bob_ws):
        frames = await frames_until(ws, lambda f: f["type"] == "_close")
        assert {"type": "session_deleted", "session_id": sid} in frames
        assert frames[-1]["code"] == 1008
        assert frames[-1]["reason"] == "Session deleted"


async def test_redis_outage_keeps_local_delivery_and_resume_recovers_everything(
    http, cluster, nodes, mint
):
    a, b = nodes
    alice, bob = mint("alice@example.com"), mint("bob@example.com")
    sid = await new_session(http, a, alice)
    local = await join(http, a, sid, bob)
    remote = await join(http, b, sid, bob)
    sender = await join(http, a, sid, alice)
    await sender.send_json({"type": "message", "content": "before"})
    for ws in (local, remote):
        assert seqs(await frames_until(ws, lambda f: f.get("seq") == 1)) == [1]

    cluster.proxy.cut()
    try:
        for i in range(5):
            await sender.send_json({"type": "message", "content": f"during {i}"})
        # Local members still get every message at once.
        assert seqs(await frames_until(local, lambda f: f.get("seq") == 6)) == [2, 3, 4, 5, 6]
        ready = await http.get(f"{a.url}/readyz")
        assert ready.status == 200
        assert (await ready.json())["broker"] == "down"
        metrics = await (await http.get(f"{a.url}/metrics")).text()
        assert "chatsvc_broker_up 0.0" in metrics
    finally:
        cluster.proxy.restore()

    async with asyncio.timeout(10):  # both processes reconnect by themselves
        for node in (a, b):
            while (await (await http.get(f"{node.url}/readyz")).json())["broker"] != "up":  # noqa: ASYNC110
                await asyncio.sleep(0.1)

    # The member on the other process missed the relay; resuming from its last seq fills the gap.
    await remote.close()
    resumed = await join(http, b, sid, bob, since=1)
    await sender.send_json({"type": "message", "content": "after"})
    frames = await frames_until(resumed, lambda f: f.get("seq") == 7)
    assert seqs(frames) == [2, 3, 4, 5, 6, 7]
    for ws in (local, resumed, sender):
        await ws.close()


async def test_connected_roster_counts_users_on_every_process(http, nodes, mint):
    a, b = nodes
    alice, bob, carol = (
        mint("alice@example.com"),
        mint("bob@example.com"),
        mint("carol@example.com"),
    )
    sid = await new_session(http, a, alice)
    bob_ws = await join(http, b, sid, bob)
    carol_ws = await join(http, b, sid, carol)
    # Alice opens the session's room on the other process: the roster comes from Redis.
    alice_ws = await http.ws_connect(f"{a.url}/api/chat/sessions/{sid}/ws", headers=bearer(alice))
    connected = await alice_ws.receive_json(timeout=TIMEOUT)
    assert connected["type"] == "connected"
    assert connected["online_count"] == 3
    assert sorted(u["user_email"] for u in connected["online"]) == [
        "alice@example.com",
        "bob@example.com",
        "carol@example.com",
    ]
    joined = await frames_until(
        bob_ws,
        lambda f: (
            f["type"] == "presence"
            and "alice@example.com" in [u["user_email"] for u in f["joined"]]
        ),
    )
    assert joined[-1]["online_count"] == 3
    await carol_ws.close()
    left = await frames_until(alice_ws, lambda f: f["type"] == "presence" and f["left"])
    assert [u["user_email"] for u in left[-1]["left"]] == ["carol@example.com"]
    assert left[-1]["online_count"] == 2
    for ws in (alice_ws, bob_ws):
        await ws.close()
