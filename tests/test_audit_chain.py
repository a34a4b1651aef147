"""The audit trail's hash chain (contract section 6): events stored by chatsvc
chain up as documented and check out; an edited, deleted or inserted row is
found and named; two writers on one database never fork the chain; operators
check it with ``python run.py audit verify``; the check is for admins; the
canonical JSON is RFC 8785's."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import uuid
from collections.abc import AsyncIterator
from dataclasses import asdict
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import rfc8785
from aiohttp.test_utils import TestClient
from sqlalchemy import delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

from chatsvc.api import routing
from chatsvc.audit import AuditRecord, AuditWriter
from chatsvc.keys import AUDIT
from chatsvc.metrics import Metrics
from chatsvc.policy import Action
from chatsvc.store import audit as audit_store
from chatsvc.store.chain import CHAINED_FIELDS, GENESIS, canonical, link
from chatsvc.store.db import create_engine, create_sessionmaker
from chatsvc.store.migrate import ADVISORY_LOCK_KEY
from chatsvc.store.models import AuditEvent, new_id
from tests.conftest import Caller, create_session, run_cli, settings_for

VERIFY = "/api/chat/audit/verify"
DENIED = "Access denied to chat session"


@pytest.fixture(autouse=True)
def _verify_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every answer must be what its response model writes (chatsvc.api.models)."""
    monkeypatch.setattr(routing, "VERIFY_ANSWERS", True)


async def verify(client: TestClient, admin: Caller) -> dict[str, Any]:
    resp = await client.get(VERIFY, headers=admin.headers)
    assert resp.status == 200, await resp.text()
    return await resp.json()


async def audit_events(client: TestClient, admin: Caller, **query: str) -> list[dict[str, Any]]:
    query.setdefault("limit", "500")
    resp = await client.get("/api/chat/audit", params=query, headers=admin.headers)
    assert resp.status == 200, await resp.text()
    return await resp.json()


def broken(events: int, first_bad: Any) -> dict[str, Any]:
    return {"ok": False, "events": events, "first_bad_id": str(first_bad)}


def intact(events: int) -> dict[str, Any]:
    return {"ok": True, "events": events, "first_bad_id": None}


@pytest.fixture
async def trail(client, writer, other_writer, admin) -> list[dict[str, Any]]:
    """Five denials, stored; the events as the API lists them, oldest first."""
    session = await create_session(client, writer)
    for _ in range(5):
        resp = await client.get(f"/api/chat/sessions/{session['id']}", headers=other_writer.headers)
        assert resp.status == 403
    events = (await audit_events(client, admin))[::-1]
    assert len(events) == 5
    return events


@contextlib.asynccontextmanager
async def database(url: str) -> AsyncIterator[AsyncConnection]:
    """The database as someone with direct access sees it (one transaction)."""
    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            yield conn
    finally:
        await engine.dispose()


def event_row(event: dict[str, Any]) -> dict[str, Any]:
    """An event from the API as a row of ``audit_events``."""
    row = dict(event)
    row["id"] = uuid.UUID(row["id"])
    row["user_id"] = uuid.UUID(row["user_id"]) if row["user_id"] else None
    row["occurred_at"] = datetime.fromisoformat(row["occurred_at"])
    return row


def documented_hash(previous: str, event: dict[str, Any]) -> str:
    """The hash as docs/protocol.md defines it, from the API's JSON, without chatsvc's code."""
    fields = {name: value for name, value in event.items() if name != "hash"}
    at = datetime.fromisoformat(fields["occurred_at"])
    fields["occurred_at"] = at.astimezone(UTC).isoformat(timespec="microseconds")
    return hashlib.sha256(previous.encode() + rfc8785.dumps(fields)).hexdigest()


# --- a chain that checks out -------------------------------------------------------------


async def test_events_stored_by_chatsvc_chain_as_documented_and_check_out(client, trail, admin):
    previous = "0" * 64
    for event in trail:
        assert event["hash"] == documented_hash(previous, event)
        previous = event["hash"]
    assert await verify(client, admin) == intact(5)


