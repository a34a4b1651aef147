"""Seeding: sessions and messages through the API, bulk messages through SQL.

The 100,000-message case is seeded directly into the database, because
100,000 REST sends would take minutes and measure nothing new: rows are
inserted into ``chat_messages`` with consecutive ``seq`` after each session's
current ``last_seq``, and ``chat_sessions.last_seq`` (and ``updated_at``) are
then set to match, so the data is exactly what the API would have stored.
It uses SQLAlchemy Core over the service's own models and engine settings, so
the column types (UUIDs, UTC timestamps, JSON) are stored as the service stores
them on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from typing import Any

from tests.bench.client import Api

SEED_BATCH = 2_000


async def seed_sessions(
    api: Api, sessions: int, messages_per_session: int, concurrency: int = 8
) -> list[dict[str, Any]]:
    """``sessions`` sessions owned by the API's user, each with ``messages_per_session``
    messages, all through REST."""
    created: list[dict[str, Any]] = []
    for i in range(sessions):
        created.append(
            await api.post_json(
                "/api/chat/sessions",
                {"title": f"bench session {i}", "description": "seeded by tests.bench"},
                expect=201,
            )
        )
    gate = asyncio.Semaphore(concurrency)

    async def send(session_id: str, n: int) -> None:
        async with gate:
            await api.post_json(
                f"/api/chat/sessions/{session_id}/messages",
                {"content": f"seed message {n} " + "lorem ipsum " * 8, "metadata": {"n": n}},
                expect=201,
            )

    for n in range(messages_per_session):
        await asyncio.gather(*(send(s["id"], n) for s in created))
    return created


class BenchDatabase:
    """Direct access to the service's database for bulk seeding and counting."""

    def __init__(self, settings: Any) -> None:
        from chatsvc.store.db import create_engine

        self.engine = create_engine(settings)

    async def close(self) -> None:
        await self.engine.dispose()

    async def count_messages(self) -> int:
        from sqlalchemy import func, select

        from chatsvc.store.models import ChatMessage

        async with self.engine.connect() as conn:
            return int(
                (await conn.execute(select(func.count()).select_from(ChatMessage))).scalar_one()
            )

    async def add_messages(
        self, session_ids: list[uuid.UUID], total: int, author_id: uuid.UUID
    ) -> int:
        """Spread ``total`` new messages evenly over ``session_ids``; return how many were added."""
        from sqlalchemy import insert, select, update

        from chatsvc.store.models import ChatMessage, ChatSession, utcnow

        table = ChatMessage.__table__
        added = 0
        async with self.engine.begin() as conn:
            rows = await conn.execute(
                select(ChatSession.id, ChatSession.last_seq).where(ChatSession.id.in_(session_ids))
            )
            last_seq = {row.id: row.last_seq for row in rows}
            per_session = [total // len(session_ids)] * len(session_ids)
            for i in range(total % len(session_ids)):
                per_session[i] += 1
            start = utcnow() - timedelta(days=1)
            batch: list[dict[str, Any]] = []
            for session_id, count in zip(session_ids, per_session, strict=True):
                first = last_seq[session_id] + 1
                for seq in range(first, first + count):
                    stamp = start + timedelta(microseconds=seq)
                    batch.append(
                        {
                            "id": uuid.uuid4(),
                            "chat_session_id": session_id,
                            "seq": seq,
                            "user_id": author_id,
                            "content": f"bulk message {seq} " + "lorem ipsum " * 8,
                            "message_type": "user",
                            "metadata": {"seq": seq},
                            "client_msg_id": None,
                            "is_edited": False,
                            "created_at": stamp,
                            "updated_at": stamp,
                        }
                    )
                    if len(batch) >= SEED_BATCH:
                        await conn.execute(insert(table), batch)
                        added += len(batch)
                        batch = []
                last_seq[session_id] = first + count - 1
            if batch:
                await conn.execute(insert(table), batch)
                added += len(batch)
            now = utcnow()
            for session_id, seq in last_seq.items():
                await conn.execute(
                    update(ChatSession)
                    .where(ChatSession.id == session_id)
                    .values(last_seq=seq, updated_at=now)
                )
        await self.analyze()
        return added

    async def analyze(self) -> None:
        """PostgreSQL: fresh planner statistics, as autovacuum keeps them on a
        long-lived database (a fresh one may otherwise be planned as empty)."""
        if self.engine.dialect.name != "postgresql":
            return
        from sqlalchemy import text

        async with self.engine.connect() as conn:
            conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.execute(text("ANALYZE"))
