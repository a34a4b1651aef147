"""Rolling out enforcement: ``CHATSVC_PERMISSION_MODE=shadow`` and the canary
``CHATSVC_ENFORCE_GROUPS``.

In shadow mode every request acts as with permissions off, and wherever
enforcement would have refused it, one ``would_deny`` audit event with
enforcement's reason is written and ``chatsvc_shadow_denials_total`` counts it;
what permissions off refuses too stays an ordinary denial. The access rule table
of ``tests/test_access_rules.py`` is replayed here under both.
"""

from __future__ import annotations

import contextvars
import logging
import uuid
from collections import Counter
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import select

from chatsvc.api import routing
from chatsvc.auth.groups import GroupMapping
from chatsvc.auth.principal import Level, Principal
from chatsvc.keys import AUDIT, DB_SESSIONS
from chatsvc.policy import (
    Action,
    SessionFacts,
    allows,
    check,
    require_level,
    shadow_refusal,
    shadow_scope,
)
from chatsvc.settings import load_settings
from chatsvc.store.models import AuditEvent
from tests import test_access_rules as rules
from tests.conftest import MakeClient, create_session, send_message, sign_in
from tests.test_metrics import scrape
from tests.ws_helpers import (
    audit_events,
    connect,
    expect_close,
    frames_before_pong,
    next_frame,
    open_ws,
    ping_pong,
    ws_path,
)

POLICY = 1008

# The users of the rule table (the fixture is that module's own).
users = rules.users


