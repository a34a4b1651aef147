"""The REST answers' shapes, in one place: a route's response model describes
the JSON that its use case's result (plain dicts from the store) becomes.

They are ``TypedDict`` s, so that the dicts are described (and serialised, by
``TypeAdapter.dump_json``) as they are, without a model built per row: a key
the model does not declare is left out, a ``NotRequired`` key is written only
when the result has it. Timestamps are written as :meth:`datetime.isoformat`
does (``+00:00``), UUIDs as strings. orjson writes the same bytes faster and
writes the answers; see :data:`chatsvc.api.routing.VERIFY_ANSWERS`.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal, NotRequired

from pydantic import Field, PlainSerializer
from typing_extensions import TypedDict  # pydantic needs it before Python 3.12

# pydantic writes UTC as ``Z``; the API has always written ``+00:00``.
Timestamp = Annotated[datetime, PlainSerializer(datetime.isoformat, when_used="json")]
MessageType = Literal["user", "assistant", "system"]


class Permissions(TypedDict):
    """What the caller may do with the session: true exactly where the request passes."""

    view: bool
    send: bool
    update: bool
    share: bool
    delete: bool
    manage_collaborators: bool
    post_system: bool


class SessionOut(TypedDict):
    id: uuid.UUID
    title: str
    description: str
    user_id: uuid.UUID
    is_shared: bool
    chat_settings: dict[str, Any]
    created_at: Timestamp
    updated_at: Timestamp
    last_seq: int
    permissions: Permissions


class MessageOut(TypedDict):
    id: uuid.UUID
    chat_session_id: uuid.UUID
    seq: int
    user_id: uuid.UUID
    user_email: str
    content: str
    message_type: MessageType
    metadata: dict[str, Any]
    client_msg_id: str | None
    is_edited: bool
    created_at: Timestamp
    updated_at: Timestamp


class SessionListItem(SessionOut):
    recent_messages: NotRequired[
        Annotated[
            list[MessageOut],
            Field(description="Only with include_messages=true: the 5 newest, newest first."),
        ]
    ]


class SessionDetail(SessionOut):
    messages: NotRequired[
        Annotated[
            list[MessageOut],
            Field(
                description=(
                    "Only with include_messages=true (the default): the newest 100 messages, "
                    "oldest first; older ones are paged with GET .../messages?before_seq="
                )
            ),
        ]
    ]
    has_more_messages: NotRequired[
        Annotated[
            bool,
            Field(description="With messages: whether older messages than these exist."),
        ]
    ]


class CollaboratorOut(TypedDict):
    user_id: uuid.UUID
    email: str
    added_at: Timestamp


class UserOut(TypedDict):
    """A user of the directory: what an owner needs to add them, and nothing else."""

    user_id: uuid.UUID
    email: str


class MeOut(TypedDict):
    id: uuid.UUID
    email: str
    # The level the caller acts at: in shadow mode (outside the canary groups) and
    # with permissions off, ``write``.
    permission: Literal["read", "write", "admin"] | None
    groups: list[str]
    permission_mode: Literal["enforce", "shadow", "off"]


class AuditEventOut(TypedDict):
    id: uuid.UUID
    occurred_at: Timestamp
    user_id: uuid.UUID | None
    user_email: str | None
    permission: str | None
    action: str
    resource_type: str
    resource_id: str | None
    reason: str
    request_id: str | None
    client_ip: str | None
    outcome: Literal["denied", "would_deny", "revoked"]
    hash: str | None


class AuditVerifyOut(TypedDict):
    ok: bool
    events: Annotated[int, Field(description="Every stored event, all re-computed")]
    first_bad_id: Annotated[
        uuid.UUID | None,
        Field(
            description=(
                "The first event whose hash does not match: an edited or inserted event, "
                "or the one after a deleted event; null when ok"
            )
        ),
    ]


class HealthOut(TypedDict):
    status: Literal["ok"]


class ReadinessOut(TypedDict):
    status: Literal["ok", "unavailable", "draining"]
    database: Literal["up", "down"]
    keys: Literal["loaded", "unavailable"]
    broker: str


class ProblemFieldError(TypedDict):
    field: str
    message: str


class Problem(TypedDict):
    """RFC 9457 problem details (written by :mod:`chatsvc.http.problems`, for every
    error of every route); ``errors`` only for validation failures."""

    type: str
    title: str
    status: int
    detail: str
    code: str
    request_id: str
    errors: NotRequired[list[ProblemFieldError]]
