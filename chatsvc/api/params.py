"""Query-string parameters: integers in a range and booleans, or a 400 naming them."""

from __future__ import annotations

import uuid

from aiohttp import web

from chatsvc.errors import FieldError, ValidationFailed


def _bad(name: str, message: str) -> ValidationFailed:
    return ValidationFailed(f"{name}: {message}", [FieldError(name, message)])


def int_param(
    request: web.Request, name: str, default: int, low: int, high: int | None = None
) -> int:
    value = optional_int_param(request, name, low, high)
    return default if value is None else value


def optional_int_param(
    request: web.Request, name: str, low: int, high: int | None = None
) -> int | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return None
    text = raw.strip()
    if not (text.isascii() and text.lstrip("-").isdigit()) or len(text) > 12:
        raise _bad(name, "must be an integer")
    value = int(text)
    if value < low or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise _bad(name, f"must be {bound}")
    return value


def bool_param(request: web.Request, name: str, default: bool) -> bool:
    raw = request.query.get(name)
    if raw is None:
        return default
    lowered = raw.lower()
    if lowered in ("true", "1"):
        return True
    if lowered in ("false", "0"):
        return False
    raise _bad(name, "must be true or false")


def uuid_param(request: web.Request, name: str) -> uuid.UUID | None:
    raw = request.query.get(name)
    if not raw:
        return None
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise _bad(name, "must be a UUID") from None


def str_param(request: web.Request, name: str, max_length: int = 64) -> str | None:
    raw = request.query.get(name)
    if not raw:
        return None
    if len(raw) > max_length:
        raise _bad(name, f"must be at most {max_length} characters")
    if "\x00" in raw:
        raise _bad(name, "must not contain NUL characters")
    return raw
