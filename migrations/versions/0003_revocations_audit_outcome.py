"""access revocations from the IdP and the logout tokens seen; the audit trail's outcome and hash chain

Revision ID: 0003
Revises: 0002
"""

import hashlib
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import rfc8785
import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "revocations",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("cutoff", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reason", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_revocations_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_revocations")),
        sa.UniqueConstraint("user_id", "cutoff", name=op.f("uq_revocations_user_id_cutoff")),
    )
    with op.batch_alter_table("revocations", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_revocations_expires_at"), ["expires_at"], unique=False)

    op.create_table(
        "seen_token_ids",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_seen_token_ids")),
    )
    with op.batch_alter_table("seen_token_ids", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_seen_token_ids_expires_at"), ["expires_at"], unique=False
        )

    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("outcome", sa.String(length=16), nullable=False, server_default="denied")
        )
        batch_op.add_column(sa.Column("hash", sa.String(length=64), nullable=True))

    _chain_existing_events()


BACKFILL_BATCH = 1000

# The chain as this revision defines it, frozen here (a migration must not change
# when the code does): chatsvc.store.chain computes the same for these fields.
CHAIN_LOCK_KEY = int.from_bytes(b"audit-ch", "big") >> 1  # chatsvc.store.audit's
GENESIS = "0" * 64
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


def _id(value: Any) -> str | None:
    return None if value is None else str(uuid.UUID(str(value)))


def link(previous: str | None, row: Any) -> str:
    document = {name: row[name] for name in CHAINED_FIELDS}
    document["id"] = _id(row["id"])
    document["user_id"] = _id(row["user_id"])
    occurred: datetime = row["occurred_at"]
    aware = occurred.replace(tzinfo=UTC) if occurred.tzinfo is None else occurred.astimezone(UTC)
    document["occurred_at"] = aware.isoformat(timespec="microseconds")
    digest = hashlib.sha256((previous or GENESIS).encode())
    digest.update(rfc8785.dumps(document))
    return digest.hexdigest()


def _chain_existing_events() -> None:
    """Hash the events stored before the chain existed, in its order (``occurred_at,
    id``), so that an upgraded trail checks out: what this writes is what
    ``chatsvc.store.chain`` re-computes (a test upgrades old rows and verifies).

    Keyset pages keep memory bounded; the page boundary is compared as stored
    (untyped columns), so SQLite text timestamps in any form are neither skipped
    nor read twice."""
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":  # no chatsvc writer may chain meanwhile
        bind.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": CHAIN_LOCK_KEY})
    events = sa.table("audit_events", *(sa.column(name) for name in (*CHAINED_FIELDS, "hash")))
    fields = [events.c[name] for name in CHAINED_FIELDS if name != "occurred_at"]
    # Parsed for the hash (SQLite keeps text), and as stored for the page boundary.
    occurred_at = sa.type_coerce(events.c.occurred_at, sa.DateTime(timezone=True))
    query = sa.select(
        *fields, occurred_at.label("occurred_at"), events.c.occurred_at.label("stored_at")
    ).order_by(events.c.occurred_at, events.c.id)
    key = sa.tuple_(events.c.occurred_at, events.c.id)
    update = (
        events.update()
        .where(events.c.id == sa.bindparam("row_id"))
        .values(hash=sa.bindparam("row_hash"))
    )
    previous: str | None = None
    after: tuple[object, object] | None = None
    while True:
        page = query.limit(BACKFILL_BATCH)
        if after is not None:
            page = page.where(key > after)
        rows = bind.execute(page).mappings().all()
        if not rows:
            return
        hashes = []
        for row in rows:
            previous = link(previous, row)
            hashes.append({"row_id": row["id"], "row_hash": previous})
        bind.execute(update, hashes)
        after = (rows[-1]["stored_at"], rows[-1]["id"])


def downgrade() -> None:
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.drop_column("hash")
        batch_op.drop_column("outcome")

    with op.batch_alter_table("seen_token_ids", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_seen_token_ids_expires_at"))
    op.drop_table("seen_token_ids")

    with op.batch_alter_table("revocations", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_revocations_expires_at"))
    op.drop_table("revocations")
