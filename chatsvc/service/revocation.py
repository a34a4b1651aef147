"""Continuous access: the identity provider ends or changes a user's access, and
every process acts on it within a second.

One revocation record per user and cut-off time is stored (``revocations``),
published through the broker as :class:`~chatsvc.events.UserRevoked` and applied
by every process's hub, which hands it to the token checks
(:class:`~chatsvc.auth.revocations.RevocationList`) and the principal cache and
closes or re-checks the user's sockets. A process that starts later, or missed an
event while the broker was down, loads the records in force from the database at
start and every ``revocation_reload_interval``; expired records are purged then.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from aiohttp import web
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from chatsvc.audit import AuditWriter
from chatsvc.auth.revocations import RevocationList
from chatsvc.errors import ChatError
from chatsvc.events import BrowserSessionsEnded, Event, UserRevoked
from chatsvc.events.broker import Broker
from chatsvc.keys import (
    AUDIT,
    AUTHENTICATOR,
    BROKER,
    CLOCK,
    DB_SESSIONS,
    METRICS,
    REVOKER,
    SETTINGS,
)
from chatsvc.metrics import Metrics
from chatsvc.settings import Settings
from chatsvc.store import revocations as store
from chatsvc.store.revocations import EndedSession, NamedUser

log = logging.getLogger("chatsvc.revocation")


class NotCarriedOut(ChatError):
    """The request was valid but the revocation could not be stored or applied."""

    status, code, title = 422, "REVOCATION_FAILED", "Unprocessable Content"


@dataclass(frozen=True, slots=True)
class Origin:
    """Who asked, for the audit trail."""

    source: str  # universal_logout, backchannel_logout, event_hook
    request_id: str | None
    client_ip: str | None


def _at(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def token_id(issuer: str, jti: str) -> str:
    return hashlib.sha256(f"{issuer}\n{jti}".encode()).hexdigest()


class Revoker:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        broker: Broker,
        audit: AuditWriter,
        revocations: RevocationList,
        metrics: Metrics,
        settings: Settings,
        clock: Callable[[], float],
    ) -> None:
        self._sessions = sessions
        self._broker = broker
        self._audit = audit
        self._revocations = revocations
        self._metrics = metrics
        self._settings = settings
        self._clock = clock
        # Set by the realtime hub: how an event reaches this process's sockets only.
        self.deliver_locally: Callable[[Event], None] | None = None

    # --- who -------------------------------------------------------------------
    async def users_by_email(self, email: str) -> list[NamedUser]:
        async with self._sessions() as db:
            return await store.users_by_email(db, email)

    async def users_by_subject(self, sub: str) -> list[NamedUser]:
        """Users named by the Okta issuer's ``sub`` or by the IdP's user id."""
        async with self._sessions() as db:
            return await store.users_by_subject(db, (self._settings.issuer,), sub)

    async def first_use(self, issuer: str, jti: str, expires_at: float) -> bool:
        """Record a logout token's ``jti``; False for a replay (in any process). Kept
        while the token is acceptable: its ``exp`` plus the validator's leeway."""
        kept_until = expires_at + self._settings.jwt_leeway
        async with self._sessions() as db:
            return await store.first_use(db, token_id(issuer, jti), _at(kept_until))

    async def forget_use(self, issuer: str, jti: str) -> None:
        """What the token asked for could not be done: the IdP's retry with it is no
        replay. Best effort (the database may be what failed)."""
        try:
            async with self._sessions() as db:
                await store.forget_use(db, token_id(issuer, jti))
        except (SQLAlchemyError, OSError) as exc:
            log.warning("event=token_id_not_released error=%s", type(exc).__name__)

    # --- what ------------------------------------------------------------------
    async def revoke(
        self,
        users: list[NamedUser],
        origin: Origin,
        reason: str,
        *,
        cutoff: float | None = None,
        group: str | None = None,
        added: bool = False,
    ) -> list[EndedSession]:
        """Refuse the users' tokens issued up to ``cutoff`` (default now) everywhere.

        Without ``group`` their access ends: browser sessions too (returned, for
        the caller to revoke their refresh tokens at the IdP). With ``group`` their
        membership changed: sessions stay and renew into tokens with the new groups."""
        now = self._clock()
        cutoff = now if cutoff is None else min(cutoff, now)
        until = cutoff + self._settings.revocation_ttl
        ids = [user.id for user in users]
        try:
            async with self._sessions() as db:
                fresh = set(
                    await store.add(db, ids, _at(cutoff), _at(until), reason[:64], _at(now))
                )
                ended = (
                    []
                    if group is not None
                    else await store.end_browser_sessions(db, user_ids=ids, commit=False)
                )
                await db.commit()  # the records and the ended sessions, or neither
        except (SQLAlchemyError, OSError) as exc:
            log.warning(
                "event=revocation_failed source=%s error=%s", origin.source, type(exc).__name__
            )
            raise NotCarriedOut("The revocation could not be stored; try again") from None
        # Published to every process even when already recorded (a retried notice
        # may follow a lost event), audited once per user and cut-off.
        for user in users:
            self._broker.publish(UserRevoked(user.id, cutoff, until, group, added))
            if user.id in fresh:
                self._audit.revoked(
                    user.id,
                    user.email,
                    reason,
                    request_id=origin.request_id,
                    client_ip=origin.client_ip,
                )
        if ended:
            self._broker.publish(BrowserSessionsEnded(tuple(s.id for s in ended)))
        self._metrics.revocations.labels(origin.source).inc(len(users))
        log.info(
            "event=access_revoked source=%s users=%d browser_sessions=%d group=%s",
            origin.source,
            len(users),
            len(ended),
            group or "-",
        )
        return ended

    async def end_browser_sessions(
        self, *, sid: str | None, users: list[NamedUser] | None
    ) -> list[EndedSession]:
        """Back-channel logout: end the sessions with this IdP ``sid`` (of these users,
        when given) or all of the users' sessions; their sockets close."""
        user_ids = None if users is None else [user.id for user in users]
        try:
            async with self._sessions() as db:
                ended = await store.end_browser_sessions(db, user_ids=user_ids, sid=sid)
        except (SQLAlchemyError, OSError) as exc:
            log.warning("event=backchannel_logout_failed error=%s", type(exc).__name__)
            raise
        if ended:
            self._broker.publish(BrowserSessionsEnded(tuple(s.id for s in ended)))
        self._metrics.revocations.labels("backchannel_logout").inc(len(ended))
        log.info("event=browser_sessions_ended source=backchannel_logout count=%d", len(ended))
        return ended

    # --- every process ---------------------------------------------------------
    async def reload(self) -> bool:
        """Load the revocations in force (and purge expired ones); False when the
        database did not answer (the next interval tries again)."""
        now = self._clock()
        try:
            async with self._sessions() as db:
                await store.purge(db, _at(now))
                rows = await store.in_force(db, _at(now))
        except (SQLAlchemyError, OSError) as exc:
            log.warning("event=revocations_reload_failed error=%s", type(exc).__name__)
            return False
        for row in rows:
            cutoff, until = row.cutoff.timestamp(), row.expires_at.timestamp()
            known = self._revocations.cutoff(row.user_id)
            self._revocations.apply(row.user_id, cutoff, until)
            if (known is not None and known >= cutoff) or self.deliver_locally is None:
                continue
            # This process missed the event (the broker was down, or it dropped it):
            # act on it now, as an end of access (a missed group change too: its
            # sockets close rather than keep the old level; the page signs in again).
            log.info("event=revocation_caught_up user_id=%s", row.user_id)
            self.deliver_locally(UserRevoked(row.user_id, cutoff, until))
        self._revocations.purge()
        return True

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self._settings.revocation_reload_interval)
            try:
                await self.reload()
            except Exception:  # the next interval tries again; never stop reloading
                log.exception("event=revocations_reload_error")


def revoked_user(app: web.Application, event: UserRevoked) -> None:
    """Apply a revocation to this process's token checks. Cached principals stay in
    the cache until their TTL, but every use of one is checked against the
    revocations first (:meth:`Authenticator.authenticate`), so none is accepted; a
    walk of the cache per revoked user would block the loop for nothing."""
    app[AUTHENTICATOR].revocations.apply(event.user_id, event.cutoff, event.until)


async def revocation_ctx(app: web.Application) -> AsyncIterator[None]:
    revoker = app[REVOKER] = Revoker(
        app[DB_SESSIONS],
        app[BROKER],
        app[AUDIT],
        app[AUTHENTICATOR].revocations,
        app[METRICS],
        app[SETTINGS],
        app[CLOCK],
    )
    if await revoker.reload():
        log.info("event=revocations_loaded count=%d", len(app[AUTHENTICATOR].revocations))
    task = asyncio.create_task(revoker.run(), name="revocations-reload")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def setup_revocations(app: web.Application) -> None:
    app.cleanup_ctx.append(revocation_ctx)


__all__ = ["NotCarriedOut", "Origin", "Revoker", "revoked_user", "setup_revocations"]