async def test_an_empty_trail_checks_out(client, admin):
    assert await verify(client, admin) == intact(0)


async def test_verify_checks_the_events_recorded_up_to_now(
    make_client, writer, other_writer, admin
):
    client = await make_client(audit_flush_interval=60)  # nothing is flushed by itself
    session = await create_session(client, writer)
    for _ in range(3):
        await client.get(f"/api/chat/sessions/{session['id']}", headers=other_writer.headers)
    assert await verify(client, admin) == intact(3)


async def test_every_outcome_is_chained_and_the_list_filters_by_outcome(client, trail, admin):
    writer = client.app[AUDIT]
    writer.deny(
        None, Action.MESSAGE_SEND, "Requires write permission", resource_id=None,
        request_id="shadow-1", client_ip="10.0.0.1", outcome="would_deny",
    )  # fmt: skip
    writer.record(
        AuditRecord(
            user_id=uuid.uuid4(), user_email="eve@example.com", permission="write",
            action="user.revoked", resource_type="user", resource_id=None,
            reason="Universal Logout", request_id="revoke-1", client_ip=None, outcome="revoked",
        )
    )  # fmt: skip
    assert await verify(client, admin) == intact(7)
    shadow = await audit_events(client, admin, outcome="would_deny")
    assert [(e["request_id"], e["outcome"]) for e in shadow] == [("shadow-1", "would_deny")]
    revoked = await audit_events(client, admin, outcome="revoked")
    assert [(e["action"], e["resource_type"]) for e in revoked] == [("user.revoked", "user")]
    assert len(await audit_events(client, admin, outcome="denied")) == 5
    assert len(await audit_events(client, admin, outcome="")) == 7  # empty: no filter
    resp = await client.get("/api/chat/audit?outcome=allowed", headers=admin.headers)
    assert resp.status == 400
    assert (await resp.json())["detail"] == "outcome: must be one of denied, would_deny, revoked"


async def test_each_stored_batch_logs_the_head_of_the_chain(client, trail, admin, caplog):
    with caplog.at_level(logging.INFO, logger="chatsvc.audit"):
        client.app[AUDIT].deny(
            None, Action.SESSION_LIST, "Requires read permission", resource_id=None,
            request_id="head-1", client_ip=None,
        )  # fmt: skip
        await verify(client, admin)
    [line] = [r.getMessage() for r in caplog.records if "event=audit_chained" in r.getMessage()]
    [newest] = await audit_events(client, admin, limit="1")
    assert line == f"event=audit_chained count=1 head={newest['hash']}"


# --- tampering ------------------------------------------------------------------------------


def edited(field: str, value: Any) -> Any:
    """Another value for the field, of its type."""
    if field in ("id", "user_id"):
        return uuid.uuid4()
    if field == "occurred_at":
        return value + timedelta(microseconds=1)  # still between its neighbours
    if field == "outcome":
        return "would_deny"
    if field == "hash":
        return "f" * 64
    return "edited" if value is None else f"{value}!"


async def test_an_edit_of_any_field_is_found_at_that_event(
    client, trail, admin, database_url, subtests
):
    target = event_row(trail[2])
    for field in (*CHAINED_FIELDS, "hash"):
        with subtests.test(field=field):
            original = target[field]
            changed = edited(field, original)
            async with database(database_url) as db:
                await db.execute(
                    update(AuditEvent).where(AuditEvent.id == target["id"]).values({field: changed})
                )
            first_bad = changed if field == "id" else target["id"]
            assert await verify(client, admin) == broken(5, first_bad)
            async with database(database_url) as db:
                await db.execute(
                    update(AuditEvent).where(AuditEvent.id == first_bad).values({field: original})
                )
            assert await verify(client, admin) == intact(5)


