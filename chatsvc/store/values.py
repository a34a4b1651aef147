"""Free-form JSON values kept in columns (``metadata``, ``chat_settings``, groups).

They go through orjson (the standard library's decoder showed in the list
profile). New values are refused past 32 levels of nesting before they are
stored; a value stored before that limit existed, nested so deeply that it could
no longer be written into a response, is read back as ``{}`` with a log line, so
it cannot take a listing down for everyone."""

from __future__ import annotations

import logging
from typing import Any

import orjson

log = logging.getLogger("chatsvc.store")

# Far above what is accepted now (32), far below what orjson can write once the
# value sits inside a response (its limit is 254 levels for the whole document).
READABLE_DEPTH = 128


def json_shape(value: Any, max_depth: int, max_nodes: int) -> tuple[int, int]:
    """How deeply ``value`` nests (an empty object is 1) and how many values it
    holds, counting no further than just past either limit: iterative, so a
    hostile value cannot exhaust the stack or the time."""
    deepest = nodes = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        nodes += 1
        if nodes > max_nodes:
            break
        if not isinstance(item, dict | list):
            continue
        deepest = max(deepest, depth)
        if deepest > max_depth:
            break
        children = item.values() if isinstance(item, dict) else item
        stack.extend((child, depth + 1) for child in children)
    return deepest, nodes


def json_depth(value: Any, limit: int) -> int:
    return json_shape(value, limit, 1 << 62)[0]


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def _loads(text: str | bytes) -> Any:
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:  # deeper than orjson reads at all
        readable = False
    else:
        readable = json_depth(value, READABLE_DEPTH) <= READABLE_DEPTH
    if not readable:
        log.warning("event=stored_value_unreadable reason=nested_too_deeply replaced_with={}")
        return {}
    return value


JSON_CODEC: dict[str, Any] = {"json_serializer": _dumps, "json_deserializer": _loads}
