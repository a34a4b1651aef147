"""Database tables. Typed ``Mapped[...]`` models; relationships are not used
(every query says what it loads)."""

from __future__ import annotations

import os
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    Uuid,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id() -> uuid.UUID:
    """A time-ordered UUID (version 7 layout): newer rows sort later by id,
    which gives listings a stable "newest id first" tie-break and keeps
    index inserts local. Python 3.11 has no ``uuid.uuid7``."""
    millis = time.time_ns() // 1_000_000
    value = (millis & ((1 << 48) - 1)) << 80 | int.from_bytes(os.urandom(10)) & ((1 << 80) - 1)
    value = value & ~(0xF << 76) | (0x7 << 76)  # version 7
    value = value & ~(0x3 << 62) | (0x2 << 62)  # RFC 4122 variant
    return uuid.UUID(int=value)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC timestamps on both databases.

    SQLite keeps no zone; without this, values read back would be naive."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class UUID(TypeDecorator[uuid.UUID]):
    """Plain :class:`uuid.UUID` values on both databases.

    asyncpg returns its own UUID subclass, which hashes and serialises
    differently (orjson refuses it)."""

    impl = Uuid
    cache_ok = True

    def process_result_value(self, value: Any, dialect: Any) -> uuid.UUID | None:
        if value is None or type(value) is uuid.UUID:
            return value
        return uuid.UUID(int=value.int) if hasattr(value, "int") else uuid.UUID(str(value))


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class User(Base):
    __tablename__ = "users"
    __table_args__ = (UniqueConstraint("issuer", "subject"),)

    id: Mapped[uuid.UUID] = mapped_column(UUID, primary_key=True, default=new_id)
    issuer: Mapped[str] = mapped_column(String(512))
    subject: Mapped[str] = mapped_column(String(255))
    email: Mapped[str] = mapped_column(String(320), index=True)
    # The IdP's immutable user id (Okta's ``uid`` claim, else ``sub``): what the
    # IdP names the user by when it ends their access (continuous access).
    idp_user_id: Mapped[str | None] = mapped_column(String(255), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class BrowserSession(Base):
    """A signed-in (or signing-in) browser: the cookie carries only an opaque
    value whose SHA-256 is ``id``. ``state`` (CSRF token, sign-in in progress)
    and ``tokens`` (access, refresh and ID token) are Fernet-encrypted with the
    cookie key. ``version`` is the compare-and-swap counter of token refreshes;
    ``refresh_until`` is the lease of the process refreshing right now."""

    __tablename__ = "browser_sessions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[uuid.UUID | None] = mapped_column(
        UUID, ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    state: Mapped[str] = mapped_column(Text)
    tokens: Mapped[str | None] = mapped_column(Text)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    sid: Mapped[str | None] = mapped_column(String(255), index=True)
    version: Mapped[int] = mapped_column(Integer, default=0)
    refresh_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class OAuthPermission(Base):
    __tablename__ = "oauth_permissions"

    user_id: Mapped[uuid.UUID] = mapped_column(
        UUID, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    level: Mapped[str | None] = mapped_column(String(16))
    groups: Mapped[list[str]] = mapped_column(JSON)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ChatSession(Base):
    __tablename__ = "chat_sessions"
    __table_args__ = (
        Index("ix_chat_sessions_recent", "updated_at", "id"),
        Index("ix_chat_sessions_owner_recent", "user_id", "updated_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID, primary_key=True, default=new_id)
    user_id: Mapped[uuid.UUID] = mapped_column(UUID, ForeignKey("users.id", ondelete="CASCADE"))
    title: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    is_shared: Mapped[bool] = mapped_column(Boolean, default=False)
    chat_settings: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_seq: Mapped[int] = mapped_column(Integer, default=0)


class SessionCollaborator(Base):
    __tablename__ = "session_collaborators"

    session_id: Mapped[uuid.UUID] = mapped_column(
        UUID, ForeignKey("chat_sessions.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[uuid.UUID] = mapped_column(
        UUID, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    added_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ChatMessage(Base):
    __tablename__ = "chat_messages"
    __table_args__ = (
        UniqueConstraint("chat_session_id", "seq"),
        UniqueConstraint("chat_session_id", "user_id", "client_msg_id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID, primary_key=True, default=new_id)
    chat_session_id: Mapped[uuid.UUID] = mapped_column(
        UUID, ForeignKey("chat_sessions.id", ondelete="CASCADE")
    )
    seq: Mapped[int] = mapped_column(Integer)
    user_id: Mapped[uuid.UUID] = mapped_column(UUID, ForeignKey("users.id", ondelete="CASCADE"))
    content: Mapped[str] = mapped_column(Text)
    message_type: Mapped[str] = mapped_column(String(16), default="user")
    # "metadata" is reserved on declarative classes; the column keeps the contract's name.
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", JSON, default=dict)
    client_msg_id: Mapped[str | None] = mapped_column(String(64))
    is_edited: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class AuditEvent(Base):
    __tablename__ = "audit_events"
    __table_args__ = (
        Index("ix_audit_events_recent", "occurred_at", "id"),
        Index("ix_audit_events_user", "user_id", "occurred_at"),
        Index("ix_audit_events_action", "action", "occurred_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID, primary_key=True, default=new_id)
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    user_id: Mapped[uuid.UUID | None] = mapped_column(UUID)
    user_email: Mapped[str | None] = mapped_column(String(320))
    permission: Mapped[str | None] = mapped_column(String(16))
    action: Mapped[str] = mapped_column(String(64))
    resource_type: Mapped[str] = mapped_column(String(32))
    resource_id: Mapped[str | None] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(Text)
    request_id: Mapped[str | None] = mapped_column(String(64))
    client_ip: Mapped[str | None] = mapped_column(String(64))
    # ``denied``, ``would_deny`` (shadow mode) or ``revoked`` (the IdP ended access).
    outcome: Mapped[str] = mapped_column(String(16), default="denied", server_default="denied")
    # SHA-256 (hex) over the previous event's hash and this event's canonical JSON.
    hash: Mapped[str | None] = mapped_column(String(64))


class Revocation(Base):
    """The IdP ended (or changed) a user's access at ``cutoff``: tokens issued at or
    before it are refused. Kept until every such token has expired (``expires_at``)."""

    __tablename__ = "revocations"
    __table_args__ = (UniqueConstraint("user_id", "cutoff"),)

    id: Mapped[uuid.UUID] = mapped_column(UUID, primary_key=True, default=new_id)
    user_id: Mapped[uuid.UUID] = mapped_column(UUID, ForeignKey("users.id", ondelete="CASCADE"))
    cutoff: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    reason: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class SeenTokenId(Base):
    """The ``jti`` of every logout JWT and logout token accepted, so that none is
    accepted twice, by any process; kept until the token would have expired."""

    __tablename__ = "seen_token_ids"

    # SHA-256 (hex) of issuer and jti: bounded length whatever the IdP sends.
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
