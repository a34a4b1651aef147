"""The audit trail of denials: a buffered writer and the structured log line.

Recording never waits on the database: events go into a bounded queue that one
task flushes in batches (and at shutdown). A full queue still logs the event and
counts it in ``chatsvc_audit_overflow``; nothing is dropped silently. The flush
chains each batch by hash (:mod:`chatsvc.store.audit`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from typing import Any, Literal

from aiohttp import web
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from chatsvc.auth.principal import Principal
from chatsvc.keys import AUDIT, DB_SESSIONS, METRICS, SETTINGS
from chatsvc.metrics import Metrics
from chatsvc.policy import Action, resource_type
from chatsvc.store import audit as audit_store
from chatsvc.store.models import new_id, utcnow

log = logging.getLogger("chatsvc.audit")

# ``denied``: refused. ``would_deny``: allowed in shadow mode, refused once enforced.
# ``revoked``: the identity provider ended or changed a user's access.
Outcome = Literal["denied", "would_deny", "revoked"]
USER_REVOKED = "user.revoked"
_LOG_EVENT: dict[str, str] = {
    "denied": "access_denied",
    "would_deny": "would_deny",
    "revoked": "access_revoked",
}


@dataclass(frozen=True, slots=True)
class AuditRecord:
    user_id: uuid.UUID | None
    user_email: str | None
    permission: str | None
    action: str
    resource_type: str
    resource_id: str | None
    reason: str
    request_id: str | None
    client_ip: str | None
    outcome: Outcome = "denied"
    id: uuid.UUID = field(default_factory=new_id)
    occurred_at: datetime = field(default_factory=utcnow)


# The widths of the text columns of ``audit_events``.
_WIDTHS = {
    "user_email": 320,
    "permission": 16,
    "action": 64,
    "resource_type": 32,
    "resource_id": 64,
    "request_id": 64,
    "client_ip": 64,
}


def _fit(value: str | None, width: int | None) -> str | None:
    if value is None:
        return None
    # A path segment can hold anything: a lone surrogate would make the insert fail.
    text = value.encode("utf-8", "replace").decode("utf-8")
    return text[:width] if width is not None else text


def _storable(event: AuditRecord) -> AuditRecord:
    """The event as the table can hold it: a resource id from a hostile path (longer
    than its column, or not valid Unicode) must not make its whole batch fail to
    store, again and again, while the writer retries it."""
    changes: dict[str, Any] = {}
    for name in (*_WIDTHS, "reason"):
        value = getattr(event, name)
        fitted = _fit(value, _WIDTHS.get(name))
        if fitted != value:
            changes[name] = fitted
    return replace(event, **changes) if changes else event


class AuditWriter:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        metrics: Metrics,
        queue_size: int,
        batch_size: int,
        flush_interval: float,
        retry_max: float = 30.0,
    ) -> None:
        self._sessions = sessions
        self._metrics = metrics
        self._queue: asyncio.Queue[AuditRecord] = asyncio.Queue(maxsize=queue_size)
        self._batch_size = batch_size
        self._interval = flush_interval
        self._retry_max = retry_max
        self._task: asyncio.Task[None] | None = None
        self._inflight: asyncio.Future[bool] | None = None  # the writer task's current write

    def deny(
        self,
        principal: Principal | None,
        action: Action,
        reason: str,
        *,
        resource_id: str | None,
        request_id: str | None,
        client_ip: str | None,
        outcome: Outcome = "denied",
    ) -> None:
        """Record one denial (REST 403, WebSocket close or ``PERMISSION_DENIED`` frame),
        or with ``outcome="would_deny"`` one that shadow mode let through."""
        self.record(
            AuditRecord(
                user_id=principal.user_id if principal else None,
                user_email=principal.email if principal else None,
                permission=principal.permission if principal else None,
                action=str(action),
                resource_type=resource_type(action),
                resource_id=resource_id,
                reason=reason,
                request_id=request_id,
                client_ip=client_ip,
                outcome=outcome,
            )
        )

    def revoked(
        self,
        user_id: uuid.UUID,
        user_email: str | None,
        reason: str,
        *,
        request_id: str | None,
        client_ip: str | None,
    ) -> None:
        """Record that the identity provider ended or changed a user's access."""
        self.record(
            AuditRecord(
                user_id=user_id,
                user_email=user_email,
                permission=None,
                action=USER_REVOKED,
                resource_type="user",
                resource_id=str(user_id),
                reason=reason,
                request_id=request_id,
                client_ip=client_ip,
                outcome="revoked",
            )
        )

    def pending(self) -> int:
        """Events recorded and not yet stored."""
        return self._queue.qsize()

    def record(self, event: AuditRecord) -> None:
        event = _storable(event)
        log.warning(
            "event=%s action=%s user_id=%s permission=%s resource_type=%s "
            "resource_id=%s reason=%r request_id=%s client_ip=%s",
            _LOG_EVENT[event.outcome],
            event.action,
            event.user_id,
            event.permission,
            event.resource_type,
            event.resource_id,
            event.reason,
            event.request_id,
            event.client_ip,
        )
        if event.outcome == "would_deny":
            self._metrics.shadow_denials.labels(event.action).inc()
        elif event.outcome == "denied":
            self._metrics.denials.labels(event.action).inc()
        try:
            self._queue.put_nowait(event)
        except asyncio.QueueFull:
            self._metrics.audit_overflow.inc()
            log.error(
                "event=audit_buffer_full action=%s request_id=%s", event.action, event.request_id
            )

    async def _write(self, batch: list[AuditRecord]) -> bool:
        try:
            async with self._sessions() as session:
                # Hashed here, in the flush, under the chain's lock: never on the request path.
                head = await audit_store.insert_events(session, [asdict(e) for e in batch])
        except (SQLAlchemyError, OSError) as exc:
            log.warning(
                "event=audit_flush_failed error=%s pending=%d", type(exc).__name__, len(batch)
            )
            return False
        self._metrics.audit_written.inc(len(batch))
        # The head, outside the database: the chain alone cannot show that its newest
        # events were removed, or that every hash was re-computed after an edit.
        log.info("event=audit_chained count=%d head=%s", len(batch), head)
        return True

    def _take(self) -> list[AuditRecord]:
        batch: list[AuditRecord] = []
        while len(batch) < self._batch_size and not self._queue.empty():
            batch.append(self._queue.get_nowait())
        return batch

    async def flush(self) -> None:
        """Write everything recorded up to now (the admin route calls this to read its own
        writes), including the batch the writer task may be writing at this moment."""
        inflight = self._inflight
        if inflight is not None and not inflight.done():
            await asyncio.shield(inflight)
        while batch := self._take():
            if not await self._write(batch):
                self._requeue(batch)  # keep them for the next attempt
                return

    def _requeue(self, batch: list[AuditRecord]) -> None:
        for event in batch:
            with contextlib.suppress(asyncio.QueueFull):
                self._queue.put_nowait(event)

    async def _write_through(self, batch: list[AuditRecord]) -> bool:
        """Write a batch; a cancellation (shutdown) waits for the write to end.

        A database call cut half-way can leave SQLite locked for the final flush,
        or commit a batch that would then be handed back and written twice."""
        write = self._inflight = asyncio.ensure_future(self._write(batch))
        try:
            return await asyncio.shield(write)
        except asyncio.CancelledError:
            if not await write:
                self._requeue(batch)
            raise

    async def _run(self) -> None:
        backoff = self._interval
        while True:
            first = await self._queue.get()
            batch = [first, *self._take()]
            while not await self._write_through(batch):
                try:
                    await asyncio.sleep(backoff)
                except asyncio.CancelledError:
                    # Shutdown while waiting to retry: hand the batch back for the final flush.
                    self._requeue(batch)
                    raise
                backoff = min(backoff * 2, self._retry_max)
            backoff = self._interval
            if self._queue.qsize() < self._batch_size:
                await asyncio.sleep(self._interval)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="audit-writer")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.flush()
        if self._queue.qsize():
            log.error("event=audit_unflushed count=%d", self._queue.qsize())


async def audit_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    writer = AuditWriter(
        app[DB_SESSIONS],
        app[METRICS],
        settings.audit_queue_size,
        settings.audit_batch_size,
        settings.audit_flush_interval,
        settings.audit_retry_max,
    )
    app[AUDIT] = writer
    app[METRICS].audit_queue.set_function(writer.pending)
    writer.start()
    yield
    await writer.close()


def setup_audit(app: web.Application) -> None:
    app.cleanup_ctx.append(audit_ctx)
