"""Revocations in force: the identity provider ended or changed a user's access at a
cut-off time, and tokens issued at or before it are refused.

This is the in-memory side, consulted on every authenticated request (a cached
token included), so a check is one dictionary lookup. The records themselves are
stored and replicated by :mod:`chatsvc.service.revocation`, which feeds them here
in every process.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

from chatsvc.auth.principal import Principal


class RevocationList:
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        # user id -> (cut-off, kept until): the latest cut-off wins; a record is
        # kept until the last token it covers has expired.
        self._by_user: dict[uuid.UUID, tuple[float, float]] = {}

    def __len__(self) -> int:
        return len(self._by_user)

    def apply(self, user_id: uuid.UUID, cutoff: float, until: float) -> None:
        held = self._by_user.get(user_id)
        if held is not None:
            cutoff, until = max(cutoff, held[0]), max(until, held[1])
        self._by_user[user_id] = (cutoff, until)

    def cutoff(self, user_id: uuid.UUID) -> float | None:
        held = self._by_user.get(user_id)
        if held is None:
            return None
        if held[1] <= self._clock():
            del self._by_user[user_id]
            return None
        return held[0]

    def covers(self, principal: Principal) -> bool:
        """True when the principal's token was issued at or before its user's cut-off."""
        if not self._by_user:  # the common case: nothing revoked in this process
            return False
        cutoff = self.cutoff(principal.user_id)
        return cutoff is not None and principal.issued_at <= cutoff

    def purge(self) -> int:
        now = self._clock()
        gone = [user for user, (_, until) in self._by_user.items() if until <= now]
        for user in gone:
            del self._by_user[user]
        return len(gone)
