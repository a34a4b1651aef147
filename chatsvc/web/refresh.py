"""Refreshing a browser session's tokens: once per session at a time.

Several requests of one page reach the refresh margin together; a provider that
rotates refresh tokens treats a second use of one as theft and revokes the
whole grant. So within a process one task per session talks to the provider and
every other request awaits its result; across processes the row is claimed by
compare-and-swap on its ``version`` (with a lease), and a process that lost the
claim re-reads the row until the winner has stored the new tokens.

The margin is a fraction of the token's lifetime (``browser_refresh_fraction``),
capped by ``browser_refresh_margin``: a 60 s token is not refreshed on every
request."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace

from aiohttp import web

from chatsvc.auth.tokens import InvalidToken, KeysUnavailable
from chatsvc.errors import ServiceUnavailable
from chatsvc.keys import AUTHENTICATOR, CLOCK, DB_SESSIONS
from chatsvc.settings import Settings
from chatsvc.store import browser_sessions as store
from chatsvc.web.cookie import BrowserRow, ServerSessionStorage, Tokens, utc
from chatsvc.web.oidc import OIDC, TokenRefused

log = logging.getLogger("chatsvc.auth.browser")

REFRESHER = web.AppKey["Refresher"]("refresher")
LEASE_SECONDS = 15.0
POLL_SECONDS = 0.05


def refresh_margin(settings: Settings, tokens: Tokens) -> float:
    lifetime = max(0, tokens.expires_at - tokens.issued_at)
    return min(settings.browser_refresh_margin, settings.browser_refresh_fraction * lifetime)


def needs_refresh(settings: Settings, tokens: Tokens, now: float) -> bool:
    return tokens.refresh_token is not None and tokens.expires_at - now <= refresh_margin(
        settings, tokens
    )


class Refresher:
    def __init__(self) -> None:
        self._inflight: dict[str, asyncio.Task[BrowserRow | None]] = {}
        self.provider_calls = 0  # refresh requests sent to the provider (tests, metrics)

    async def refresh(
        self, app: web.Application, storage: ServerSessionStorage, row: BrowserRow
    ) -> BrowserRow | None:
        """The row with fresh tokens (or its tokens unchanged when the provider is
        unavailable); None when the session has ended meanwhile."""
        task = self._inflight.get(row.id)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._refresh(app, storage, row))
            self._inflight[row.id] = task
            task.add_done_callback(lambda done: self._forget(row.id, done))
        # Shielded: a request that goes away does not cancel the others' refresh.
        return await asyncio.shield(task)

    def _forget(self, session_id: str, task: asyncio.Task[BrowserRow | None]) -> None:
        if self._inflight.get(session_id) is task:
            del self._inflight[session_id]
        if not task.cancelled() and task.exception() is not None:
            log.warning("event=session_refresh_failed error=%s", type(task.exception()).__name__)

    async def _reread(
        self, app: web.Application, storage: ServerSessionStorage, session_id: str
    ) -> BrowserRow | None:
        async with app[DB_SESSIONS]() as db:
            stored = await store.load(db, session_id, utc(app[CLOCK]()))
        return None if stored is None else storage.row_of(stored)

    async def _await_winner(
        self, app: web.Application, storage: ServerSessionStorage, row: BrowserRow
    ) -> BrowserRow | None:
        """Another process holds the refresh: re-read the row until it is done."""
        deadline = asyncio.get_running_loop().time() + LEASE_SECONDS
        while True:
            current = await self._reread(app, storage, row.id)
            if current is None:
                return None
            now = app[CLOCK]()
            done = current.refresh_until is None or current.refresh_until.timestamp() <= now
            if done and current.version != row.version:
                return current
            if done or asyncio.get_running_loop().time() > deadline:
                return current  # nobody refreshed (the lease lapsed): keep what is there
            await asyncio.sleep(POLL_SECONDS)

    async def _refresh(
        self, app: web.Application, storage: ServerSessionStorage, row: BrowserRow
    ) -> BrowserRow | None:
        oidc = app[OIDC]
        tokens = row.tokens
        assert oidc is not None and tokens is not None and tokens.refresh_token is not None
        now = app[CLOCK]()
        async with app[DB_SESSIONS]() as db:
            claimed = await store.claim_refresh(
                db, row.id, row.version, utc(now), utc(now + LEASE_SECONDS)
            )
        if not claimed:
            return await self._await_winner(app, storage, row)
        claimed_version = row.version + 1
        new_tokens: Tokens = tokens
        try:
            self.provider_calls += 1
            answer = await oidc.refresh(tokens.refresh_token)
            claims = await app[AUTHENTICATOR].validator.validate(answer["access_token"])
        except (TokenRefused, InvalidToken) as exc:
            # The refresh token is spent or revoked: keep the access token until its exp.
            reason = exc.error if isinstance(exc, TokenRefused) else exc.reason
            log.info("event=session_refresh_refused reason=%s", reason)
            new_tokens = replace(tokens, refresh_token=None)
        except (ServiceUnavailable, KeysUnavailable):
            log.warning("event=session_refresh_unavailable")
        else:
            rotated = answer.get("refresh_token")
            id_token = answer.get("id_token")
            new_tokens = replace(
                tokens,
                access_token=answer["access_token"],
                expires_at=int(claims["exp"]),
                issued_at=int(claims.get("iat", now)),
                # A provider that rotates sends a new one; others keep the old.
                refresh_token=rotated if isinstance(rotated, str) else tokens.refresh_token,
                id_token=id_token if isinstance(id_token, str) else tokens.id_token,
            )
            log.info("event=session_refreshed")
        now = app[CLOCK]()
        async with app[DB_SESSIONS]() as db:
            stored = await store.load(db, row.id, utc(now))
            if stored is None:
                return None
            expires = (
                stored.expires_at.timestamp()
                if new_tokens.refresh_token
                else min(stored.expires_at.timestamp(), new_tokens.expires_at)
            )
            ok = await store.finish_refresh(
                db,
                row.id,
                claimed_version,
                storage.encrypt(new_tokens.to_json()),
                utc(expires),
                utc(now),
            )
        if not ok:
            return await self._reread(app, storage, row.id)
        return storage.with_tokens(row, new_tokens, claimed_version + 1)