@pytest.mark.parametrize("gone", [0, 2])
async def test_a_deleted_event_is_found_at_the_event_after_the_gap(
    client, trail, admin, database_url, gone
):
    async with database(database_url) as db:
        await db.execute(delete(AuditEvent).where(AuditEvent.id == uuid.UUID(trail[gone]["id"])))
    assert await verify(client, admin) == broken(4, trail[gone + 1]["id"])


async def test_removing_the_newest_events_is_not_shown_by_the_chain_alone(
    client, trail, admin, database_url
):
    """As documented: the logged head is what shows it (see the test above)."""
    async with database(database_url) as db:
        await db.execute(delete(AuditEvent).where(AuditEvent.id == uuid.UUID(trail[-1]["id"])))
    assert await verify(client, admin) == intact(4)


def forged(
    after: dict[str, Any], before: dict[str, Any] | None, hash_: str | None
) -> dict[str, Any]:
    """A made-up event placed between two stored ones (or after the last)."""
    start = datetime.fromisoformat(after["occurred_at"])
    end = datetime.fromisoformat(before["occurred_at"]) if before else start + timedelta(seconds=1)
    row = event_row(after) | {
        "id": new_id(),
        "occurred_at": start + (end - start) / 2,
        "reason": "Nothing happened here",
    }
    row["hash"] = hash_ if hash_ is not None else link(after["hash"], row)
    return row


@pytest.mark.parametrize(
    ("where", "with_hash", "found"),
    [
        (1, "made up", "forged"),  # the forged event itself
        (1, "computed", "next"),  # its hash is right: the event after it no longer chains
        (4, "made up", "forged"),  # appended after the newest
    ],
)
async def test_an_inserted_event_is_found(
    client, trail, admin, database_url, where, with_hash, found
):
    before = trail[where + 1] if where + 1 < len(trail) else None
    row = forged(trail[where], before, "0" * 64 if with_hash == "made up" else None)
    async with database(database_url) as db:
        await db.execute(insert(AuditEvent), [row])
    first_bad = row["id"] if found == "forged" else before["id"]  # type: ignore[index]
    assert await verify(client, admin) == broken(6, first_bad)


async def test_verify_reads_the_table_in_pages(
    client, trail, admin, database_url, monkeypatch, count_queries
):
    monkeypatch.setattr(audit_store, "VERIFY_BATCH", 2)
    counter = count_queries(client)
    assert await verify(client, admin) == intact(5)
    pages = [s for s in counter.statements if "FROM audit_events" in s]
    assert len(pages) == 3 and all("LIMIT" in s for s in pages)  # 2 + 2 + 1
    async with database(database_url) as db:  # a bad event on the last page is still found
        await db.execute(
            update(AuditEvent).where(AuditEvent.id == uuid.UUID(trail[4]["id"])).values(reason="x")
        )
    assert await verify(client, admin) == broken(5, trail[4]["id"])


# --- who may check -------------------------------------------------------------------------


async def test_verify_is_for_admins_and_a_refusal_is_audited(client, writer, reader, admin):
    refused = []
    for who in (writer, reader):
        resp = await client.get(VERIFY, headers=who.headers)
        assert resp.status == 403
        assert (await resp.json())["detail"] == "Requires admin permission"
        refused.append(resp.headers["X-Request-ID"])
    assert (await client.get(VERIFY)).status == 401
    events = await audit_events(client, admin)
    assert sorted(e["request_id"] for e in events) == sorted(refused)
    assert {(e["action"], e["resource_type"], e["resource_id"], e["outcome"]) for e in events} == {
        ("audit.read", "audit", None, "denied")
    }
    assert await verify(client, admin) == intact(2)


# --- several writers ----------------------------------------------------------------------


PER_WRITER = 300


