"""Contract section 3, the access rules: who may do what to a session.

The rule table is written out below as the contract states it, one row per
(action, kind of session), one column per kind of user. Each cell meets the
session as it was built: after a request that changed it, the next cell gets a
new one (a denied request changes nothing, so it does not need to).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from chatsvc.api import routing
from tests.conftest import Caller, create_session, send_message, sign_in


@pytest.fixture(autouse=True)
def _verify_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every answer must be what its response model writes (chatsvc.api.models)."""
    monkeypatch.setattr(routing, "VERIFY_ANSWERS", True)


# The outcome of one cell.
OK = "ok"  # the action's success status
DENY = "deny"  # 403 with the action's wording
LEVEL = "level"  # 403 "Requires <the route's level> permission"
NO_SEND = "Cannot send messages to this chat session"  # 403 with this wording

USERS = ("owner", "other_read", "other_write", "write_collab", "read_collab", "admin")
SHARED, PRIVATE = "shared", "private"


@dataclass(frozen=True)
class World:
    """One session owned by ``owner``, with both collaborators and one message by the owner."""

    session_id: str
    is_shared: bool
    message_id: str
    read_collab_id: str
    newcomer_email: str


@dataclass(frozen=True)
class Action:
    level: str
    success: int
    detail: str | None
    request: Callable[[World], tuple[str, str, dict[str, Any] | None]]


def _session(w: World) -> str:
    return f"/api/chat/sessions/{w.session_id}"


ACTIONS: dict[str, Action] = {
    "view session": Action(
        "read", 200, "Access denied to chat session", lambda w: ("GET", _session(w), None)
    ),
    "list messages": Action(
        "read",
        200,
        "Access denied to chat session messages",
        lambda w: ("GET", _session(w) + "/messages", None),
    ),
    "update title": Action(
        "write",
        200,
        "Can only update your own chat sessions or sessions you collaborate on",
        lambda w: ("PUT", _session(w), {"title": "Renamed"}),
    ),
    "change is_shared": Action(
        "write",
        200,
        "Only the owner can change sharing",
        lambda w: ("PUT", _session(w), {"is_shared": not w.is_shared}),
    ),
    "delete session": Action(
        "write",
        204,
        "Can only delete your own chat sessions",
        lambda w: ("DELETE", _session(w), None),
    ),
    "send message": Action(
        "write",
        201,
        NO_SEND,
        lambda w: ("POST", _session(w) + "/messages", {"content": "hi"}),
    ),
    "send system message": Action(
        "write",
        201,
        "Only admins can post system messages",
        lambda w: (
            "POST",
            _session(w) + "/messages",
            {"content": "maintenance at noon", "message_type": "system"},
        ),
    ),
    "update a message": Action(
        "write",
        200,
        "Can only update your own messages",
        lambda w: ("PUT", f"/api/chat/messages/{w.message_id}", {"content": "edited"}),
    ),
    "delete a message": Action(
        "write",
        204,
        "Can only delete your own messages",
        lambda w: ("DELETE", f"/api/chat/messages/{w.message_id}", None),
    ),
    "list collaborators": Action(
        "read",
        200,
        "Access denied to chat session",
        lambda w: ("GET", _session(w) + "/collaborators", None),
    ),
    "add collaborator": Action(
        "write",
        201,
        "Only the owner can manage collaborators",
        lambda w: ("POST", _session(w) + "/collaborators", {"email": w.newcomer_email}),
    ),
    "remove collaborator": Action(
        "write",
        204,
        "Only the owner can manage collaborators",
        lambda w: ("DELETE", _session(w) + f"/collaborators/{w.read_collab_id}", None),
    ),
    "read audit": Action("admin", 200, None, lambda w: ("GET", "/api/chat/audit", None)),
    # Not about the session: the directory of users (chatsvc's own route).
    "list users": Action(
        "write", 200, None, lambda w: ("GET", f"/api/users?query={w.newcomer_email}", None)
    ),
}

