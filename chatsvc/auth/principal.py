"""Who is calling: the permission level and the authenticated principal."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from enum import IntEnum


class Level(IntEnum):
    """Permission levels, ordered: ``read < write < admin``."""

    READ = 1
    WRITE = 2
    ADMIN = 3

    @property
    def label(self) -> str:
        return self.name.lower()


@dataclass(frozen=True, slots=True)
class Principal:
    user_id: uuid.UUID
    issuer: str
    subject: str
    email: str
    level: Level | None
    groups: tuple[str, ...]
    expires_at: int  # the token's ``exp`` (epoch seconds)
    issued_at: int = 0  # its ``iat``: a revocation refuses tokens issued at or before it
    # Shadow mode: ``level`` is the one the caller acts at (as with permissions off),
    # and this is the same caller at the level enforcement would give; the policy
    # checks both and reports where only this one is refused. None: no difference.
    enforced: Principal | None = None

    @property
    def permission(self) -> str | None:
        return self.level.label if self.level is not None else None

    def at_least(self, level: Level) -> bool:
        return self.level is not None and self.level >= level
