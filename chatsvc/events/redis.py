"""Fan-out across processes through Redis pub/sub (``CHATSVC_BROKER_URL=redis://...``).

Every process publishes each event once on one channel and runs one listener
task that hands events from other processes to its hub (events carry the
publisher's node id; a process never re-delivers its own). Local delivery never
waits for Redis, so a Redis outage degrades to single-process delivery: events
published meanwhile are not relayed (pub/sub is at-most-once) and clients fill
the gap with ``since_seq``, because seq and messages live in the database.

Presence (who has a socket in a session, on any process) is a Redis hash per
session whose entries carry an expiry that each live process refreshes, so a
process that dies does not leave its members present forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable

import orjson
import redis.asyncio as redis
from redis.exceptions import RedisError

from chatsvc.events import BadEvent, Event, decode, encode
from chatsvc.events.broker import BrokerStatus, EventHandler
from chatsvc.metrics import Metrics
from chatsvc.settings import Settings

log = logging.getLogger("chatsvc.broker")

CHANNEL = "chatsvc:events"

# KEYS[1] = presence hash; ARGV = user prefix, own field, expiry, now, key ttl (ms).
# Returns 1 when no other live entry of the user exists (the user is new / gone).
_JOIN = """
redis.call('HSET', KEYS[1], ARGV[2], ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
local others = 0
local entries = redis.call('HGETALL', KEYS[1])
for i = 1, #entries, 2 do
  local field, expiry = entries[i], tonumber(entries[i + 1])
  if field ~= ARGV[2] and string.sub(field, 1, #ARGV[1]) == ARGV[1] and expiry > tonumber(ARGV[4]) then
    others = others + 1
  end
end
if others == 0 then return 1 else return 0 end
"""
_LEAVE = """
redis.call('HDEL', KEYS[1], ARGV[2])
local others = 0
local entries = redis.call('HGETALL', KEYS[1])
for i = 1, #entries, 2 do
  local field, expiry = entries[i], tonumber(entries[i + 1])
  if string.sub(field, 1, #ARGV[1]) == ARGV[1] and expiry > tonumber(ARGV[4]) then
    others = others + 1
  end
end
if others == 0 then return 1 else return 0 end
"""


def _presence_key(session_id: uuid.UUID) -> str:
    return f"chatsvc:presence:{session_id}"


class RedisBroker:
    def __init__(self, url: str, metrics: Metrics, settings: Settings) -> None:
        self._handler: EventHandler | None = None
        self.node_id = uuid.uuid4().hex
        self._url = url
        self._metrics = metrics
        self._presence_ttl = settings.presence_ttl
        self._backoff_max = settings.broker_reconnect_max
        self._client = redis.from_url(
            url,
            socket_connect_timeout=settings.broker_timeout,
            socket_timeout=settings.broker_timeout,
        )
        self._outbox: asyncio.Queue[bytes] = asyncio.Queue(maxsize=settings.broker_outbox_size)
        self._tasks: list[asyncio.Task[None]] = []
        self._up = False
        self.on_reconnect: Callable[[], Awaitable[None]] | None = None
        metrics.broker_up.set(0)

    # --- status ------------------------------------------------------------------
    @property
    def status(self) -> BrokerStatus:
        return "up" if self._up else "down"

    def attach(self, handler: EventHandler) -> None:
        self._handler = handler

    def _mark(self, up: bool, error: BaseException | None = None) -> None:
        if up != self._up:
            if up:
                log.info("event=broker_up url_scheme=redis")
            else:
                log.warning("event=broker_down error=%s", type(error).__name__ if error else "-")
                self._metrics.broker_errors.inc()
        self._up = up
        self._metrics.broker_up.set(1 if up else 0)

    # --- events ------------------------------------------------------------------
    def publish(self, event: Event) -> None:
        if self._handler is not None:
            self._handler.on_event(event)
        payload = orjson.dumps({"o": self.node_id, "e": encode(event)})
        try:
            self._outbox.put_nowait(payload)
        except asyncio.QueueFull:
            self._metrics.broker_errors.inc()
            log.warning("event=broker_outbox_full session_id=%s", event.session_id)

    async def _publisher(self) -> None:
        while True:
            payload = await self._outbox.get()
            try:
                await self._client.publish(CHANNEL, payload)
            except (RedisError, OSError) as exc:
                # At-most-once: the event is not relayed; members elsewhere resume by seq.
                self._mark(False, exc)
            finally:
                self._outbox.task_done()

    async def _listener(self) -> None:
        backoff = 0.2
        first = True
        while True:
            pubsub = self._client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(CHANNEL)
                self._mark(True)
                backoff = 0.2
                if not first and self.on_reconnect is not None:
                    await self.on_reconnect()
                first = False
                await self._refresh_presence()
                next_refresh = time.monotonic() + self._presence_ttl / 3
                while True:
                    message = await pubsub.get_message(timeout=1.0)
                    if message is not None and message.get("type") == "message":
                        self._relay(message["data"])
                    if time.monotonic() >= next_refresh:
                        await self._refresh_presence()
                        next_refresh = time.monotonic() + self._presence_ttl / 3
            except (RedisError, OSError) as exc:
                self._mark(False, exc)
                first = False
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self._backoff_max)

    def _relay(self, data: bytes) -> None:
        try:
            envelope = orjson.loads(data)
            if envelope["o"] == self.node_id:
                return
            event = decode(envelope["e"])
        except (orjson.JSONDecodeError, KeyError, TypeError, BadEvent):
            log.warning("event=broker_bad_message")
            return
        if self._handler is not None:
            self._handler.on_event(event)

    async def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._listener(), name="broker-listener"),
            asyncio.create_task(self._publisher(), name="broker-publisher"),
        ]

    async def close(self) -> None:
        # Give queued events a moment to leave before the connection goes.
        if self._up:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._outbox.join(), 1.0)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for session_id, user_id in self._present():
            with contextlib.suppress(Exception):
                await self.presence_leave(session_id, user_id)
        with contextlib.suppress(Exception):
            await self._client.aclose()

    # --- presence ------------------------------------------------------------------
    def _presence_args(self, user_id: uuid.UUID) -> tuple[str, str, str, str, str]:
        now_ms = int(time.time() * 1000)
        ttl_ms = int(self._presence_ttl * 1000)
        prefix = f"{user_id}:"
        return prefix, prefix + self.node_id, str(now_ms + ttl_ms), str(now_ms), str(ttl_ms * 2)

    def _present(self) -> list[tuple[uuid.UUID, uuid.UUID]]:
        return list(self._handler.present_users()) if self._handler is not None else []

    async def presence_join(self, session_id: uuid.UUID, user_id: uuid.UUID) -> bool:
        try:
            result = await self._client.eval(
                _JOIN, 1, _presence_key(session_id), *self._presence_args(user_id)
            )
        except (RedisError, OSError) as exc:
            self._mark(False, exc)
            return True  # best effort: this process's view
        return bool(result)

    async def presence_leave(self, session_id: uuid.UUID, user_id: uuid.UUID) -> bool:
        try:
            result = await self._client.eval(
                _LEAVE, 1, _presence_key(session_id), *self._presence_args(user_id)
            )
        except (RedisError, OSError) as exc:
            self._mark(False, exc)
            return True
        return bool(result)

    async def _refresh_presence(self) -> None:
        present = self._present()
        if not present:
            return
        async with self._client.pipeline(transaction=False) as pipe:
            for session_id, user_id in present:
                _prefix, field, expiry, _now, key_ttl = self._presence_args(user_id)
                key = _presence_key(session_id)
                pipe.hset(key, field, expiry)
                pipe.pexpire(key, int(key_ttl))
            await pipe.execute()

    async def presence_members(self, session_id: uuid.UUID) -> set[uuid.UUID]:
        """Users with a live presence entry in the session, on any process (best
        effort: empty while Redis is unreachable)."""
        try:
            entries = await self._client.hgetall(_presence_key(session_id))
        except (RedisError, OSError) as exc:
            self._mark(False, exc)
            return set()
        now_ms = int(time.time() * 1000)
        users: set[uuid.UUID] = set()
        for field, expiry in entries.items():
            text = field.decode() if isinstance(field, bytes) else str(field)
            user, _, _node = text.partition(":")
            try:
                if int(expiry) > now_ms:
                    users.add(uuid.UUID(user))
            except ValueError:
                continue
        return users