# "update a message" and "delete a message" act on the owner's message.
# fmt: off
RULE_TABLE: list[tuple[str, str, tuple[str, ...]]] = [
    # action                 session   owner  other_read other_write write_collab read_collab admin
    ("view session",         SHARED,  (OK,   OK,        OK,         OK,          OK,         OK)),
    ("view session",         PRIVATE, (OK,   DENY,      DENY,       OK,          DENY,       OK)),
    ("list messages",        SHARED,  (OK,   OK,        OK,         OK,          OK,         OK)),
    ("list messages",        PRIVATE, (OK,   DENY,      DENY,       OK,          DENY,       OK)),
    ("update title",         SHARED,  (OK,   LEVEL,     DENY,       OK,          LEVEL,      OK)),
    ("update title",         PRIVATE, (OK,   LEVEL,     DENY,       OK,          LEVEL,      OK)),
    ("change is_shared",     SHARED,  (OK,   LEVEL,     DENY,       DENY,        LEVEL,      OK)),
    ("change is_shared",     PRIVATE, (OK,   LEVEL,     DENY,       DENY,        LEVEL,      OK)),
    ("delete session",       SHARED,  (OK,   LEVEL,     DENY,       DENY,        LEVEL,      OK)),
    ("delete session",       PRIVATE, (OK,   LEVEL,     DENY,       DENY,        LEVEL,      OK)),
    ("send message",         SHARED,  (OK,   LEVEL,     OK,         OK,          LEVEL,      OK)),
    ("send message",         PRIVATE, (OK,   LEVEL,     DENY,       OK,          LEVEL,      OK)),
    ("send system message",  SHARED,  (DENY, LEVEL,     DENY,       DENY,        LEVEL,      OK)),
    ("send system message",  PRIVATE, (DENY, LEVEL,     NO_SEND,    DENY,        LEVEL,      OK)),
    ("update a message",     SHARED,  (OK,   LEVEL,     DENY,       DENY,        LEVEL,      OK)),
    ("update a message",     PRIVATE, (OK,   LEVEL,     DENY,       DENY,        LEVEL,      OK)),
    ("delete a message",     SHARED,  (OK,   LEVEL,     DENY,       DENY,        LEVEL,      OK)),
    ("delete a message",     PRIVATE, (OK,   LEVEL,     DENY,       DENY,        LEVEL,      OK)),
    ("list collaborators",   SHARED,  (OK,   OK,        OK,         OK,          OK,         OK)),
    ("list collaborators",   PRIVATE, (OK,   DENY,      DENY,       OK,          DENY,       OK)),
    ("add collaborator",     SHARED,  (OK,   LEVEL,     DENY,       DENY,        LEVEL,      OK)),
    ("add collaborator",     PRIVATE, (OK,   LEVEL,     DENY,       DENY,        LEVEL,      OK)),
    ("remove collaborator",  SHARED,  (OK,   LEVEL,     DENY,       DENY,        LEVEL,      OK)),
    ("remove collaborator",  PRIVATE, (OK,   LEVEL,     DENY,       DENY,        LEVEL,      OK)),
    ("read audit",           SHARED,  (LEVEL, LEVEL,    LEVEL,      LEVEL,       LEVEL,      OK)),
    ("read audit",           PRIVATE, (LEVEL, LEVEL,    LEVEL,      LEVEL,       LEVEL,      OK)),
    ("list users",           SHARED,  (OK,   LEVEL,     OK,         OK,          LEVEL,      OK)),
    ("list users",           PRIVATE, (OK,   LEVEL,     OK,         OK,          LEVEL,      OK)),
]
# fmt: on


def test_the_table_covers_every_action_on_both_kinds_of_session():
    rows = {(action, session) for action, session, _ in RULE_TABLE}
    assert rows == {(action, kind) for action in ACTIONS for kind in (SHARED, PRIVATE)}
    assert all(len(cells) == len(USERS) for _, _, cells in RULE_TABLE)


@pytest.fixture
def users(caller, writer, reader, other_writer, admin) -> dict[str, Caller]:
    return {
        "owner": writer,
        "other_read": reader,
        "other_write": other_writer,
        "write_collab": caller("collab-write@example.com", "write"),
        "read_collab": caller("collab-read@example.com", "read"),
        "admin": admin,
        "newcomer": caller("newcomer@example.com", "write"),
    }


async def build_world(client, users: dict[str, Caller], shared: bool) -> World:
    owner = users["owner"]
    session = await create_session(client, owner, title="Rules", is_shared=shared)
    read_collab_id = ""
    for name in ("write_collab", "read_collab"):
        resp = await client.post(
            f"/api/chat/sessions/{session['id']}/collaborators",
            json={"email": users[name].email},
            headers=owner.headers,
        )
        assert resp.status == 201, await resp.text()
        if name == "read_collab":
            read_collab_id = (await resp.json())["user_id"]
    message = await send_message(client, owner, session["id"], "the owner's message")
    return World(session["id"], shared, message["id"], read_collab_id, users["newcomer"].email)