async def test_two_writers_on_one_database_leave_one_unbroken_chain(database_url, tmp_path, okta):
    """Two writers with engines of their own, as two processes have: their batches
    interleave (a batch often holds events older than the other's newest) and
    must still make one chain holding every event once."""
    settings = settings_for(tmp_path, database_url, okta)
    engines = [create_engine(settings) for _ in range(2)]
    writers = [
        AuditWriter(create_sessionmaker(engine), Metrics(), 10_000, 7, 0.001) for engine in engines
    ]

    async def produce(writer: AuditWriter, name: str) -> None:
        for i in range(PER_WRITER):
            writer.deny(
                None, Action.SESSION_READ, DENIED, resource_id=None,
                request_id=f"{name}-{i}", client_ip=None,
            )  # fmt: skip
            await asyncio.sleep(0.001 if i % 3 else 0)

    try:
        for writer in writers:
            writer.start()
        await asyncio.gather(produce(writers[0], "a"), produce(writers[1], "b"))
        for writer in writers:
            await writer.close()
        check = await audit_store.verify_chain(create_sessionmaker(engines[0]))
        async with engines[1].connect() as conn:
            stored = (await conn.execute(select(AuditEvent.request_id))).scalars().all()
    finally:
        for engine in engines:
            await engine.dispose()
    assert check == audit_store.ChainCheck(True, 2 * PER_WRITER, None)
    assert sorted(stored) == sorted(f"{n}-{i}" for n in "ab" for i in range(PER_WRITER))


async def test_an_event_older_than_the_chain_is_stored_just_after_it(database_url, tmp_path, okta):
    settings = settings_for(tmp_path, database_url, okta)
    engines = [create_engine(settings) for _ in range(2)]
    first, late = (AuditWriter(create_sessionmaker(e), Metrics(), 100, 10, 60) for e in engines)
    now = datetime.now(UTC)

    def event(request_id: str, occurred_at: datetime) -> AuditRecord:
        return AuditRecord(
            user_id=None, user_email=None, permission=None, action="session.read",
            resource_type="chat_session", resource_id=None, reason=DENIED,
            request_id=request_id, client_ip=None, occurred_at=occurred_at,
        )  # fmt: skip

    try:
        first.record(event("newest", now))
        await first.flush()
        # Buffered elsewhere for ten seconds, stored only now.
        late.record(event("buffered-1", now - timedelta(seconds=10)))
        late.record(event("buffered-2", now - timedelta(seconds=9)))
        await late.flush()
        async with engines[0].connect() as conn:
            rows = (
                await conn.execute(
                    select(AuditEvent.request_id, AuditEvent.occurred_at).order_by(
                        AuditEvent.occurred_at, AuditEvent.id
                    )
                )
            ).all()
        check = await audit_store.verify_chain(create_sessionmaker(engines[1]))
    finally:
        for engine in engines:
            await engine.dispose()
    tick = timedelta(microseconds=1)
    assert [tuple(row) for row in rows] == [
        ("newest", now),
        ("buffered-1", now + tick),
        ("buffered-2", now + 2 * tick),
    ]
    assert check == audit_store.ChainCheck(True, 3, None)


def test_the_chain_lock_is_its_own():
    assert audit_store.CHAIN_LOCK_KEY != ADVISORY_LOCK_KEY
    assert 0 < audit_store.CHAIN_LOCK_KEY < 2**63  # a PostgreSQL bigint


# --- the operator's command ---------------------------------------------------------------


async def test_run_py_audit_verify(client, trail, admin, database_url, tmp_path: Path):
    good = await asyncio.to_thread(run_cli, tmp_path, "audit", "verify", DATABASE_URL=database_url)
    assert (good.returncode, good.stdout) == (0, "audit trail ok: 5 events\n"), good.stderr
    async with database(database_url) as db:
        await db.execute(
            update(AuditEvent).where(AuditEvent.id == uuid.UUID(trail[1]["id"])).values(reason="x")
        )
    bad = await asyncio.to_thread(run_cli, tmp_path, "audit", "verify", DATABASE_URL=database_url)
    assert (bad.returncode, bad.stdout) == (
        1,
        f"audit trail broken: 5 events, first bad event {trail[1]['id']}\n",
    ), bad.stderr


