"""The access rules as a pure table, without HTTP: every action, for every
level, relation to the session and sharing state -- the rule table as the
contract writes it, checked against ``chatsvc.policy`` in milliseconds."""

from __future__ import annotations

import itertools
import uuid

import pytest

from chatsvc.auth.principal import Level, Principal
from chatsvc.errors import AccessDenied
from chatsvc.policy import (
    PERMISSIONS,
    RULES,
    Action,
    ListScope,
    SessionFacts,
    allows,
    check,
    check_message_type,
    list_scope,
    permissions,
    session_update_actions,
)

ME = uuid.uuid4()
OTHER = uuid.uuid4()
LEVELS = [None, Level.READ, Level.WRITE, Level.ADMIN]
RELATIONS = ["owner", "collaborator", "stranger"]


def who(level: Level | None) -> Principal:
    return Principal(ME, "iss", "sub", "me@example.com", level, (), 2**40)


def facts(relation: str, shared: bool, author: bool = False) -> SessionFacts:
    return SessionFacts(
        owner_id=ME if relation == "owner" else OTHER,
        is_shared=shared,
        is_collaborator=relation == "collaborator",
        author_id=ME if author else OTHER,
    )


def at_least(level: Level | None, needed: Level) -> bool:
    return level is not None and level >= needed


def expected(
    action: Action, level: Level | None, relation: str, shared: bool, author: bool
) -> bool:
    """The rule table, restated independently of the implementation."""
    admin = level is Level.ADMIN
    owner = relation == "owner"
    collab_write = relation == "collaborator" and at_least(level, Level.WRITE)
    view = admin or owner or shared or collab_write
    table = {
        Action.SESSION_LIST: at_least(level, Level.READ),
        Action.SESSION_READ: at_least(level, Level.READ) and view,
        Action.MESSAGE_LIST: at_least(level, Level.READ) and view,
        Action.COLLABORATOR_LIST: at_least(level, Level.READ) and view,
        Action.WS_CONNECT: at_least(level, Level.READ) and view,
        Action.WS_REVOKED: at_least(level, Level.READ) and view,
        Action.SESSION_CREATE: at_least(level, Level.WRITE),
        Action.SESSION_UPDATE: at_least(level, Level.WRITE) and (admin or owner or collab_write),
        Action.SESSION_SHARE: at_least(level, Level.WRITE) and (admin or owner),
        Action.SESSION_DELETE: at_least(level, Level.WRITE) and (admin or owner),
        Action.COLLABORATOR_ADD: at_least(level, Level.WRITE) and (admin or owner),
        Action.COLLABORATOR_REMOVE: at_least(level, Level.WRITE) and (admin or owner),
        Action.MESSAGE_UPDATE: at_least(level, Level.WRITE) and (admin or (author and view)),
        Action.MESSAGE_DELETE: at_least(level, Level.WRITE) and (admin or (author and view)),
        Action.AUDIT_READ: admin,
        Action.USER_LIST: at_least(level, Level.WRITE),
    }
    send = at_least(level, Level.WRITE) and (admin or owner or shared or relation == "collaborator")
    for action_ in (Action.MESSAGE_SEND, Action.WS_SEND, Action.WS_TYPING):
        table[action_] = send
    return table[action]


CASES = list(itertools.product(Action, LEVELS, RELATIONS, [False, True], [False, True]))


def test_every_action_has_a_rule() -> None:
    assert set(RULES) == set(Action)


@pytest.mark.parametrize(("action", "level", "relation", "shared", "author"), CASES)
def test_check_and_allows_follow_the_rule_table(
    action: Action, level: Level | None, relation: str, shared: bool, author: bool
) -> None:
    principal, resource = who(level), facts(relation, shared, author)
    want = expected(action, level, relation, shared, author)
    assert allows(principal, action, resource) is want
    if want:
        check(principal, action, resource)
        return
    with pytest.raises(AccessDenied) as denied:
        check(principal, action, resource)
    assert denied.value.action is action
    rule = RULES[action]
    level_wording = f"Requires {rule.level.label} permission"
    assert denied.value.detail == (
        level_wording if not at_least(level, rule.level) else rule.detail
    )


@pytest.mark.parametrize("level", LEVELS)
def test_only_admins_post_system_messages_and_the_denial_is_the_send(level: Level | None) -> None:
    for action in (Action.MESSAGE_SEND, Action.WS_SEND):
        check_message_type(who(level), action, "user")
        if level is Level.ADMIN:
            check_message_type(who(level), action, "system")
            continue
        with pytest.raises(AccessDenied) as denied:
            check_message_type(who(level), action, "system")
        assert (denied.value.action, denied.value.detail) == (
            action,
            "Only admins can post system messages",
        )


@pytest.mark.parametrize(
    ("level", "scope"),
    [
        (Level.READ, ListScope.OWN_OR_SHARED),
        (Level.WRITE, ListScope.OWN_SHARED_OR_COLLAB),
        (Level.ADMIN, ListScope.ALL),
    ],
)
def test_list_scope_by_level(level: Level, scope: ListScope) -> None:
    assert list_scope(who(level)) is scope


@pytest.mark.parametrize(
    ("content", "sharing", "actions"),
    [
        (False, False, (Action.SESSION_UPDATE,)),  # a PUT that changes nothing
        (True, False, (Action.SESSION_UPDATE,)),
        (False, True, (Action.SESSION_SHARE,)),
        (True, True, (Action.SESSION_UPDATE, Action.SESSION_SHARE)),
    ],
)
def test_what_a_session_put_needs(content: bool, sharing: bool, actions: tuple) -> None:
    assert session_update_actions(content=content, sharing=sharing) == actions


@pytest.mark.parametrize(
    ("level", "relation", "shared"), list(itertools.product(LEVELS, RELATIONS, [False, True]))
)
def test_permissions_say_true_exactly_where_the_checks_pass(
    level: Level | None, relation: str, shared: bool
) -> None:
    principal, resource = who(level), facts(relation, shared)
    granted = permissions(principal, resource)
    assert set(granted) == {
        "view",
        "send",
        "update",
        "share",
        "delete",
        "manage_collaborators",
        "post_system",
    }
    for name, action in PERMISSIONS.items():
        assert granted[name] is expected(action, level, relation, shared, author=False)
    posts_system = True
    try:
        check(principal, Action.MESSAGE_SEND, resource)
        check_message_type(principal, Action.MESSAGE_SEND, "system")
    except AccessDenied:
        posts_system = False
    assert granted["post_system"] is posts_system