def expected_outcome(action: Action, cell: str) -> tuple[int, str | None]:
    if cell == OK:
        return action.success, None
    if cell == LEVEL:
        return 403, f"Requires {action.level} permission"
    if cell == DENY:
        return 403, action.detail
    return 403, cell


async def test_rule_table(client, users, subtests):
    for who in users.values():
        await sign_in(client, who)
    for action_name, kind, cells in RULE_TABLE:
        action = ACTIONS[action_name]
        world = None
        for user_name, cell in zip(USERS, cells, strict=True):
            if world is None:
                world = await build_world(client, users, shared=kind == SHARED)
            method, path, body = action.request(world)
            with subtests.test(action=action_name, session=kind, user=user_name):
                resp = await client.request(
                    method, path, json=body, headers=users[user_name].headers
                )
                if method != "GET" and resp.status < 300:
                    world = None  # it changed: the next user gets a fresh session
                got = (resp.status, (await resp.json())["detail"] if resp.status >= 400 else None)
                assert got == expected_outcome(action, cell)


# --- users without a level ---------------------------------------------------

MISSING = str(uuid.UUID(int=0x1234))

ROUTES: list[tuple[str, str, str]] = [
    # method, path ({s}: a session id, {m}: a message id, {u}: a user id), route level
    ("GET", "/api/chat/sessions", "read"),
    ("POST", "/api/chat/sessions", "write"),
    ("GET", "/api/chat/sessions/{s}", "read"),
    ("PUT", "/api/chat/sessions/{s}", "write"),
    ("DELETE", "/api/chat/sessions/{s}", "write"),
    ("GET", "/api/chat/sessions/{s}/messages", "read"),
    ("POST", "/api/chat/sessions/{s}/messages", "write"),
    ("PUT", "/api/chat/messages/{m}", "write"),
    ("DELETE", "/api/chat/messages/{m}", "write"),
    ("GET", "/api/chat/sessions/{s}/collaborators", "read"),
    ("POST", "/api/chat/sessions/{s}/collaborators", "write"),
    ("DELETE", "/api/chat/sessions/{s}/collaborators/{u}", "write"),
    ("GET", "/api/chat/audit", "admin"),
    ("GET", "/api/users", "write"),
]


async def test_a_user_without_a_level_gets_the_route_level_denial_on_every_route(
    client, writer, nobody, subtests
):
    session = await create_session(client, writer, is_shared=True)
    message = await send_message(client, writer, session["id"])
    me = await sign_in(client, nobody)
    for method, template, level in ROUTES:
        existing = template.format(s=session["id"], m=message["id"], u=me["id"])
        missing = template.format(s=MISSING, m=MISSING, u=MISSING)
        for which, path in (("existing", existing), ("missing", missing)):
            with subtests.test(route=f"{method} {template}", resource=which):
                # An empty body would fail validation: the level check comes first.
                resp = await client.request(method, path, json={}, headers=nobody.headers)
                assert resp.status == 403
                assert (await resp.json())["detail"] == f"Requires {level} permission"


async def test_a_reader_gets_the_route_level_denial_for_a_missing_session(client, reader, subtests):
    for method, template, level in ROUTES:
        if level != "write" or "{" not in template:
            continue
        with subtests.test(route=f"{method} {template}"):
            path = template.format(s=MISSING, m=MISSING, u=MISSING)
            resp = await client.request(method, path, json={}, headers=reader.headers)
            assert resp.status == 403
            assert (await resp.json())["detail"] == "Requires write permission"


# --- rules beyond the table ------------------------------------------------


@pytest.mark.parametrize(
    ("method", "detail"),
    [("PUT", "Can only update your own messages"), ("DELETE", "Can only delete your own messages")],
)
async def test_an_author_loses_their_message_with_the_view_right(
    client, writer, other_writer, method, detail
):
    session = await create_session(client, writer, is_shared=True)
    message = await send_message(client, other_writer, session["id"], "mine")
    unshare = await client.put(
        f"/api/chat/sessions/{session['id']}", json={"is_shared": False}, headers=writer.headers
    )
    assert unshare.status == 200
    resp = await client.request(
        method,
        f"/api/chat/messages/{message['id']}",
        json={"content": "edited"} if method == "PUT" else None,
        headers=other_writer.headers,
    )
    assert resp.status == 403
    assert (await resp.json())["detail"] == detail