def test_run_py_audit_verify_help_and_an_unreadable_database(tmp_path: Path):
    top = run_cli(tmp_path, "--help")
    assert "audit" in top.stdout
    usage = run_cli(tmp_path, "audit", "verify", "--help")
    assert usage.returncode == 0
    assert "Exit status: 0 ok, 1 broken, 2 the database could not be read" in " ".join(
        usage.stdout.split()
    )
    assert run_cli(tmp_path, "audit").returncode == 2  # an action is required
    unmigrated = run_cli(tmp_path, "audit", "verify")  # a new SQLite file: no tables
    assert unmigrated.returncode == 2
    assert "chatsvc: cannot read the audit trail: OperationalError" in unmigrated.stderr


# --- the canonical form -------------------------------------------------------------------


def test_canonical_json_is_rfc_8785():
    # RFC 8785, section 3.2.2: the input and its canonical form.
    given = r"""{
      "numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],
      "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
      "literals": [null, true, false]
    }"""
    expected = (
        r"""{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],"""
        r""""string":"€$\u000f\nA'B\"\\\\\"/"}"""
    )
    assert rfc8785.dumps(json.loads(given)) == expected.encode()
    # Section 3.2.3: keys sorted by their UTF-16 code units.
    keys = ["\u20ac", "\r", "\ufb33", "1", "\U0001f600", "\u0080", "\u00f6"]
    ordered = list(json.loads(rfc8785.dumps(dict.fromkeys(keys, 0))))
    assert ordered == ["\r", "1", "\u0080", "\u00f6", "\u20ac", "\U0001f600", "\ufb33"]


EVENT = {
    "id": uuid.UUID("01955f3a-0000-7000-8000-000000000001"),
    "occurred_at": datetime(2025, 3, 1, 9, 40, 2, tzinfo=UTC),
    "user_id": None,
    "user_email": "bob@example.com",
    "permission": "read",
    "action": "message.send",
    "resource_type": "chat_session",
    "resource_id": "01955f3a-0000-7000-8000-000000000002",
    "reason": "Requires write permission",
    "request_id": "5b0c6f3e9d2a4c1f8e7b6a5d4c3b2a10",
    "client_ip": "10.0.0.7",
    "outcome": "denied",
    "hash": "not part of the hash",
}
CANONICAL = (
    b'{"action":"message.send","client_ip":"10.0.0.7",'
    b'"id":"01955f3a-0000-7000-8000-000000000001",'
    b'"occurred_at":"2025-03-01T09:40:02.000000+00:00","outcome":"denied",'
    b'"permission":"read","reason":"Requires write permission",'
    b'"request_id":"5b0c6f3e9d2a4c1f8e7b6a5d4c3b2a10",'
    b'"resource_id":"01955f3a-0000-7000-8000-000000000002","resource_type":"chat_session",'
    b'"user_email":"bob@example.com","user_id":null}'
)


def test_an_events_canonical_form_and_hash():
    assert canonical(EVENT) == CANONICAL
    assert link(None, EVENT) == hashlib.sha256(GENESIS.encode() + CANONICAL).hexdigest()
    assert GENESIS == "0" * 64
    after = link("a" * 64, EVENT)
    assert after == hashlib.sha256(b"a" * 64 + CANONICAL).hexdigest() != link(None, EVENT)
    # The same instant in another zone, or naive as SQLite returns it, is the same event.
    elsewhere = EVENT["occurred_at"].astimezone(timezone(timedelta(hours=2)))
    assert canonical(EVENT | {"occurred_at": elsewhere}) == CANONICAL
    assert (
        canonical(EVENT | {"occurred_at": EVENT["occurred_at"].replace(tzinfo=None)}) == CANONICAL
    )
    assert canonical(EVENT | {"id": EVENT["id"].hex}) == CANONICAL  # SQLite's text form


def test_the_chain_covers_every_column_but_hash():
    columns = {column.name for column in AuditEvent.__table__.columns}
    assert set(CHAINED_FIELDS) == columns - {"hash"}
    assert set(
        asdict(AuditRecord(None, None, None, "a", "b", None, "c", None, None))
    ) == columns - {"hash"}
