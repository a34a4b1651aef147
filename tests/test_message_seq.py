"""Contract section 4: ``seq`` is per session, starts at 1, strictly increasing,
never reused; a repeated ``client_msg_id`` returns the first message."""

from __future__ import annotations

import asyncio

import pytest

from tests.conftest import create_session, send_message

# Enough that concurrent senders are never rate limited.
NO_RATE_LIMIT = {"message_rate": 10_000.0, "message_burst": 10_000}


async def post_message(client, who, session_id: str, **body):
    resp = await client.post(
        f"/api/chat/sessions/{session_id}/messages", json=body, headers=who.headers
    )
    return resp.status, await resp.json()


async def stored(client, who, session_id: str) -> list[dict]:
    resp = await client.get(
        f"/api/chat/sessions/{session_id}/messages?limit=500", headers=who.headers
    )
    assert resp.status == 200
    return await resp.json()


async def last_seq(client, who, session_id: str) -> int:
    resp = await client.get(
        f"/api/chat/sessions/{session_id}?include_messages=false", headers=who.headers
    )
    return (await resp.json())["last_seq"]


async def test_fifty_concurrent_sends_are_numbered_1_to_50(make_client, writer, other_writer):
    client = await make_client(**NO_RATE_LIMIT)
    session = await create_session(client, writer, is_shared=True)
    senders = [writer, other_writer] * 25
    results = await asyncio.gather(
        *(
            post_message(client, who, session["id"], content=f"message {n}")
            for n, who in enumerate(senders)
        )
    )
    assert [status for status, _ in results] == [201] * 50
    assert sorted(body["seq"] for _, body in results) == list(range(1, 51))
    listed = await stored(client, writer, session["id"])
    assert [m["seq"] for m in listed] == list(range(1, 51))
    assert {m["content"] for m in listed} == {f"message {n}" for n in range(50)}
    assert await last_seq(client, writer, session["id"]) == 50


async def test_seq_is_per_session(client, writer):
    first = await create_session(client, writer)
    second = await create_session(client, writer)
    await send_message(client, writer, first["id"])
    await send_message(client, writer, first["id"])
    assert (await send_message(client, writer, second["id"]))["seq"] == 1


async def test_seq_is_not_reused_after_deleting_the_last_message(client, writer):
    session = await create_session(client, writer)
    for _ in range(3):
        last = await send_message(client, writer, session["id"])
    resp = await client.delete(f"/api/chat/messages/{last['id']}", headers=writer.headers)
    assert resp.status == 204
    assert (await send_message(client, writer, session["id"]))["seq"] == 4


# --- idempotent retries ----------------------------------------------------------


async def test_a_retry_with_the_same_client_msg_id_returns_the_first_message(client, writer):
    session = await create_session(client, writer)
    first_status, first = await post_message(
        client, writer, session["id"], content="first", client_msg_id="retry-1"
    )
    again_status, again = await post_message(
        client, writer, session["id"], content="different", client_msg_id="retry-1"
    )
    assert (first_status, again_status) == (201, 200)
    assert again == first
    assert [m["content"] for m in await stored(client, writer, session["id"])] == ["first"]
    assert await last_seq(client, writer, session["id"]) == 1


async def test_two_concurrent_sends_with_one_client_msg_id_store_one_message(make_client, writer):
    client = await make_client(**NO_RATE_LIMIT)
    session = await create_session(client, writer)
    results = await asyncio.gather(
        post_message(client, writer, session["id"], content="a", client_msg_id="race"),
        post_message(client, writer, session["id"], content="b", client_msg_id="race"),
    )
    assert sorted(status for status, _ in results) == [200, 201]
    assert results[0][1] == results[1][1]
    assert len(await stored(client, writer, session["id"])) == 1


@pytest.mark.parametrize("who", ["another user", "another session"])
async def test_a_client_msg_id_is_scoped_to_user_and_session(client, writer, other_writer, who):
    session = await create_session(client, writer, is_shared=True)
    other_session = await create_session(client, writer, is_shared=True)
    _, first = await post_message(client, writer, session["id"], content="a", client_msg_id="x")
    sender, target = {
        "another user": (other_writer, session["id"]),
        "another session": (writer, other_session["id"]),
    }[who]
    status, second = await post_message(client, sender, target, content="b", client_msg_id="x")
    assert status == 201
    assert second["id"] != first["id"]