@pytest.fixture(autouse=True)
def _verify_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every answer must be what its response model writes (chatsvc.api.models)."""
    monkeypatch.setattr(routing, "VERIFY_ANSWERS", True)


async def stored_events(client: TestClient, **where: Any) -> list[dict[str, Any]]:
    """The audit events in the database (after a flush) whose columns match ``where``."""
    await client.app[AUDIT].flush()
    async with client.app[DB_SESSIONS]() as db:
        rows = await db.execute(select(*AuditEvent.__table__.columns))
        events = [dict(row._mapping) for row in rows]
    return [e for e in events if all(e[key] == value for key, value in where.items())]


def shadow(make_client: MakeClient, *canary: str) -> Any:
    return make_client(permission_mode="shadow", enforce_groups=canary)


# --- the decision, without HTTP ------------------------------------------------------


def mapping(tmp_path, mode: str, *canary: str) -> GroupMapping:
    settings = load_settings(
        environ={},
        config_file=tmp_path / "absent.toml",
        permission_mode=mode,
        enforce_groups=canary,
    )
    return GroupMapping(settings)


def principal_of(groups_mapping: GroupMapping, *groups: str) -> Principal:
    """As authentication builds it, before the request applies the mode."""
    level = groups_mapping.effective(groups_mapping.resolve(groups))
    return Principal(uuid.uuid4(), "iss", "sub", "me@example.com", level, groups, 2**40)


def test_acting_in_shadow_mode(tmp_path):
    shadowed = mapping(tmp_path, "shadow", "Pilot")
    reader = principal_of(shadowed, "Onyx-Readers")
    assert reader.level is Level.READ  # unapplied, it is enforced
    acting = shadowed.acting(reader)
    assert acting.level is Level.WRITE
    assert acting.enforced is not None and acting.enforced.level is Level.READ
    assert shadowed.acting(acting) == acting  # applying it twice changes nothing
    canary = principal_of(shadowed, "Onyx-Readers", "Pilot")
    assert shadowed.acting(canary) == canary
    writer = principal_of(shadowed, "Onyx-Writers")
    assert shadowed.acting(writer) == writer  # no decision differs: nothing to compare
    nobody = shadowed.acting(principal_of(shadowed, "Unrelated"))
    assert nobody.level is Level.WRITE
    assert nobody.enforced is not None and nobody.enforced.level is None


@pytest.mark.parametrize(("mode", "level"), [("enforce", Level.READ), ("off", Level.WRITE)])
def test_acting_outside_shadow_mode_is_the_principal_as_built(tmp_path, mode, level):
    groups_mapping = mapping(tmp_path, mode, "Onyx-Readers")
    reader = principal_of(groups_mapping, "Onyx-Readers")
    assert reader.level is level
    assert groups_mapping.acting(reader) == reader


def test_a_check_notes_the_first_refusal_enforcement_would_give(tmp_path):
    shadowed = mapping(tmp_path, "shadow")
    reader = shadowed.acting(principal_of(shadowed, "Onyx-Readers"))
    theirs = SessionFacts(uuid.uuid4(), is_shared=True, is_collaborator=False)
    with shadow_scope() as notes:
        require_level(reader, Action.MESSAGE_SEND)
        check(reader, Action.MESSAGE_SEND, theirs)
    assert notes.first is not None
    assert (notes.first.action, notes.first.reason) == (
        Action.MESSAGE_SEND,
        "Requires write permission",
    )
    assert notes.first.principal == reader.enforced
    assert allows(reader, Action.MESSAGE_SEND, theirs)  # what the reader can actually do
    assert shadow_refusal(reader, Action.MESSAGE_SEND, theirs) == "Requires write permission"
    private = SessionFacts(uuid.uuid4(), is_shared=False, is_collaborator=False)
    assert shadow_refusal(reader, Action.MESSAGE_SEND, private) is None  # refused anyway


def test_a_note_without_a_scope_is_logged_not_lost(tmp_path, caplog):
    shadowed = mapping(tmp_path, "shadow")
    reader = shadowed.acting(principal_of(shadowed, "Onyx-Readers"))
    with caplog.at_level(logging.ERROR, logger="chatsvc.policy"):
        require_level(reader, Action.SESSION_CREATE)
        with shadow_scope() as notes:
            context = contextvars.copy_context()  # what a timer started here would run in
        context.run(require_level, reader, Action.MESSAGE_SEND)
    assert notes.first is None
    assert [r.getMessage() for r in caplog.records] == [
        "event=would_deny_unscoped action=session.create reason='Requires write permission'",
        "event=would_deny_unscoped action=message.send reason='Requires write permission'",
    ]


# --- the rule table, replayed ------------------------------------------------------

# With permissions off (and so in shadow mode) everyone acts as write: a reader
# as a writer in the same relation to the session, an admin as a writer with none.
OFF_AS = {
    "owner": "owner",
    "other_read": "other_write",
    "other_write": "other_write",
    "write_collab": "write_collab",
    "read_collab": "write_collab",
    "admin": "other_write",
}
LEVEL_OF = {
    "owner": "write",
    "other_read": "read",
    "other_write": "write",
    "write_collab": "write",
    "read_collab": "read",
    "admin": "admin",
}
# The audit action of each row: (a route-level denial, a denial by the rule).
AUDITED_AS = {
    "view session": ("session.read", "session.read"),
    "list messages": ("message.list", "message.list"),
    "update title": ("session.update", "session.update"),
    "change is_shared": ("session.update", "session.share"),
    "delete session": ("session.delete", "session.delete"),
    "send message": ("message.send", "message.send"),
    "send system message": ("message.send", "message.send"),
    "update a message": ("message.update", "message.update"),
    "delete a message": ("message.delete", "message.delete"),
    "list collaborators": ("collaborator.list", "collaborator.list"),
    "add collaborator": ("collaborator.add", "collaborator.add"),
    "remove collaborator": ("collaborator.remove", "collaborator.remove"),
    "read audit": ("audit.read", "audit.read"),
    "list users": ("user.list", "user.list"),
}
CANARIES = {
    "no canary": (),
    "readers and admins enforced": ("Onyx-Readers", "Onyx-Admins"),
}
ENFORCED_BY = {"Onyx-Readers": {"other_read", "read_collab"}, "Onyx-Admins": {"admin"}}


def test_every_row_of_the_rule_table_has_its_audit_actions():
    assert set(AUDITED_AS) == set(rules.ACTIONS)
    assert set(OFF_AS) == set(LEVEL_OF) == set(rules.USERS)


def audited_action(action_name: str, cell: str) -> str:
    route_level, rule = AUDITED_AS[action_name]
    return route_level if cell == rules.LEVEL else rule


def resource_of(action_name: str, world: rules.World) -> str | None:
    if action_name in ("read audit", "list users"):
        return None
    if action_name in ("update a message", "delete a message"):
        return world.message_id
    return world.session_id


@pytest.mark.parametrize("canary", CANARIES.values(), ids=CANARIES.keys())
async def test_rule_table_in_shadow_mode(make_client, users, subtests, canary):
    """Each cell: the answer permissions off gives (or, for a canary member, the one
    enforcement gives) and exactly the one audit event it calls for."""
    client = await shadow(make_client, *canary)
    enforced = set().union(*(ENFORCED_BY[group] for group in canary))
    seen: Counter[str] = Counter()
    for who in users.values():
        await sign_in(client, who)
    for action_name, kind, cells in rules.RULE_TABLE:
        action = rules.ACTIONS[action_name]
        world = None
        for user_name, enforce_cell in zip(rules.USERS, cells, strict=True):
            if world is None:
                world = await rules.build_world(client, users, shared=kind == rules.SHARED)
            acting_as = user_name if user_name in enforced else OFF_AS[user_name]
            cell = cells[rules.USERS.index(acting_as)]
            asked, (method, path, body) = world, action.request(world)
            request_id = uuid.uuid4().hex
            with subtests.test(action=action_name, session=kind, user=user_name):
                who = users[user_name]
                resp = await client.request(
                    method, path, json=body, headers={**who.headers, "X-Request-ID": request_id}
                )
                if method != "GET" and resp.status < 300:
                    world = None  # it changed: the next user gets a fresh session
                got = (resp.status, (await resp.json())["detail"] if resp.status >= 400 else None)
                assert got == rules.expected_outcome(action, cell)

                events = await stored_events(client, request_id=request_id)
                summary = [(e["outcome"], e["action"], e["reason"]) for e in events]
                seen.update(outcome for outcome, _, _ in summary)
                refused = rules.expected_outcome(action, cell)[1]
                would = rules.expected_outcome(action, enforce_cell)[1]
                if refused is not None:  # refused as it acts: an ordinary denial, alone
                    assert summary == [("denied", audited_action(action_name, cell), refused)]
                elif would is not None:  # only enforcement refuses: one would-deny
                    assert user_name not in enforced
                    assert summary == [
                        ("would_deny", audited_action(action_name, enforce_cell), would)
                    ]
                    (event,) = events
                    assert event["permission"] == LEVEL_OF[user_name]  # the level judged
                    assert event["user_email"] == who.email
                    assert event["resource_id"] == resource_of(action_name, asked)
                else:
                    assert summary == []
    # Only a plain shadow run lets anything through that enforcement refuses.
    assert (seen["would_deny"] > 0) == (not canary), seen
    assert seen["denied"] > 0


# --- REST beyond the table -------------------------------------------------------


async def test_a_would_deny_is_recorded_whatever_the_request_answers_after(
    make_client, writer, reader, nobody
):
    """Enforcement answers the route level first: a request that then fails
    validation or finds nothing still counts as one it would have refused."""
    client = await shadow(make_client)
    session = await create_session(client, writer, is_shared=True)
    missing = str(uuid.UUID(int=7))
    cases = [
        (nobody, "GET", f"/api/chat/sessions/{missing}", None, 404, "session.read",
         "Requires read permission"),
        (reader, "POST", f"/api/chat/sessions/{session['id']}/messages", {"content": ""}, 400,
         "message.send", "Requires write permission"),
        (reader, "PUT", f"/api/chat/sessions/{missing}", {"title": "x"}, 404, "session.update",
         "Requires write permission"),
    ]  # fmt: skip
    for who, method, path, body, status, action, reason in cases:
        request_id = uuid.uuid4().hex
        resp = await client.request(
            method, path, json=body, headers={**who.headers, "X-Request-ID": request_id}
        )
        assert resp.status == status, await resp.text()
        events = await stored_events(client, request_id=request_id)
        assert [(e["outcome"], e["action"], e["reason"]) for e in events] == [
            ("would_deny", action, reason)
        ]


async def test_a_check_made_twice_in_one_request_is_one_would_deny(make_client, writer, reader):
    """A reader's send passes the route level and then the send rule: enforcement
    would refuse both at the level, and answer the first."""
    client = await shadow(make_client)
    session = await create_session(client, writer, is_shared=True)
    me = await sign_in(client, reader)
    message = await send_message(client, reader, session["id"], "a reader speaks")
    assert message["user_id"] == me["id"]
    events = await stored_events(client, user_id=uuid.UUID(me["id"]))
    assert [(e["outcome"], e["action"], e["reason"]) for e in events] == [
        ("would_deny", "message.send", "Requires write permission")
    ]


async def test_shadow_permissions_describe_what_the_caller_can_actually_do(
    make_client, writer, reader
):
    client = await shadow(make_client)
    session = await create_session(client, writer, is_shared=True)
    resp = await client.get(f"/api/chat/sessions/{session['id']}", headers=reader.headers)
    assert resp.status == 200
    permissions = (await resp.json())["permissions"]
    assert permissions["send"] is True  # as write: the reader may send (and is audited)
    assert permissions["delete"] is False  # not theirs, whatever the level
    assert await stored_events(client) == []  # describing is not deciding


async def test_the_admin_audit_route_lists_would_deny_by_action_for_canary_admins(
    make_client, writer, reader, admin
):
    """The roll-out report: admins in the canary keep the audit route; the would-deny
    events are there, filtered by action, with ``outcome``."""
    client = await shadow(make_client, "Onyx-Admins")
    session = await create_session(client, writer, is_shared=True)
    await send_message(client, reader, session["id"], "one")
    await send_message(client, reader, session["id"], "two")
    events = await audit_events(client, admin, "message.send")
    assert [(e["outcome"], e["reason"], e["user_email"]) for e in events] == [
        ("would_deny", "Requires write permission", reader.email)
    ] * 2


async def test_an_admin_outside_the_canary_acts_as_write_and_cannot_read_the_audit(
    make_client, admin
):
    client = await shadow(make_client)
    resp = await client.get("/api/chat/audit", headers=admin.headers)
    assert resp.status == 403
    assert (await resp.json())["detail"] == "Requires admin permission"
    events = await stored_events(client, action="audit.read")
    assert [(e["outcome"], e["permission"]) for e in events] == [("denied", "write")]


async def test_would_deny_is_logged_and_counted_apart_from_denials(
    make_client, writer, reader, other_writer, caplog
):
    client = await shadow(make_client)
    private = await create_session(client, writer)
    shared = await create_session(client, writer, is_shared=True)
    before = await scrape(client)
    with caplog.at_level(logging.WARNING, logger="chatsvc.audit"):
        await send_message(client, reader, shared["id"])  # would deny
        resp = await client.get(f"/api/chat/sessions/{private['id']}", headers=other_writer.headers)
        assert resp.status == 403  # denied
    after = await scrape(client)

    def moved(name: str) -> float:
        return after.get(name, 0.0) - before.get(name, 0.0)

    assert moved("chatsvc_shadow_denials_total|action=message.send") == 1
    assert moved("chatsvc_access_denials_total|action=message.send") == 0
    assert moved("chatsvc_access_denials_total|action=session.read") == 1
    assert moved("chatsvc_shadow_denials_total|action=session.read") == 0
    lines = [r.getMessage() for r in caplog.records if r.name == "chatsvc.audit"]
    assert len(lines) == 2
    assert lines[0].startswith("event=would_deny action=message.send ")
    assert "permission=read" in lines[0]
    assert "reason='Requires write permission'" in lines[0]
    assert lines[1].startswith("event=access_denied action=session.read ")


async def test_in_enforce_and_off_nothing_is_recorded_as_would_deny(
    make_client, writer, reader, subtests
):
    for mode in ("enforce", "off"):
        with subtests.test(mode=mode):
            client = await make_client(permission_mode=mode)
            session = await create_session(client, writer, is_shared=True)
            await client.post(
                f"/api/chat/sessions/{session['id']}/messages",
                json={"content": "hi"},
                headers=reader.headers,
            )
            assert await stored_events(client, outcome="would_deny") == []


# --- GET /api/me ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "mode", "reader_acts_as"),
    [
        ({}, "enforce", "read"),
        ({"permission_mode": "enforce"}, "enforce", "read"),
        ({"permission_mode": "shadow"}, "shadow", "write"),
        ({"permission_mode": "shadow", "enforce_groups": ("Onyx-Readers",)}, "shadow", "read"),
        ({"permission_mode": "off"}, "off", "write"),
        ({"enable_chat_permissions": False}, "off", "write"),
    ],
    ids=["default", "enforce", "shadow", "shadow, reader in the canary", "off", "flag off"],
)
async def test_me_reports_the_mode_and_the_level_the_caller_acts_at(
    make_client, reader, settings, mode, reader_acts_as
):
    client = await make_client(**settings)
    body = await sign_in(client, reader)
    assert body["permission_mode"] == mode
    assert body["permission"] == reader_acts_as
    assert body["groups"] == ["Onyx-Readers"]


async def test_me_in_shadow_mode_for_admins_and_users_without_a_level(
    make_client, caller, admin, nobody
):
    client = await shadow(make_client, "Onyx-Admins")
    assert (await sign_in(client, admin))["permission"] == "admin"  # a canary member
    assert (await sign_in(client, nobody))["permission"] == "write"
    plain = await shadow(make_client)
    assert (await sign_in(plain, caller("boss@example.com", "admin")))["permission"] == "write"


# --- the WebSocket -------------------------------------------------------------------


async def ws_events(client: TestClient, request_id: str) -> list[tuple[str, str, str]]:
    return [
        (e["outcome"], e["action"], e["reason"])
        for e in await stored_events(client, request_id=request_id)
    ]


async def test_ws_send_and_typing_each_record_one_would_deny(make_client, writer, reader, caller):
    client = await shadow(make_client)
    session = await create_session(client, writer, is_shared=True)
    owner_ws, _ = await connect(client, writer, session["id"])
    ws = await client.ws_connect(
        ws_path(session["id"]), headers={**reader.headers, "X-Request-ID": "reader-socket"}
    )
    connected = await next_frame(ws, "connected")
    assert (connected["permission"], connected["can_send"]) == ("write", True)
    assert await ws_events(client, "reader-socket") == []  # a shared session: viewing is fine

    await ws.send_json({"type": "message", "content": "from a reader"})
    sent = await next_frame(ws, "message")
    assert sent["content"] == "from a reader"
    await ws.send_json({"type": "typing", "is_typing": True})
    typing = await next_frame(owner_ws, "typing")
    assert typing["is_typing"] is True
    await ping_pong(ws)
    assert await ws_events(client, "reader-socket") == [
        ("would_deny", "ws.send", "Requires write permission"),
        ("would_deny", "ws.typing", "Requires write permission"),
    ]
    events = await stored_events(client, request_id="reader-socket")
    assert {(e["permission"], e["resource_id"]) for e in events} == {("read", session["id"])}


async def test_ws_connect_records_one_would_deny_where_enforcement_would_close(
    make_client, writer, reader, nobody, caller
):
    client = await shadow(make_client)
    private = await create_session(client, writer)
    shared = await create_session(client, writer, is_shared=True)
    read_collab = caller("collab-read@example.com", "read")
    await rules.add_collaborator(client, writer, private["id"], read_collab)
    cases = [
        (nobody, shared["id"], None),  # no level at all
        (read_collab, private["id"], "read"),  # a read collaborator may not view
    ]
    for who, session_id, level in cases:
        request_id = uuid.uuid4().hex
        ws = await client.ws_connect(
            ws_path(session_id), headers={**who.headers, "X-Request-ID": request_id}
        )
        connected = await next_frame(ws, "connected")
        assert connected["permission"] == "write"
        await ping_pong(ws)
        assert await ws_events(client, request_id) == [
            ("would_deny", "ws.connect", "Access denied")
        ]
        (event,) = await stored_events(client, request_id=request_id)
        assert (event["permission"], event["resource_id"]) == (level, session_id)
        await ws.close()


async def test_ws_connect_refused_as_it_acts_too_is_one_denial(
    make_client, writer, other_writer, nobody
):
    client = await shadow(make_client)
    private = await create_session(client, writer)
    ws = await client.ws_connect(
        ws_path(private["id"]), headers={**other_writer.headers, "X-Request-ID": "not-shared"}
    )
    await expect_close(ws, POLICY, "Access denied")
    assert await ws_events(client, "not-shared") == [("denied", "ws.connect", "Access denied")]

    # Enforcement would refuse a user without a level before reading since_seq.
    ws = await client.ws_connect(
        ws_path(private["id"], since_seq="x"),
        headers={**nobody.headers, "X-Request-ID": "bad-since"},
    )
    await expect_close(ws, POLICY, "Invalid since_seq")
    assert await ws_events(client, "bad-since") == [("would_deny", "ws.connect", "Access denied")]


async def test_a_socket_enforcement_would_close_on_a_re_check_stays_open_once_recorded(
    make_client, writer, caller
):
    """A read collaborator views a shared session; unsharing would close their
    socket under enforcement. In shadow mode it stays open, recorded once."""
    client = await shadow(make_client)
    session = await create_session(client, writer, is_shared=True)
    read_collab = caller("collab-read@example.com", "read")
    await rules.add_collaborator(client, writer, session["id"], read_collab)
    ws = await client.ws_connect(
        ws_path(session["id"]), headers={**read_collab.headers, "X-Request-ID": "collab-socket"}
    )
    await next_frame(ws, "connected")
    for shared in (False, True, False):  # every change re-checks the socket
        resp = await client.put(
            f"/api/chat/sessions/{session['id']}",
            json={"is_shared": shared},
            headers=writer.headers,
        )
        assert resp.status == 200
    await frames_before_pong(ws)  # open, and served
    assert await ws_events(client, "collab-socket") == [
        ("would_deny", "ws.revoked", "Access revoked")
    ]


async def test_a_renewal_enforcement_would_close_on_stays_open_once_recorded(
    make_client, writer, caller, okta
):
    client = await shadow(make_client)
    session = await create_session(client, writer)
    collab = caller("collab@example.com", "write")
    await rules.add_collaborator(client, writer, session["id"], collab)
    ws = await client.ws_connect(
        ws_path(session["id"]), headers={**collab.headers, "X-Request-ID": "renewing"}
    )
    await next_frame(ws, "connected")
    demoted = okta.token(collab.email, ["Onyx-Readers"])
    await ws.send_json({"type": "auth", "access_token": demoted})
    await next_frame(ws, "auth_ok")
    await ping_pong(ws)
    assert await ws_events(client, "renewing") == [("would_deny", "ws.revoked", "Access revoked")]


async def test_a_canary_member_is_enforced_on_the_websocket(make_client, writer, reader, nobody):
    client = await shadow(make_client, "Onyx-Readers", "Some-Other-Group")
    session = await create_session(client, writer, is_shared=True)
    ws, connected = await connect(client, reader, session["id"])
    assert (connected["permission"], connected["can_send"]) == ("read", False)
    await ws.send_json({"type": "message", "content": "no"})
    error = await next_frame(ws, "error")
    assert error == {
        "type": "error",
        "code": "PERMISSION_DENIED",
        "message": "Requires write permission",
    }
    refused = await open_ws(client, nobody, session["id"])
    await expect_close(refused, POLICY, "Access denied")
    outcomes = [(e["outcome"], e["action"]) for e in await stored_events(client)]
    assert sorted(outcomes) == [("denied", "ws.connect"), ("denied", "ws.send")]
