"""The access policy: every chat access decision, for REST and WebSocket alike.

Pure functions over the caller (:class:`Principal`) and the facts about the
resource (:class:`SessionFacts`). Nothing here does I/O.

Checks run in this order; the first that fails answers:
authentication (401) -> the route's level (403 ``Requires <level> permission``)
-> request validation (400) -> existence (404) -> the action's rule (403).

========================  =====  ===============================================  ==========================================
action                    level  allowed when                                     403 detail
========================  =====  ===============================================  ==========================================
session.list              read   read: own|shared; write: own|shared|collab;      --
                                 admin: all
session.read (and ws)     read   owner | shared | (collab & write+) | admin       Access denied to chat session
message.list              read   as session.read                                  Access denied to chat session messages
session.create            write  always                                           --
session.update            write  owner | (collab & write+) | admin                Can only update your own chat sessions
                                                                                  or sessions you collaborate on
session.share             write  owner | admin                                    Only the owner can change sharing
session.delete            write  owner | admin                                    Can only delete your own chat sessions
message.send (and ws)     write  owner | (shared & write+) | (collab & write+)    Cannot send messages to this chat session
                                 | admin
message.send (system)     write  admin                                            Only admins can post system messages
message.update            write  (author & can view) | admin                      Can only update your own messages
message.delete            write  (author & can view) | admin                      Can only delete your own messages
collaborator.list         read   as session.read                                  Access denied to chat session
collaborator.add/remove   write  owner | admin                                    Only the owner can manage collaborators
audit.read                admin  admin                                            (route level)
========================  =====  ===============================================  ==========================================

A read-level collaborator gains nothing: read users do not take part in collaboration.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum, StrEnum

from chatsvc.auth.principal import Level, Principal
from chatsvc.errors import AccessDenied


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
    WS_CONNECT = "ws.connect"
    WS_SEND = "ws.send"
    WS_TYPING = "ws.typing"
    WS_REVOKED = "ws.revoked"


@dataclass(frozen=True, slots=True)
class SessionFacts:
    """What the rules need to know about one chat session (and one message)."""

    owner_id: uuid.UUID
    is_shared: bool
    is_collaborator: bool
    author_id: uuid.UUID | None = None  # for message rules


class ListScope(Enum):
    """Which sessions a listing may return."""

    OWN_OR_SHARED = "own_or_shared"
    OWN_SHARED_OR_COLLAB = "own_shared_or_collab"
    ALL = "all"


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


def can_post_system(p: Principal, _s: SessionFacts) -> bool:
    return _admin(p)


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


DENIED_VIEW = "Access denied to chat session"

RULES: dict[str, Rule] = {
    "session.list": Rule(Level.READ, None, ""),
    "session.read": Rule(Level.READ, can_view, DENIED_VIEW),
    "message.list": Rule(Level.READ, can_view, "Access denied to chat session messages"),
    "session.create": Rule(Level.WRITE, None, ""),
    "session.update": Rule(
        Level.WRITE,
        can_update,
        "Can only update your own chat sessions or sessions you collaborate on",
    ),
    "session.share": Rule(Level.WRITE, can_own, "Only the owner can change sharing"),
    "session.delete": Rule(Level.WRITE, can_own, "Can only delete your own chat sessions"),
    "message.send": Rule(Level.WRITE, can_send, "Cannot send messages to this chat session"),
    "message.send_system": Rule(
        Level.WRITE, can_post_system, "Only admins can post system messages"
    ),
    "message.update": Rule(Level.WRITE, can_change_message, "Can only update your own messages"),
    "message.delete": Rule(Level.WRITE, can_change_message, "Can only delete your own messages"),
    "collaborator.list": Rule(Level.READ, can_view, DENIED_VIEW),
    "collaborator.add": Rule(Level.WRITE, can_own, "Only the owner can manage collaborators"),
    "collaborator.remove": Rule(Level.WRITE, can_own, "Only the owner can manage collaborators"),
    "audit.read": Rule(Level.ADMIN, None, ""),
    "ws.connect": Rule(Level.READ, can_view, "Access denied"),
}


def level_detail(level: Level) -> str:
    return f"Requires {level.label} permission"


def require_level(principal: Principal, action: Action, level: Level | None = None) -> None:
    """The route-level check; raises :class:`AccessDenied` with ``Requires <level> permission``."""
    needed = level if level is not None else RULES[action].level
    if not principal.at_least(needed):
        raise AccessDenied(level_detail(needed), action)


def authorize(
    principal: Principal, rule: str, facts: SessionFacts, action: Action | None = None
) -> None:
    """Apply the rule named ``rule`` to a resource; raise :class:`AccessDenied` with its wording."""
    entry = RULES[rule]
    if entry.allowed is not None and not entry.allowed(principal, facts):
        raise AccessDenied(entry.detail, action or Action(rule))
