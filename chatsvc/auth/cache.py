"""The permission cache: resolved principals by token hash, never past the token's ``exp``."""

from __future__ import annotations

import hashlib
import time

from cachetools import TLRUCache

from chatsvc.auth.principal import Principal


def token_key(token: str) -> bytes:
    # Only a digest is kept in memory, so a heap dump does not reveal live tokens.
    return hashlib.sha256(token.encode()).digest()


class PermissionCache:
    def __init__(self, ttl: float, maxsize: int) -> None:
        self._ttl = ttl

        def ttu(_key: bytes, principal: Principal, now: float) -> float:
            return min(now + self._ttl, principal.expires_at)

        self._cache: TLRUCache[bytes, Principal] = TLRUCache(
            maxsize=maxsize, ttu=ttu, timer=time.time
        )

    def get(self, token: str) -> Principal | None:
        return self._cache.get(token_key(token))

    def put(self, token: str, principal: Principal) -> None:
        if self._ttl > 0:
            self._cache[token_key(token)] = principal
