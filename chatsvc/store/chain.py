"""The audit trail's hash chain: what an event's ``hash`` is computed over.

``hash = SHA-256(previous event's hash + canonical JSON of this event)``, hex,
in ``occurred_at, id`` order. The canonical JSON (RFC 8785, by the ``rfc8785``
package: key order, number and string forms are the RFC's, not ours to get
wrong) holds every field of the event except ``hash`` itself, written as the
API writes them except ``occurred_at``, which always has its microseconds (so
the form does not depend on a serialiser's taste). The first event chains from
:data:`GENESIS`. Pure functions: the writer, the check and the migration that
hashes older rows all use these.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime
from typing import Any, Protocol

import rfc8785

# The "previous hash" of the first event.
GENESIS = "0" * 64

# Every stored field but ``hash``. A new column is not covered until it is added
# here (a test compares this with the table), which changes every hash after it.
CHAINED_FIELDS = (
    "id",
    "occurred_at",
    "user_id",
    "user_email",
    "permission",
    "action",
    "resource_type",
    "resource_id",
    "reason",
    "request_id",
    "client_ip",
    "outcome",
)


class Fields(Protocol):
    """A new event's dict or a stored row's mapping."""

    def __getitem__(self, name: str, /) -> Any: ...


def _timestamp(value: datetime) -> str:
    # SQLite keeps no zone: a naive value read from it is UTC.
    aware = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return aware.isoformat(timespec="microseconds")


def _id(value: Any) -> str | None:
    # asyncpg's UUID subclass and uuid.UUID print the same; str() normalises a string id.
    return None if value is None else str(uuid.UUID(str(value)))


def canonical(event: Fields) -> bytes:
    """The event's canonical JSON (RFC 8785), from a stored row or a new event."""
    document = {name: event[name] for name in CHAINED_FIELDS}
    document["id"] = _id(event["id"])
    document["user_id"] = _id(event["user_id"])
    document["occurred_at"] = _timestamp(event["occurred_at"])
    return rfc8785.dumps(document)


def link(previous: str | None, event: Fields) -> str:
    """The event's hash after ``previous`` (None: the first event, or an unhashed row)."""
    digest = hashlib.sha256((previous or GENESIS).encode())
    digest.update(canonical(event))
    return digest.hexdigest()
