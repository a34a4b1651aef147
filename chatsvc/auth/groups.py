"""Maps a token's groups claim to a permission level (the highest mapped group wins)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from chatsvc.auth.principal import Level
from chatsvc.settings import Settings


class GroupMapping:
    def __init__(self, settings: Settings) -> None:
        self._claim = settings.okta_groups_claim
        self._enabled = settings.enable_chat_permissions
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
        """The level that applies: with the permission flag off, everyone acts as write."""
        return resolved if self._enabled else Level.WRITE
