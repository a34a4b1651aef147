"""A user is recorded on their first request. The first requests of many new users
at once are written together (one transaction per batch), and the same new user's
concurrent first requests make one user."""

from __future__ import annotations

import asyncio

from sqlalchemy import func, select

from chatsvc.keys import DB_SESSIONS
from chatsvc.store.models import OAuthPermission, User
from tests.conftest import GROUPS


async def test_many_new_users_at_once_are_recorded_in_few_transactions(client, okta, count_queries):
    counter = count_queries(client)
    tokens = [okta.token(f"new{i}@example.com", GROUPS["write"]) for i in range(100)]
    responses = await asyncio.gather(
        *(client.get("/api/me", headers={"Authorization": f"Bearer {t}"}) for t in tokens)
    )
    bodies = [await r.json() for r in responses]
    assert [r.status for r in responses] == [200] * 100
    assert sorted(b["email"] for b in bodies) == sorted(f"new{i}@example.com" for i in range(100))
    assert len({b["id"] for b in bodies}) == 100
    async with client.app[DB_SESSIONS]() as db:
        assert await db.scalar(select(func.count()).select_from(User)) == 100
        assert await db.scalar(select(func.count()).select_from(OAuthPermission)) == 100
    inserts = [s for s in counter.statements if s.lstrip().upper().startswith("INSERT INTO USERS")]
    assert 1 <= len(inserts) <= 50, len(inserts)


async def test_one_new_users_concurrent_first_requests_make_one_user(client, okta):
    tokens = [okta.token("twin@example.com", GROUPS["write"]) for _ in range(20)]
    responses = await asyncio.gather(
        *(client.get("/api/me", headers={"Authorization": f"Bearer {t}"}) for t in tokens)
    )
    assert [r.status for r in responses] == [200] * 20
    assert len({(await r.json())["id"] for r in responses}) == 1
    async with client.app[DB_SESSIONS]() as db:
        assert await db.scalar(select(func.count()).select_from(User)) == 1


async def test_a_known_user_whose_groups_changed_is_updated_beside_new_users(client, okta):
    first = okta.token("known@example.com", GROUPS["read"])
    assert (await client.get("/api/me", headers={"Authorization": f"Bearer {first}"})).status == 200
    changed = okta.token("known@example.com", GROUPS["admin"])
    others = [okta.token(f"other{i}@example.com", GROUPS["write"]) for i in range(10)]
    responses = await asyncio.gather(
        *(
            client.get("/api/me", headers={"Authorization": f"Bearer {t}"})
            for t in [changed, *others]
        )
    )
    assert (await responses[0].json())["permission"] == "admin"
    async with client.app[DB_SESSIONS]() as db:
        level = await db.scalar(
            select(OAuthPermission.level)
            .join(User, User.id == OAuthPermission.user_id)
            .where(User.subject == "known@example.com")
        )
    assert level == "admin"