@pytest.mark.parametrize(("method", "success"), [("PUT", 200), ("DELETE", 204)])
async def test_an_author_who_can_view_may_change_their_own_message(
    client, writer, other_writer, method, success
):
    session = await create_session(client, writer, is_shared=True)
    message = await send_message(client, other_writer, session["id"], "mine")
    resp = await client.request(
        method,
        f"/api/chat/messages/{message['id']}",
        json={"content": "edited"} if method == "PUT" else None,
        headers=other_writer.headers,
    )
    assert resp.status == success


async def test_a_removed_collaborator_can_no_longer_edit_their_message(
    client, writer, other_writer
):
    session = await create_session(client, writer)
    me = await sign_in(client, other_writer)
    base = f"/api/chat/sessions/{session['id']}/collaborators"
    added = await client.post(base, json={"email": other_writer.email}, headers=writer.headers)
    assert added.status == 201
    message = await send_message(client, other_writer, session["id"], "mine")
    removed = await client.delete(f"{base}/{me['id']}", headers=writer.headers)
    assert removed.status == 204
    resp = await client.put(
        f"/api/chat/messages/{message['id']}",
        json={"content": "edited"},
        headers=other_writer.headers,
    )
    assert resp.status == 403
    assert (await resp.json())["detail"] == "Can only update your own messages"


async def add_collaborator(client, owner: Caller, session_id: str, who: Caller) -> None:
    await sign_in(client, who)
    resp = await client.post(
        f"/api/chat/sessions/{session_id}/collaborators",
        json={"email": who.email},
        headers=owner.headers,
    )
    assert resp.status == 201, await resp.text()


@pytest.mark.parametrize("shared", [True, False])
async def test_setting_is_shared_to_its_current_value_is_not_a_change_of_sharing(
    client, writer, other_writer, shared
):
    session = await create_session(client, writer, is_shared=shared)
    await add_collaborator(client, writer, session["id"], other_writer)
    resp = await client.put(
        f"/api/chat/sessions/{session['id']}",
        json={"title": "Renamed", "is_shared": shared},
        headers=other_writer.headers,
    )
    assert resp.status == 200
    assert (await resp.json())["title"] == "Renamed"


async def test_a_collaborator_changing_title_and_sharing_together_is_denied_sharing(
    client, writer, other_writer
):
    session = await create_session(client, writer, title="Before")
    await add_collaborator(client, writer, session["id"], other_writer)
    resp = await client.put(
        f"/api/chat/sessions/{session['id']}",
        json={"title": "After", "is_shared": True},
        headers=other_writer.headers,
    )
    assert resp.status == 403
    assert (await resp.json())["detail"] == "Only the owner can change sharing"
    after = await client.get(f"/api/chat/sessions/{session['id']}", headers=writer.headers)
    assert (await after.json())["title"] == "Before"


# --- listing -----------------------------------------------------------------


async def test_each_level_lists_exactly_the_sessions_its_scope_allows(
    client, caller, writer, reader, other_writer, admin
):
    write_collab = caller("collab-write@example.com", "write")
    read_collab = caller("collab-read@example.com", "read")
    # The reader once had write access and owns a session from then.
    reader_as_writer = caller(reader.email, "write")

    own_private = await create_session(client, writer, title="own private")
    own_shared = await create_session(client, writer, title="own shared", is_shared=True)
    with_collabs = await create_session(client, writer, title="with collaborators")
    await add_collaborator(client, writer, with_collabs["id"], write_collab)
    await add_collaborator(client, writer, with_collabs["id"], read_collab)
    others_private = await create_session(client, other_writer, title="other's private")
    readers_own = await create_session(client, reader_as_writer, title="reader's own")

    everything = {
        own_private["id"],
        own_shared["id"],
        with_collabs["id"],
        others_private["id"],
        readers_own["id"],
    }
    expected = {
        "owner": (writer, {own_private["id"], own_shared["id"], with_collabs["id"]}),
        "other_read": (reader, {own_shared["id"], readers_own["id"]}),
        "other_write": (other_writer, {own_shared["id"], others_private["id"]}),
        "write_collab": (write_collab, {own_shared["id"], with_collabs["id"]}),
        "read_collab": (read_collab, {own_shared["id"]}),
        "admin": (admin, everything),
    }
    seen = {}
    for name, (who, _) in expected.items():
        resp = await client.get("/api/chat/sessions", headers=who.headers)
        assert resp.status == 200
        seen[name] = {item["id"] for item in await resp.json()}
    assert seen == {name: ids for name, (_, ids) in expected.items()}
