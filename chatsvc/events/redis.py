"""Fan-out across processes through Redis pub/sub (``CHATSVC_BROKER_URL=redis://...``).

Every process publishes each event once on one channel and runs one listener
task that hands events from other processes to its hub (events carry the
publisher's node id; a process never re-delivers its own). Local delivery never
waits for Redis, so a Redis outage degrades to single-process delivery.

Connections. Commands (publish, the presence scripts, the presence refresh) use
a pool whose connections are PINGed before use once idle for
``broker_health_check_interval``, and a command that fails with a connection
error is retried once on a fresh connection: a connection that died with Redis
costs one reconnect, not an event. The subscription has a connection of its
own that is never retried or re-subscribed behind the listener's back (redis-py
would re-subscribe silently, and what was published in between would be lost
unseen); after that much silence the listener PINGs it, and a subscription that
does not answer is treated as broken.

Status. ``up`` after any command that succeeded (a publish, a presence script,
a refresh, a subscribe), ``down`` after one failed for want of Redis; ``/readyz``
and ``chatsvc_broker_up`` follow, and each change is logged once
(``event=broker_up`` / ``event=broker_down``, key=value, never the URL). A reply
that is an error (e.g. a presence key of the wrong type) proves Redis is there:
it is logged and counted, but changes nothing. :attr:`RedisBroker.relaying` is
the stricter fact the realtime layer needs: subscribed, and no command failing.

Nothing published elsewhere is lost across an outage. While the subscription
is alive the listener only reads and relays: presence refreshes run in a task
of their own, and no failure but the subscription's own tears it down. Pub/sub
itself is at-most-once, so for the time the subscription was down the messages
come from the database, where they live with their seq:

* every (re-)subscribe calls :attr:`RedisBroker.on_reconnect` *before* reading
  anything that arrived on the new subscription. The realtime layer then reads,
  for every live room, the stored messages from the room's next expected seq
  (``Room.next_seq``) on, and hands them to the hub's ordered path. A message
  published after the subscribe is both read from the database and waiting on
  the subscription: the hub delivers a seq once (the catch-up only delivers
  seqs the room has not reached, and its members drop a later copy of a seq
  the catch-up gave them, as they do after a resume's backlog). A message
  published before the subscribe was committed before it too, so the read sees
  it: nothing falls between the two;
* while the broker is not :attr:`~RedisBroker.relaying`, the realtime layer
  does the same every ``broker_down_resync_interval`` (and at once for a room
  whose ordering waits on a missing seq), together with each room's access
  facts: a revocation made on another process during the outage closes its
  member within that interval. Messages are read before the access facts and
  applied after them, so nothing committed after a revocation reaches the
  revoked member.

What is not recovered: the other events (typing, presence, edits and
deletions) published during an outage; members see edits and deletions when
they next read the messages.

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
from typing import Any

import orjson
import redis.asyncio as redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from chatsvc.events import BadEvent, Event, decode, encode
from chatsvc.events.broker import BrokerStatus, EventHandler
from chatsvc.metrics import Metrics
from chatsvc.settings import Settings

log = logging.getLogger("chatsvc.broker")

CHANNEL = "chatsvc:events"

# Failures that mean "Redis is not there" (others are replies: Redis is there).
UNREACHABLE = (RedisConnectionError, RedisTimeoutError, OSError)

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


class SubscriptionSilent(RedisConnectionError):
    """The subscription answered nothing, not even a PING, for too long."""


class RedisBroker:
    def __init__(self, url: str, metrics: Metrics, settings: Settings) -> None:
        self._handler: EventHandler | None = None
        self.node_id = uuid.uuid4().hex
        self._metrics = metrics
        self._presence_ttl = settings.presence_ttl
        self._backoff_max = settings.broker_reconnect_max
        self._timeout = settings.broker_timeout
        self._health_interval = settings.broker_health_check_interval
        timeouts: dict[str, Any] = {
            "socket_connect_timeout": settings.broker_timeout,
            "socket_timeout": settings.broker_timeout,
        }
        # Commands: health-checked, and retried once on a connection error only
        # (a timeout may have reached Redis: a retried publish would be a duplicate).
        self._client = redis.from_url(
            url,
            health_check_interval=settings.broker_health_check_interval,
            retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
            **timeouts,
        )
        # The subscription: no retry, so no silent re-subscribe (see the module doc).
        self._subscriber = redis.from_url(url, retry=Retry(NoBackoff(), 0), **timeouts)
        self._outbox: asyncio.Queue[bytes] = asyncio.Queue(maxsize=settings.broker_outbox_size)
        self._tasks: list[asyncio.Task[None]] = []
        self._up = False
        self._closing = False
        self._subscribed = False
        self._refresh_now = asyncio.Event()
        self.on_reconnect: Callable[[], Awaitable[None]] | None = None
        metrics.broker_up.set(0)

    # --- status ------------------------------------------------------------------
    @property
    def status(self) -> BrokerStatus:
        return "up" if self._up else "down"

    @property
    def subscribed(self) -> bool:
        """The listener holds a live subscription."""
        return self._subscribed

    @property
    def relaying(self) -> bool:
        """Events from other processes arrive: subscribed, and the last command succeeded.
        When False, events may be missed and the database is the source to catch up from."""
        return self._subscribed and self._up

    def attach(self, handler: EventHandler) -> None:
        self._handler = handler

    def _mark(self, up: bool, where: str, error: BaseException | None = None) -> None:
        if up != self._up:
            if up:
                log.info("event=broker_up where=%s url_scheme=redis", where)
            else:
                log.warning(
                    "event=broker_down where=%s error=%s",
                    where,
                    type(error).__name__ if error else "-",
                )
                self._metrics.broker_errors.inc()
        self._up = up
        self._metrics.broker_up.set(1 if up else 0)

    def _replied_with_error(self, where: str, error: RedisError) -> None:
        """Redis answered, with an error: reachable, so the status stands."""
        self._metrics.broker_errors.inc()
        log.warning("event=broker_command_failed where=%s error=%s", where, type(error).__name__)

    # --- events ------------------------------------------------------------------
    def publish(self, event: Event) -> None:
        if self._handler is not None:
            self._handler.on_event(event)
        payload = orjson.dumps({"o": self.node_id, "e": encode(event)})
        try:
            self._outbox.put_nowait(payload)
        except asyncio.QueueFull:
            self._metrics.broker_errors.inc()
            log.warning("event=broker_outbox_full kind=%s", event.kind)

    async def _publisher(self) -> None:
        while True:
            payload = await self._outbox.get()
            try:
                await self._client.publish(CHANNEL, payload)
            except UNREACHABLE as exc:
                # Not relayed: the other processes catch its message up from the database.
                self._mark(False, "publish", exc)
            except RedisError as exc:
                self._replied_with_error("publish", exc)
            else:
                self._mark(True, "publish")
            finally:
                self._outbox.task_done()

    async def _listener(self) -> None:
        backoff = 0.2
        while not self._closing:
            pubsub = self._subscriber.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(CHANNEL)
                self._subscribed = True
                self._mark(True, "subscribe")
                log.info("event=broker_subscribed")
                backoff = 0.2
                self._refresh_now.set()  # Redis may have restarted without our presence
                # Before reading what arrived since the subscribe: catch the rooms up.
                await self._reconnected()
                await self._listen(pubsub)
            except UNREACHABLE as exc:
                if self._closing:
                    return
                self._mark(False, "subscription", exc)
            except RedisError as exc:  # e.g. refused by an ACL: still not subscribed
                self._replied_with_error("subscription", exc)
            finally:
                self._subscribed = False
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self._backoff_max)

    async def _reconnected(self) -> None:
        if self.on_reconnect is None:
            return
        try:
            await self.on_reconnect()
        except Exception as exc:  # the realtime layer's failure must not end the listener
            log.exception("event=broker_resync_failed error=%s", type(exc).__name__)

    async def _listen(self, pubsub: Any) -> None:
        """Read and relay until the subscription breaks; nothing else may end it."""
        heard = time.monotonic()
        pinged = False
        while not self._closing:
            message = await pubsub.get_message(timeout=min(1.0, self._health_interval))
            now = time.monotonic()
            if message is not None:
                heard, pinged = now, False
                if message.get("type") == "message":
                    self._relay(message["data"])
            elif now - heard >= self._health_interval:
                if not pinged:
                    await pubsub.ping()
                    pinged = True
                elif now - heard >= self._health_interval + self._timeout:
                    raise SubscriptionSilent("no reply to PING")

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
            try:
                self._handler.on_event(event)
            except Exception:  # one bad delivery must not end the subscription
                log.exception("event=broker_handler_failed kind=%s", event.kind)

    async def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._listener(), name="broker-listener"),
            asyncio.create_task(self._publisher(), name="broker-publisher"),
            asyncio.create_task(self._presence_refresher(), name="broker-presence"),
        ]

    async def close(self) -> None:
        # Give queued events a moment to leave before the connection goes.
        if self._up:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._outbox.join(), 1.0)
        # redis-py's pubsub read can swallow a cancellation (its retry layer turns
        # it into a TimeoutError), so the listener also stops on this flag, at
        # its next read timeout.
        self._closing = True
        for task in self._tasks:
            task.cancel()
        done, stuck = await asyncio.wait(self._tasks, timeout=3.0)
        for task in done:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                task.result()
        if stuck:
            log.warning("event=broker_close_slow tasks=%d", len(stuck))
        for session_id, user_id in self._present():
            with contextlib.suppress(Exception):
                await self.presence_leave(session_id, user_id)
        for client in (self._client, self._subscriber):
            with contextlib.suppress(Exception):
                await client.aclose()

    # --- presence ------------------------------------------------------------------
    def _presence_args(self, user_id: uuid.UUID) -> tuple[str, str, str, str, str]:
        now_ms = int(time.time() * 1000)
        ttl_ms = int(self._presence_ttl * 1000)
        prefix = f"{user_id}:"
        return prefix, prefix + self.node_id, str(now_ms + ttl_ms), str(now_ms), str(ttl_ms * 2)

    def _present(self) -> list[tuple[uuid.UUID, uuid.UUID]]:
        return list(self._handler.present_users()) if self._handler is not None else []

    async def _presence_script(
        self, script: str, where: str, session_id: uuid.UUID, user_id: uuid.UUID
    ) -> bool:
        try:
            result = await self._client.eval(
                script, 1, _presence_key(session_id), *self._presence_args(user_id)
            )
        except UNREACHABLE as exc:
            self._mark(False, where, exc)
            return True  # best effort: this process's view
        except RedisError as exc:
            self._replied_with_error(where, exc)
            return True
        self._mark(True, where)
        return bool(result)

    async def presence_join(self, session_id: uuid.UUID, user_id: uuid.UUID) -> bool:
        return await self._presence_script(_JOIN, "presence_join", session_id, user_id)

    async def presence_leave(self, session_id: uuid.UUID, user_id: uuid.UUID) -> bool:
        return await self._presence_script(_LEAVE, "presence_leave", session_id, user_id)

    async def _presence_refresher(self) -> None:
        """Refresh this process's presence entries every ``presence_ttl / 3`` (and
        after each subscribe), in a task of its own: a failure here is logged and
        marks the status, and never touches the subscription."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._refresh_now.wait(), self._presence_ttl / 3)
            self._refresh_now.clear()
            try:
                refreshed = await self._refresh_presence()
            except UNREACHABLE as exc:
                self._mark(False, "presence_refresh", exc)
            except RedisError as exc:
                self._metrics.broker_errors.inc()
                log.warning("event=presence_refresh_failed error=%s", type(exc).__name__)
            else:
                if refreshed:
                    self._mark(True, "presence_refresh")

    async def _refresh_presence(self) -> bool:
        present = self._present()
        if not present:
            return False
        async with self._client.pipeline(transaction=False) as pipe:
            for session_id, user_id in present:
                _prefix, field, expiry, _now, key_ttl = self._presence_args(user_id)
                key = _presence_key(session_id)
                pipe.hset(key, field, expiry)
                pipe.pexpire(key, int(key_ttl))
            await pipe.execute()
        return True

    async def presence_members(self, session_id: uuid.UUID) -> set[uuid.UUID]:
        """Users with a live presence entry in the session, on any process (best
        effort: empty while Redis is unreachable)."""
        try:
            entries = await self._client.hgetall(_presence_key(session_id))
        except UNREACHABLE as exc:
            self._mark(False, "presence", exc)
            return set()
        except RedisError as exc:
            self._replied_with_error("presence", exc)
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
