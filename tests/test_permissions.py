"""Permission levels (contract §2): resolved from the groups claim, highest wins,
configurable, switchable off; the resolved permission is cached per token (never
past its ``exp``) and persisted as the user's ``OAuthPermission`` row."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from sqlalchemy import select

from chatsvc.keys import DB_ENGINE
from chatsvc.store.models import OAuthPermission, User
from tests.conftest import GROUPS, create_session, send_message

SESSIONS = "/api/chat/sessions"
AUDIT = "/api/chat/audit"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def me(client: Any, token: str) -> dict[str, Any]:
    resp = await client.get("/api/me", headers=bearer(token))
    assert resp.status == 200, await resp.text()
    return await resp.json()


async def assert_denied(resp: Any, detail: str) -> None:
    assert resp.status == 403, await resp.text()
    assert resp.content_type == "application/problem+json"
    body = await resp.json(content_type=None)
    assert body["code"] == "PERMISSION_DENIED"
    assert body["detail"] == detail


# --- the default mapping ----------------------------------------------------------

# (groups, GET sessions, POST sessions, GET audit): a status, or the 403 detail.
ROUTE_TABLE = [
    (GROUPS["read"], 200, "Requires write permission", "Requires admin permission"),
    (GROUPS["write"], 200, 201, "Requires admin permission"),
    (GROUPS["admin"], 200, 201, 200),
    (["Onyx-Readers", "Onyx-Writers"], 200, 201, "Requires admin permission"),
    (["Onyx-Admins", "Onyx-Readers"], 200, 201, 200),
    (
        ["Some-Other-Group"],
        "Requires read permission",
        "Requires write permission",
        "Requires admin permission",
    ),
    ([], "Requires read permission", "Requires write permission", "Requires admin permission"),
]


@pytest.mark.parametrize(
    ("groups", "list_sessions", "create", "read_audit"),
    ROUTE_TABLE,
    ids=["read", "write", "admin", "read+write", "admin+read", "unmapped group", "no groups"],
)
async def test_route_levels_follow_the_highest_mapped_group(
    client, okta, groups, list_sessions, create, read_audit
):
    headers = bearer(okta.token("carol@example.com", groups))
    for expected, resp in (
        (list_sessions, await client.get(SESSIONS, headers=headers)),
        (create, await client.post(SESSIONS, json={"title": "t"}, headers=headers)),
        (read_audit, await client.get(AUDIT, headers=headers)),
    ):
        if isinstance(expected, int):
            assert resp.status == expected, await resp.text()
        else:
            await assert_denied(resp, expected)


async def test_user_without_a_mapped_group_is_authenticated_with_null_permission(client, nobody):
    body = await me(client, nobody.token)
    assert body["permission"] is None
    assert body["groups"] == GROUPS["none"]
    assert body["email"] == nobody.email


async def test_token_without_a_groups_claim_has_null_permission(client, okta):
    claims = okta.claims("dave@example.com")
    del claims["groups"]
    body = await me(client, okta.sign(claims))
    assert body["permission"] is None
    assert body["groups"] == []


async def test_groups_claim_given_as_a_single_string_is_one_group(client, okta):
    body = await me(client, okta.token("erin@example.com", groups="Onyx-Writers"))  # type: ignore[arg-type]
    assert body["permission"] == "write"
    assert body["groups"] == ["Onyx-Writers"]


# --- configured mappings ------------------------------------------------------------


@pytest.mark.parametrize(
    ("groups", "expected"),
    [
        (["Team-R"], "read"),
        (["Team-W"], "write"),
        (["Team-X"], "write"),
        (["Team-Boss"], "admin"),
        (["Team-R", "Team-Boss"], "admin"),
        (["Both"], "write"),
        (["Onyx-Writers"], None),
        (["Onyx-Admins"], None),
    ],
)
async def test_custom_group_mapping_from_settings(make_client, okta, groups, expected):
    client = await make_client(
        groups_read="Team-R, Both",
        groups_write="Team-W,Team-X,Both",
        groups_admin=("Team-Boss",),
    )
    assert (await me(client, okta.token("frank@example.com", groups)))["permission"] == expected


async def test_custom_groups_claim_name(make_client, okta):
    client = await make_client(okta_groups_claim="roles")
    token = okta.token("gina@example.com", ["Onyx-Readers"], roles=["Onyx-Admins"])
    body = await me(client, token)
    assert body["permission"] == "admin"
    assert body["groups"] == ["Onyx-Admins"]


async def test_default_groups_claim_is_ignored_when_another_is_configured(make_client, okta):
    client = await make_client(okta_groups_claim="roles")
    body = await me(client, okta.token("hank@example.com", ["Onyx-Admins"]))
    assert body["permission"] is None


# --- the feature flag -----------------------------------------------------------------


@pytest.fixture
async def flag_off(make_client):
    return await make_client(enable_chat_permissions=False)


@pytest.mark.parametrize("level", ["none", "read", "write", "admin"])
async def test_flag_off_everyone_is_write(flag_off, caller, level):
    assert (await me(flag_off, caller(f"{level}@example.com", level).token))["permission"] == (
        "write"
    )


async def test_flag_off_user_without_groups_can_create_a_session_and_send(flag_off, nobody):
    session = await create_session(flag_off, nobody)
    message = await send_message(flag_off, nobody, session["id"], "hi")
    assert message["content"] == "hi"
    assert message["user_email"] == nobody.email


async def test_flag_off_admin_group_gets_no_audit_access(flag_off, admin):
    resp = await flag_off.get(AUDIT, headers=admin.headers)
    await assert_denied(resp, "Requires admin permission")


async def test_flag_off_admin_group_cannot_delete_another_users_session(flag_off, admin, writer):
    session = await create_session(flag_off, writer)
    resp = await flag_off.delete(f"{SESSIONS}/{session['id']}", headers=admin.headers)
    await assert_denied(resp, "Can only delete your own chat sessions")
    assert (await flag_off.get(f"{SESSIONS}/{session['id']}", headers=writer.headers)).status == 200


async def test_flag_off_still_requires_authentication(flag_off):
    assert (await flag_off.get("/api/me")).status == 401


# --- the permission cache ---------------------------------------------------------------


async def test_repeated_token_is_served_from_the_cache_without_sql(client, writer, count_queries):
    counter = count_queries(client)
    await me(client, writer.token)
    assert counter.count > 0  # first sight: the user and permission are recorded
    counter.reset()
    await me(client, writer.token)
    assert counter.statements == []


async def test_cache_ttl_zero_resolves_every_request(make_client, writer, count_queries):
    client = await make_client(permission_cache_ttl=0)
    counter = count_queries(client)
    await me(client, writer.token)
    counter.reset()
    await me(client, writer.token)
    assert counter.count > 0


async def test_cached_token_is_refused_once_it_expires(make_client, okta):
    client = await make_client(jwt_leeway=0)
    token = okta.token("ivy@example.com", GROUPS["write"], ttl=2)
    exp = int(time.time()) + 2
    await me(client, token)
    await asyncio.sleep(max(0.0, exp - time.time()) + 0.2)
    resp = await client.get("/api/me", headers=bearer(token))
    assert resp.status == 401
    assert resp.headers["WWW-Authenticate"] == 'Bearer realm="chatsvc", error="invalid_token"'


async def test_new_token_with_other_groups_takes_effect_at_once(client, okta):
    assert (await me(client, okta.token("jack@example.com", GROUPS["admin"])))["permission"] == (
        "admin"
    )
    demoted = okta.token("jack@example.com", GROUPS["read"])
    assert (await me(client, demoted))["permission"] == "read"
    resp = await client.get(AUDIT, headers=bearer(demoted))
    await assert_denied(resp, "Requires admin permission")


# --- the persisted permission -----------------------------------------------------------


async def stored_permission(client: Any, subject: str) -> tuple[str | None, list[str], Any]:
    async with client.app[DB_ENGINE].connect() as conn:
        row = (
            await conn.execute(
                select(OAuthPermission.level, OAuthPermission.groups, OAuthPermission.updated_at)
                .join(User, User.id == OAuthPermission.user_id)
                .where(User.subject == subject)
            )
        ).one()
    return row.level, list(row.groups), row.updated_at


async def test_permission_is_persisted_on_first_sight(client, okta):
    await me(client, okta.token("kim@example.com", ["Onyx-Writers", "Elsewhere"]))
    level, groups, _ = await stored_permission(client, "kim@example.com")
    assert (level, groups) == ("write", ["Onyx-Writers", "Elsewhere"])


async def test_user_without_a_mapped_group_is_persisted_without_a_level(client, nobody):
    await me(client, nobody.token)
    level, groups, _ = await stored_permission(client, nobody.name)
    assert (level, groups) == (None, GROUPS["none"])


async def test_persisted_permission_follows_changed_groups(client, okta):
    await me(client, okta.token("lee@example.com", GROUPS["read"]))
    _, _, first_update = await stored_permission(client, "lee@example.com")
    await me(client, okta.token("lee@example.com", ["Onyx-Admins", "Onyx-Readers"]))
    level, groups, updated_at = await stored_permission(client, "lee@example.com")
    assert (level, groups) == ("admin", ["Onyx-Admins", "Onyx-Readers"])
    assert updated_at > first_update
