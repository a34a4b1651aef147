"""The permission cache: resolved principals by token hash, never past the token's ``exp``."""

from __future__ import annotations

import hashlib
import time
import uuid

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

    def drop_user(self, user_id: uuid.UUID) -> int:
        """Forget every cached principal of one user (their access changed at the IdP).

        The cache is keyed by token digest only, so this walks it: revocations are
        rare and the walk is bounded by ``maxsize``, while an index by user would
        cost every cached request a second structure to keep in step."""
        mine = [key for key, principal in self._cache.items() if principal.user_id == user_id]
        for key in mine:
            self._cache.pop(key, None)
        return len(mine)

    def put(self, token: str, principal: Principal) -> None:
        if self._ttl > 0:
            self._cache[token_key(token)] = principal
