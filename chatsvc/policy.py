"""The access policy: every chat access decision, for REST and WebSocket alike.

Pure functions over the caller (:class:`Principal`) and the facts about the
resource (:class:`SessionFacts`). Nothing here does I/O. Every decision is keyed
by an :class:`Action`; :data:`RULES` is the one table, and everything else
(route levels, the WebSocket's ``can_send``, audit resource types) is read from it.

Checks run in this order; the first that fails answers:
authentication (401) -> the route's level (403 ``Requires <level> permission``,
:func:`require_level`) -> request validation (400) -> existence (404) -> the
action's rule (403, :func:`check`).

========================  =====  ===============================================  ==========================================
action                    level  allowed when                                     403 detail
========================  =====  ===============================================  ==========================================
session.list              read   read: own|shared; write: own|shared|collab;      --
                                 admin: all
session.read              read   owner | shared | (collab & write+) | admin       Access denied to chat session
message.list              read   as session.read                                  Access denied to chat session messages
session.create            write  always                                           --
session.update            write  owner | (collab & write+) | admin                Can only update your own chat sessions
                                                                                  or sessions you collaborate on
session.share             write  owner | admin                                    Only the owner can change sharing
session.delete            write  owner | admin                                    Can only delete your own chat sessions
message.send, ws.send,    write  owner | (shared & write+) | (collab & write+)    Cannot send messages to this chat session
ws.typing                        | admin
(a system message)        write  admin                                            Only admins can post system messages
message.update            write  (author & can view) | admin                      Can only update your own messages
message.delete            write  (author & can view) | admin                      Can only delete your own messages
collaborator.list         read   as session.read                                  Access denied to chat session
collaborator.add/remove   write  owner | admin                                    Only the owner can manage collaborators
audit.read                admin  admin                                            (route level)
user.list                 write  always (the directory of users, to pick            (route level)
                                 collaborators from)
ws.connect                read   as session.read                                  Access denied
ws.revoked                read   as session.read (re-checked on a live socket)    Access revoked
========================  =====  ===============================================  ==========================================

A read-level collaborator gains nothing: read users do not take part in collaboration.

Shadow mode: a principal may carry ``enforced``, the same caller at the level
enforcement would give (:meth:`chatsvc.auth.groups.GroupMapping.acting`). Every
check decides with the caller's own level, as always, and also with that one;
where only enforcement refuses, the request goes on and the refusal is noted in
the transport's :func:`shadow_scope`, which audits it as ``would_deny``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from enum import StrEnum

from chatsvc.auth.principal import Level, Principal
from chatsvc.errors import AccessDenied
from chatsvc.store.access import ListScope, SessionFacts

__all__ = ["RULES", "Action", "ListScope", "Rule", "SessionFacts", "ShadowNotes", "WouldDeny"]

log = logging.getLogger("chatsvc.policy")


class Action(StrEnum):
    SESSION_LIST = "session.list"
    SESSION_READ = "session.read"
    SESSION_CREATE = "session.create"
    SESSION_UPDATE = "session.update"
    SESSION_SHARE = "session.share"
    SESSION_DELETE = "session.delete"
    MESSAGE_LIST = "message.list"
    MESSAGE_SEND = "message.send"
    MESSAGE_UPDATE = "message.update"
    MESSAGE_DELETE = "message.delete"
    COLLABORATOR_LIST = "collaborator.list"
    COLLABORATOR_ADD = "collaborator.add"
    COLLABORATOR_REMOVE = "collaborator.remove"
    AUDIT_READ = "audit.read"
    USER_LIST = "user.list"
    WS_CONNECT = "ws.connect"
    WS_SEND = "ws.send"
    WS_TYPING = "ws.typing"
    WS_REVOKED = "ws.revoked"


# --- the rules --------------------------------------------------------------


def _admin(p: Principal) -> bool:
    return p.level is Level.ADMIN


def _owner(p: Principal, s: SessionFacts) -> bool:
    return s.owner_id == p.user_id


def _collab(p: Principal, s: SessionFacts) -> bool:
    return s.is_collaborator and p.at_least(Level.WRITE)


def can_view(p: Principal, s: SessionFacts) -> bool:
    return _admin(p) or _owner(p, s) or s.is_shared or _collab(p, s)


def can_update(p: Principal, s: SessionFacts) -> bool:
    return _admin(p) or _owner(p, s) or _collab(p, s)


def can_own(p: Principal, s: SessionFacts) -> bool:
    return _admin(p) or _owner(p, s)


def can_send(p: Principal, s: SessionFacts) -> bool:
    if _admin(p) or _owner(p, s):
        return True
    return p.at_least(Level.WRITE) and (s.is_shared or s.is_collaborator)


def can_change_message(p: Principal, s: SessionFacts) -> bool:
    return _admin(p) or (s.author_id == p.user_id and can_view(p, s))


def list_scope(p: Principal) -> ListScope:
    if _admin(p):
        return ListScope.ALL
    if p.at_least(Level.WRITE):
        return ListScope.OWN_SHARED_OR_COLLAB
    return ListScope.OWN_OR_SHARED


@dataclass(frozen=True, slots=True)
class Rule:
    level: Level
    allowed: Callable[[Principal, SessionFacts], bool] | None
    detail: str
    resource_type: str = "chat_session"


DENIED_VIEW = "Access denied to chat session"
DENIED_SEND = "Cannot send messages to this chat session"
DENIED_COLLABORATORS = "Only the owner can manage collaborators"

RULES: dict[Action, Rule] = {
    Action.SESSION_LIST: Rule(Level.READ, None, ""),
    Action.SESSION_READ: Rule(Level.READ, can_view, DENIED_VIEW),
    Action.MESSAGE_LIST: Rule(Level.READ, can_view, "Access denied to chat session messages"),
    Action.SESSION_CREATE: Rule(Level.WRITE, None, ""),
    Action.SESSION_UPDATE: Rule(
        Level.WRITE,
        can_update,
        "Can only update your own chat sessions or sessions you collaborate on",
    ),
    Action.SESSION_SHARE: Rule(Level.WRITE, can_own, "Only the owner can change sharing"),
    Action.SESSION_DELETE: Rule(Level.WRITE, can_own, "Can only delete your own chat sessions"),
    Action.MESSAGE_SEND: Rule(Level.WRITE, can_send, DENIED_SEND),
    Action.MESSAGE_UPDATE: Rule(
        Level.WRITE, can_change_message, "Can only update your own messages", "chat_message"
    ),
    Action.MESSAGE_DELETE: Rule(
        Level.WRITE, can_change_message, "Can only delete your own messages", "chat_message"
    ),
    Action.COLLABORATOR_LIST: Rule(Level.READ, can_view, DENIED_VIEW),
    Action.COLLABORATOR_ADD: Rule(Level.WRITE, can_own, DENIED_COLLABORATORS),
    Action.COLLABORATOR_REMOVE: Rule(Level.WRITE, can_own, DENIED_COLLABORATORS),
    Action.AUDIT_READ: Rule(Level.ADMIN, None, "", "audit"),
    # Those who may own sessions (and so manage collaborators) may look users up.
    Action.USER_LIST: Rule(Level.WRITE, None, "", "user"),
    Action.WS_CONNECT: Rule(Level.READ, can_view, "Access denied"),
    Action.WS_SEND: Rule(Level.WRITE, can_send, DENIED_SEND),
    Action.WS_TYPING: Rule(Level.WRITE, can_send, DENIED_SEND),
    Action.WS_REVOKED: Rule(Level.READ, can_view, "Access revoked"),
}

# Posting a ``system`` message is one more condition on a send (REST or
# WebSocket), not an action of its own: its denial is audited as that send.
SYSTEM_MESSAGE = Rule(Level.WRITE, lambda p, _s: _admin(p), "Only admins can post system messages")


def level_detail(level: Level) -> str:
    return f"Requires {level.label} permission"


# --- shadow mode: what enforcement would have refused ---------------------------------


@dataclass(frozen=True, slots=True)
class WouldDeny:
    """A refusal enforcement would have given, which shadow mode let through."""

    principal: Principal  # the caller as enforcement sees them
    action: Action
    reason: str  # the wording enforcement would have answered with


class ShadowNotes:
    """The would-deny of one request (or WebSocket frame): only the first is kept,
    since enforcement answers with the first check that fails and runs no other."""

    __slots__ = ("first", "open")

    def __init__(self) -> None:
        self.first: WouldDeny | None = None
        self.open = True  # False once its transport has read it


# The checks run deep inside the use cases, and a would-deny must not fail the
# request; so, where a denial travels up as AccessDenied, a would-deny is noted
# here, in the scope its transport opened (a context variable: one per task, so
# concurrent requests never mix), and the transport audits it once it is done.
_notes: ContextVar[ShadowNotes | None] = ContextVar("chatsvc_shadow_notes", default=None)


@contextmanager
def shadow_scope() -> Iterator[ShadowNotes]:
    """Collect the would-deny of the checks made within (one request or frame)."""
    notes = ShadowNotes()
    token = _notes.set(notes)
    try:
        yield notes
    finally:
        notes.open = False
        _notes.reset(token)


def _note(would: WouldDeny) -> None:
    notes = _notes.get()
    # No scope, or a closed one (a timer or task started inside a request inherits
    # its context): a check no transport will audit. A bug, and never silent.
    if notes is None or not notes.open:
        log.error("event=would_deny_unscoped action=%s reason=%r", would.action, would.reason)
    elif notes.first is None:
        notes.first = would


def _decide(
    principal: Principal, action: Action, refusal: Callable[[Principal], str | None]
) -> None:
    """Raise :class:`AccessDenied` where ``refusal`` refuses the caller; where it
    refuses only the caller as enforcement sees them, note a would-deny."""
    detail = refusal(principal)
    if detail is not None:
        raise AccessDenied(detail, action)
    enforced = principal.enforced
    if enforced is not None and (would := refusal(enforced)) is not None:
        _note(WouldDeny(enforced, action, would))


def _refusal(principal: Principal, rule: Rule, facts: SessionFacts | None) -> str | None:
    """The wording that refuses ``principal`` (the level first, then the rule), or None.
    Without facts only the level is checked."""
    if not principal.at_least(rule.level):
        return level_detail(rule.level)
    if facts is not None and rule.allowed is not None and not rule.allowed(principal, facts):
        return rule.detail
    return None


# --- the checks ----------------------------------------------------------------------


def require_level(principal: Principal, action: Action) -> None:
    """The route-level check; raises :class:`AccessDenied` with ``Requires <level> permission``."""
    rule = RULES[action]
    _decide(principal, action, lambda p: _refusal(p, rule, None))


def check(principal: Principal, action: Action, facts: SessionFacts) -> None:
    """The action's level and rule; raise :class:`AccessDenied` with its wording."""
    rule = RULES[action]
    _decide(principal, action, lambda p: _refusal(p, rule, facts))


