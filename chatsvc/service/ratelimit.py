"""Per-user message rate limit, shared by REST and WebSocket sends.

A token bucket per user, in process memory. Written here rather than taken from
a library because the asyncio limiters on PyPI wait for capacity, while chatsvc
must refuse at once and tell the client how long to wait (``Retry-After``)."""

from __future__ import annotations

import math
import time
import uuid

from cachetools import TTLCache


class RateLimiter:
    def __init__(self, rate: float, burst: int, max_users: int = 100_000) -> None:
        self.rate = rate
        self.burst = burst
        # Idle buckets refill completely within burst/rate seconds; forgetting them
        # after that changes nothing and bounds the memory.
        ttl = max(1.0, burst / rate) * 2
        self._buckets: TTLCache[uuid.UUID, list[float]] = TTLCache(maxsize=max_users, ttl=ttl)

    def acquire(self, user_id: uuid.UUID) -> float:
        """Take one token; return 0.0 on success, else the seconds until one is available."""
        now = time.monotonic()
        bucket = self._buckets.get(user_id)
        if bucket is None:
            self._buckets[user_id] = [self.burst - 1.0, now]
            return 0.0
        tokens = min(self.burst, bucket[0] + (now - bucket[1]) * self.rate)
        bucket[1] = now
        if tokens >= 1.0:
            bucket[0] = tokens - 1.0
            self._buckets[user_id] = bucket
            return 0.0
        bucket[0] = tokens
        return (1.0 - tokens) / self.rate

    @staticmethod
    def retry_after_header(wait: float) -> int:
        return max(1, math.ceil(wait))
