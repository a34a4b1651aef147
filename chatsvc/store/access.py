"""The access facts the store reads for the policy: plain data, no SQL here.

The store fills these in; :mod:`chatsvc.policy` decides over them. Keeping them
in the store (the lower layer) means the store never imports the policy."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from enum import Enum


@dataclass(frozen=True, slots=True)
class SessionFacts:
    """What the rules need to know about one chat session (and one message)."""

    owner_id: uuid.UUID
    is_shared: bool
    is_collaborator: bool
    author_id: uuid.UUID | None = None  # for message rules

    def with_collaborator(self, is_collaborator: bool) -> SessionFacts:
        return replace(self, is_collaborator=is_collaborator)


class ListScope(Enum):
    """Which sessions a listing may return."""

    OWN_OR_SHARED = "own_or_shared"
    OWN_SHARED_OR_COLLAB = "own_shared_or_collab"
    ALL = "all"
