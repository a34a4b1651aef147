"""Stored audit events, chained by hash (:mod:`chatsvc.store.chain`).

The chain runs in ``occurred_at, id`` order and must never fork, even with
several processes writing: a batch is chained and inserted under a lock held
until its commit (a transaction-scoped advisory lock on PostgreSQL, the
database's write lock on SQLite), after reading the tail under that lock.

Writes are buffered, so a batch can hold events that occurred before the tail
another process has just written. Chaining them after that tail while their
``occurred_at`` sorts before it would make the chain order differ from the
stored order (and the check fail), so such an event's ``occurred_at`` is moved
to just after the tail's: the stored order is always the order of insertion.
The shift is at most the time an event waited in a buffer.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import insert, select, text, tuple_, type_coerce
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.types import NullType

from chatsvc.store.chain import CHAINED_FIELDS, link
from chatsvc.store.models import AuditEvent

# Any constant every process agrees on, other than the migrations' lock
# (chatsvc.store.migrate): the first eight bytes of "audit-chain".
CHAIN_LOCK_KEY = int.from_bytes(b"audit-ch", "big") >> 1
TICK = timedelta(microseconds=1)  # the timestamp resolution of both databases
VERIFY_BATCH = 1000  # rows read at a time by the check


async def _lock_chain(session: AsyncSession) -> None:
    """Hold the chain's tail until this transaction ends, in every process."""
    if session.get_bind().dialect.name == "postgresql":
        await session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": CHAIN_LOCK_KEY})
    else:
        # SQLite starts a transaction only at the first write, after the tail was
        # read; take the write lock first. Python's sqlite3 leaves an explicit BEGIN
        # alone and commits it as its own.
        await session.execute(text("BEGIN IMMEDIATE"))


async def insert_events(session: AsyncSession, events: list[dict[str, Any]]) -> str | None:
    """Append a batch to the chain; the new head's hash. ``session`` must be fresh:
    on SQLite the lock has to be its transaction's first statement."""
    if not events:
        return None
    await _lock_chain(session)
    tail = (
        await session.execute(
            select(AuditEvent.occurred_at, AuditEvent.id, AuditEvent.hash)
            .order_by(AuditEvent.occurred_at.desc(), AuditEvent.id.desc())
            .limit(1)
        )
    ).first()
    previous = tail.hash if tail else None
    last = (tail.occurred_at, tail.id) if tail else None
    rows = sorted((dict(e) for e in events), key=lambda e: (e["occurred_at"], e["id"]))
    for row in rows:
        if last is not None and (row["occurred_at"], row["id"]) <= last:
            row["occurred_at"] = last[0] + TICK  # after the tail: see the module's docstring
        row["hash"] = previous = link(previous, row)
        last = (row["occurred_at"], row["id"])
    await session.execute(insert(AuditEvent), rows)
    await session.commit()
    return previous


@dataclass(frozen=True, slots=True)
class ChainCheck:
    ok: bool
    events: int  # every stored event, read to the end
    # The first event whose hash is not the one computed from its fields and its
    # predecessor's hash: the edited or inserted event, or the one after a deletion.
    first_bad_id: uuid.UUID | None


async def verify_chain(
    sessions: async_sessionmaker[AsyncSession], batch_size: int | None = None
) -> ChainCheck:
    """Re-compute the chain over the whole table, ``batch_size`` rows at a time.

    Keyset pages, one short session each: memory stays bounded and the check
    never holds a connection (SQLite has one) between pages. Events written
    meanwhile sort after every earlier one, so the pages cannot shift."""
    size = batch_size or VERIFY_BATCH
    # The page boundary is compared as stored: a SQLite row written by hand can hold
    # a timestamp in another text form than chatsvc's, which a re-written one would skip.
    stored_at = type_coerce(AuditEvent.occurred_at, NullType())
    columns = [getattr(AuditEvent, name) for name in (*CHAINED_FIELDS, "hash")]
    columns.append(stored_at.label("stored_at"))
    key = tuple_(stored_at, AuditEvent.id)
    previous: str | None = None
    count = 0
    first_bad: uuid.UUID | None = None
    after: tuple[Any, Any] | None = None
    while True:
        query = select(*columns).order_by(AuditEvent.occurred_at, AuditEvent.id).limit(size)
        if after is not None:
            query = query.where(key > after)
        async with sessions() as db:
            rows = (await db.execute(query)).mappings().all()
        for row in rows:
            count += 1
            if first_bad is None and row["hash"] != link(previous, row):
                first_bad = row["id"]
            previous = row["hash"]  # the next event was chained from what is stored
        if len(rows) < size:
            return ChainCheck(first_bad is None, count, first_bad)
        after = (rows[-1]["stored_at"], rows[-1]["id"])


async def list_events(
    session: AsyncSession,
    limit: int,
    offset: int,
    user_id: uuid.UUID | None = None,
    action: str | None = None,
    outcome: str | None = None,
) -> list[dict[str, Any]]:
    query = select(*AuditEvent.__table__.columns)
    if user_id is not None:
        query = query.where(AuditEvent.user_id == user_id)
    if action is not None:
        query = query.where(AuditEvent.action == action)
    if outcome is not None:
        query = query.where(AuditEvent.outcome == outcome)
    query = (
        query.order_by(AuditEvent.occurred_at.desc(), AuditEvent.id.desc())
        .limit(limit)
        .offset(offset)
    )
    return [dict(row._mapping) for row in await session.execute(query)]