def check_message_type(principal: Principal, action: Action, message_type: str) -> None:
    """A ``system`` message needs an admin; its denial is audited as ``action`` (the send)."""
    if message_type == "system":
        _decide(principal, action, lambda p: None if _admin(p) else SYSTEM_MESSAGE.detail)


def allows(principal: Principal, action: Action, facts: SessionFacts) -> bool:
    """Whether :func:`check` would pass: the level and the rule (at the caller's own
    level: in shadow mode, what they can actually do). Notes nothing."""
    return _refusal(principal, RULES[action], facts) is None


def shadow_refusal(principal: Principal, action: Action, facts: SessionFacts) -> str | None:
    """Shadow mode: the wording enforcement would refuse with where :func:`allows`
    lets the caller through (for the checks that are not requests, such as the
    re-check of a live socket); None otherwise. Notes nothing."""
    enforced = principal.enforced
    if enforced is None or not allows(principal, action, facts):
        return None
    return _refusal(enforced, RULES[action], facts)


# What a client may do with a session, by the name it is shown under: each is
# exactly the check the corresponding request makes, so the two cannot disagree.
PERMISSIONS: dict[str, Action] = {
    "view": Action.SESSION_READ,
    "send": Action.MESSAGE_SEND,
    "update": Action.SESSION_UPDATE,
    "share": Action.SESSION_SHARE,
    "delete": Action.SESSION_DELETE,
    "manage_collaborators": Action.COLLABORATOR_ADD,
}


def permissions(principal: Principal, facts: SessionFacts) -> dict[str, bool]:
    """``{"view", "send", "update", "share", "delete", "manage_collaborators",
    "post_system"}``: True exactly where the request would pass the checks."""
    granted = {name: allows(principal, action, facts) for name, action in PERMISSIONS.items()}
    granted["post_system"] = granted["send"] and _admin(principal)
    return granted


def session_update_actions(*, content: bool, sharing: bool) -> tuple[Action, ...]:
    """What a ``PUT`` on a session needs: changing sharing is ``session.share``;
    anything else (or a request that changes nothing) is ``session.update``."""
    if not sharing:
        return (Action.SESSION_UPDATE,)
    return (Action.SESSION_UPDATE, Action.SESSION_SHARE) if content else (Action.SESSION_SHARE,)


def resource_type(action: Action) -> str:
    return RULES[action].resource_type
