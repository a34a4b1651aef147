"""Turns a bearer token into a :class:`Principal`: validate, resolve the level,
record the user, cache the result. REST and WebSocket both come through here."""

from __future__ import annotations

import asyncio
import itertools
import logging
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from chatsvc.auth.cache import PermissionCache, token_key
from chatsvc.auth.groups import GroupMapping
from chatsvc.auth.principal import Principal
from chatsvc.auth.revocations import RevocationList
from chatsvc.auth.tokens import InvalidToken, KeysUnavailable, TokenValidator
from chatsvc.errors import ServiceUnavailable, Unauthenticated
from chatsvc.metrics import Metrics
from chatsvc.store import users

log = logging.getLogger("chatsvc.auth")
PROFILES_MAX = 50_000


@dataclass(frozen=True, slots=True)
class Profile:
    """What browser sign-in learned beside the access token (the validated ID
    token, userinfo): used only where the access token itself says nothing."""

    email: str | None
    groups: tuple[str, ...] | None  # None: take the groups from the access token


def idp_user_id(claims: dict[str, Any]) -> str:
    """The IdP's immutable user id: Okta's ``uid`` claim, else ``sub``."""
    uid = claims.get("uid")
    return uid if isinstance(uid, str) and uid else str(claims["sub"])


class Sightings:
    """Records users as their tokens describe them, the first requests of many users
    at once in one transaction (group commit).

    Each cache miss must know its user's id before it answers; written one by one,
    1,000 users connecting at once queue 1,000 transactions on the database (on
    SQLite, on its one connection). Here a request joins the batch being collected
    while the previous one is written, so the number of transactions follows the
    database's pace, not the number of users. A database failure fails the requests
    of that batch only (each answers 503); the next batch starts afresh."""

    MAX_BATCH = 200

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions
        self._waiting: dict[tuple[str, str], tuple[users.Sighting, asyncio.Future[Any]]] = {}
        self._writer: asyncio.Task[None] | None = None

    async def record(self, sighting: users.Sighting) -> tuple[uuid.UUID, str]:
        key = (sighting.issuer, sighting.subject)
        waiting = self._waiting.get(key)
        if waiting is not None:
            future = waiting[1]  # the same user twice in one batch: one write, the last word
            self._waiting[key] = (sighting, future)
        else:
            future = asyncio.get_running_loop().create_future()
            # Retrieved even when every request waiting on it has gone away.
            future.add_done_callback(lambda done: done.cancelled() or done.exception())
            self._waiting[key] = (sighting, future)
        if self._writer is None:
            self._writer = asyncio.create_task(self._write(), name="user-sightings")
        # A request that goes away does not cancel the others' write.
        result: tuple[uuid.UUID, str] = await asyncio.shield(future)
        return result

    async def _write(self) -> None:
        try:
            while self._waiting:
                keys = list(itertools.islice(self._waiting, self.MAX_BATCH))
                batch = {key: self._waiting.pop(key) for key in keys}
                try:
                    async with self._sessions() as session:
                        found = await users.ensure_users(
                            session, [sighting for sighting, _ in batch.values()]
                        )
                except Exception as exc:
                    for _, future in batch.values():
                        if not future.done():
                            future.set_exception(exc)
                    continue
                except BaseException:  # cancelled at shutdown
                    for _, future in batch.values():
                        future.cancel()
                    raise
                for key, (_, future) in batch.items():
                    if not future.done():
                        future.set_result(found[key])
        finally:
            self._writer = None


class Authenticator:
    def __init__(
        self,
        validator: TokenValidator,
        mapping: GroupMapping,
        cache: PermissionCache,
        sessions: async_sessionmaker[AsyncSession],
        metrics: Metrics,
        revocations: RevocationList | None = None,
    ) -> None:
        self.validator = validator
        self.revocations = revocations if revocations is not None else RevocationList()
        self.mapping = mapping
        self.cache = cache
        self._sessions = sessions
        self._metrics = metrics
        self._profiles: OrderedDict[bytes, Profile] = OrderedDict()
        self._sightings = Sightings(sessions)

    def note_profile(self, token: str, profile: Profile) -> None:
        """Browser sign-in: the profile that goes with this access token (bounded, newest kept)."""
        key = token_key(token)
        self._profiles[key] = profile
        self._profiles.move_to_end(key)
        while len(self._profiles) > PROFILES_MAX:
            self._profiles.popitem(last=False)

    async def authenticate(self, token: str) -> Principal:
        """Raise :class:`Unauthenticated` (401) or :class:`ServiceUnavailable` (503)."""
        principal = self.cache.get(token)
        if principal is not None:
            self._metrics.permission_cache.labels("hit").inc()
            return self._unless_revoked(principal)
        self._metrics.permission_cache.labels("miss").inc()
        try:
            claims = await self.validator.validate(token)
        except InvalidToken as exc:
            self._metrics.auth_failures.labels(exc.reason).inc()
            log.info("event=token_rejected reason=%s", exc.reason)
            raise Unauthenticated("Invalid or expired token", invalid_token=True) from None
        except KeysUnavailable:
            self._metrics.auth_failures.labels("keys_unavailable").inc()
            raise ServiceUnavailable("Identity provider keys are unavailable") from None

        groups = self.mapping.groups_of(claims)
        profile = self._profiles.get(token_key(token))
        if profile is not None and profile.groups is not None and self.mapping.claim not in claims:
            groups = profile.groups
        resolved = self.mapping.resolve(groups)
        email = claims.get("email")
        if not isinstance(email, str) or not email:
            email = profile.email if profile is not None else None
        sighting = users.Sighting(
            claims["iss"],
            claims["sub"],
            email,
            resolved.label if resolved is not None else None,
            list(groups),
            idp_user_id(claims),
        )
        try:
            user_id, email = await self._sightings.record(sighting)
        except (SQLAlchemyError, OSError) as exc:
            log.warning("event=db_unavailable where=authenticate error=%s", type(exc).__name__)
            raise ServiceUnavailable("Database unavailable") from None
        principal = Principal(
            user_id=user_id,
            issuer=claims["iss"],
            subject=claims["sub"],
            email=email,
            level=self.mapping.effective(resolved),
            groups=groups,
            expires_at=int(claims["exp"]),
            issued_at=int(claims["iat"]),
        )
        self._unless_revoked(principal)
        self.cache.put(token, principal)
        return principal

    def _unless_revoked(self, principal: Principal) -> Principal:
        if self.revocations.covers(principal):
            self._metrics.auth_failures.labels("revoked").inc()
            log.info("event=token_rejected reason=revoked user_id=%s", principal.user_id)
            raise Unauthenticated("Token revoked", invalid_token=True)
        return principal
