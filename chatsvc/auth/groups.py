"""Maps a token's groups claim to a permission level (the highest mapped group wins),
and applies the permission mode (``enforce``, ``shadow`` or ``off``) to it."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from chatsvc.auth.principal import Level, Principal
from chatsvc.settings import Settings


class GroupMapping:
    def __init__(self, settings: Settings) -> None:
        self._claim = settings.okta_groups_claim
        self._mode = settings.permission_mode
        self._canary = frozenset(settings.enforce_groups)
        self._by_group: dict[str, Level] = {}
        for level, groups in (
            (Level.READ, settings.groups_read),
            (Level.WRITE, settings.groups_write),
            (Level.ADMIN, settings.groups_admin),
        ):
            for group in groups:
                self._by_group[group] = max(level, self._by_group.get(group, level))

    @property
    def claim(self) -> str:
        return self._claim

    def groups_of(self, claims: dict[str, Any]) -> tuple[str, ...]:
        raw = claims.get(self._claim)
        if isinstance(raw, str):
            raw = [raw]
        if not isinstance(raw, list):
            return ()
        return tuple(group for group in raw if isinstance(group, str))

    def resolve(self, groups: Iterable[str]) -> Level | None:
        """The level the groups grant (``None`` when no group is mapped)."""
        levels = [self._by_group[g] for g in groups if g in self._by_group]
        return max(levels) if levels else None

    def effective(self, resolved: Level | None) -> Level | None:
        """The level a token's principal is built with: with permissions off everyone
        acts as write. In shadow mode it is still the real level, so that a principal
        :meth:`acting` was not applied to is enforced (never more than it may)."""
        return Level.WRITE if self._mode == "off" else resolved

    def acting(self, principal: Principal) -> Principal:
        """The caller as they act in this mode, applied to each request's principal.

        In shadow mode a caller outside ``enforce_groups`` acts as with permissions
        off (write), and carries the level enforcement would give in ``enforced``.
        Idempotent; in the other modes, and for a canary member, the principal as is."""
        if self._mode != "shadow" or principal.enforced is not None:
            return principal
        if self._canary.intersection(principal.groups):
            return principal
        real = self.resolve(principal.groups)
        if real is Level.WRITE and principal.level is Level.WRITE:
            return principal  # no decision differs
        return replace(principal, level=Level.WRITE, enforced=replace(principal, level=real))
