"""The SQL a request costs does not grow with the data it returns (no N+1)."""

from __future__ import annotations

from tests.conftest import create_session, send_message, sign_in

NO_RATE_LIMIT = {"message_rate": 10_000.0, "message_burst": 10_000}


async def add_sessions(client, who, count: int, messages_each: int = 2) -> None:
    for _ in range(count):
        session = await create_session(client, who)
        for n in range(messages_each):
            await send_message(client, who, session["id"], f"message {n}")


async def statements_for(client, counter, who, path: str) -> int:
    counter.reset()
    resp = await client.get(path, headers=who.headers)
    assert resp.status == 200
    return counter.count


async def test_listing_with_messages_costs_the_same_for_5_and_50_sessions(
    make_client, count_queries, writer
):
    client = await make_client(**NO_RATE_LIMIT)
    counter = count_queries(client)
    await sign_in(client, writer)  # the first sight of the token is not part of the cost
    path = "/api/chat/sessions?include_messages=true&limit=200"

    await add_sessions(client, writer, 5)
    with_five = await statements_for(client, counter, writer, path)
    await add_sessions(client, writer, 45)
    with_fifty = await statements_for(client, counter, writer, path)

    assert with_fifty == with_five
    # the sessions, and the recent messages of all of them in one query
    assert 0 < with_five <= 2, counter.statements


async def test_a_session_with_all_its_messages_costs_a_constant_number(
    make_client, count_queries, writer
):
    client = await make_client(**NO_RATE_LIMIT)
    counter = count_queries(client)
    session = await create_session(client, writer)
    path = f"/api/chat/sessions/{session['id']}"
    await send_message(client, writer, session["id"])
    with_one = await statements_for(client, counter, writer, path)
    for _ in range(20):
        await send_message(client, writer, session["id"])
    assert await statements_for(client, counter, writer, path) == with_one


async def test_sending_a_message_costs_a_small_constant_number(make_client, count_queries, writer):
    client = await make_client(**NO_RATE_LIMIT)
    counter = count_queries(client)
    session = await create_session(client, writer)
    await send_message(client, writer, session["id"])  # warm: token and connection
    counts = []
    for n in range(10):
        counter.reset()
        await send_message(client, writer, session["id"], f"message {n}", client_msg_id=f"c{n}")
        counts.append(counter.count)
    assert len(set(counts)) == 1, counts
    # session and access facts, the retry look-up, the seq bump, its re-check, the insert
    assert 0 < counts[0] <= 5, counter.statements
