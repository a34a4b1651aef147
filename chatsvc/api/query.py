"""Query strings as pydantic models: each route's parameters, their defaults and
limits, declared once; ``/openapi.json`` reads its parameters from the same models.

The field types keep the query string's own rules: integers are plain decimal
(``-5`` is an integer out of range, ``1.5`` or ``+5`` is no integer), booleans
are ``true``/``false``/``1``/``0`` in any case, and an empty value is no value
(except for a boolean). A bad value is a 400 naming the first bad parameter.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal, TypeVar, get_args

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    ValidationError,
)
from pydantic_core import CoreSchema, PydanticCustomError, PydanticUseDefault, core_schema

from chatsvc.errors import FieldError, ValidationFailed

INT_DIGITS_MAX = 12  # with the sign: far past any limit, far below a costly int()


def _bad(message: str) -> PydanticCustomError:
    return PydanticCustomError("query_value", message)


@dataclass(frozen=True, slots=True)
class Range:
    """``Annotated[int, Range(low, high)]``: a decimal integer from ``low`` (to ``high``)."""

    low: int
    high: int | None = None

    def parse(self, raw: Any) -> Any:
        if not isinstance(raw, str):
            return raw
        if raw == "":
            raise PydanticUseDefault()
        text = raw  # no trimming: " 7" is not a plain decimal integer
        digits = text.removeprefix("-")
        if not (digits.isascii() and digits.isdigit()) or len(text) > INT_DIGITS_MAX:
            raise _bad("must be an integer")
        value = int(text)
        if value < self.low or (self.high is not None and value > self.high):
            bound = (
                f"between {self.low} and {self.high}"
                if self.high is not None
                else f"at least {self.low}"
            )
            raise _bad(f"must be {bound}")
        return value

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> CoreSchema:
        return core_schema.no_info_before_validator_function(
            self.parse, core_schema.int_schema(ge=self.low, le=self.high)
        )


@dataclass(frozen=True, slots=True)
class Text:
    """``Annotated[str, Text(max_length)]``: at most ``max_length`` characters, no NUL."""

    max_length: int

    def parse(self, raw: Any) -> Any:
        if not isinstance(raw, str):
            return raw
        if raw == "":
            raise PydanticUseDefault()
        if len(raw) > self.max_length:
            raise _bad(f"must be at most {self.max_length} characters")
        if "\x00" in raw:
            raise _bad("must not contain NUL characters")
        return raw

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> CoreSchema:
        return core_schema.no_info_before_validator_function(
            self.parse, core_schema.str_schema(max_length=self.max_length)
        )


@dataclass(frozen=True, slots=True)
class Prefix:
    """``Annotated[str, Prefix(max_length)]``: required text to search by, at most
    ``max_length`` characters as given, no NUL; surrounding spaces are ignored and
    what is left must not be empty."""

    max_length: int

    def parse(self, raw: Any) -> Any:
        if not isinstance(raw, str):
            return raw
        if len(raw) > self.max_length:
            raise _bad(f"must be at most {self.max_length} characters")
        if "\x00" in raw:
            raise _bad("must not contain NUL characters")
        value = raw.strip()
        if not value:
            raise _bad("must not be empty")
        return value

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> CoreSchema:
        return core_schema.no_info_before_validator_function(
            self.parse, core_schema.str_schema(min_length=1, max_length=self.max_length)
        )


@dataclass(frozen=True, slots=True)
class OneOf:
    """``Annotated[Literal[...], OneOf()]``: one of the literal's words, said plainly when not."""

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> CoreSchema:
        words = get_args(source)

        def parse(raw: Any) -> Any:
            if not isinstance(raw, str):
                return raw
            if raw == "":
                raise PydanticUseDefault()
            if raw not in words:
                raise _bad(f"must be one of {', '.join(words)}")
            return raw

        return core_schema.no_info_before_validator_function(parse, handler(source))


def _bool(raw: Any) -> Any:
    if not isinstance(raw, str):
        return raw
    lowered = raw.lower()
    if lowered in ("true", "1"):
        return True
    if lowered in ("false", "0"):
        return False
    raise _bad("must be true or false")


def _uuid(raw: Any) -> Any:
    if not isinstance(raw, str):
        return raw
    if raw == "":
        raise PydanticUseDefault()
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise _bad("must be a UUID") from None


Bool = Annotated[bool, BeforeValidator(_bool)]
UUID = Annotated[uuid.UUID, BeforeValidator(_uuid)]


class Query(BaseModel):
    """A route's query parameters; unknown ones are ignored."""

    model_config = ConfigDict(extra="ignore", frozen=True)


# --- the routes' query models --------------------------------------------------------

SESSION_LIMIT_MAX = 200
MESSAGE_LIMIT_MAX = 500
AUDIT_LIMIT_MAX = 500
USER_LIMIT_MAX = 50
USER_QUERY_MAX = 320  # an email's longest: a longer prefix can match nobody


class SessionListQuery(Query):
    limit: Annotated[int, Range(1, SESSION_LIMIT_MAX)] = 50
    offset: Annotated[int, Range(0)] = 0
    include_messages: Bool = Field(False, description="Add each session's 5 newest messages")


class SessionQuery(Query):
    include_messages: Bool = Field(
        True, description="Add the newest 100 messages, oldest first, and has_more_messages"
    )


class MessageListQuery(Query):
    limit: Annotated[int, Range(1, MESSAGE_LIMIT_MAX)] = 100
    offset: Annotated[int, Range(0)] = 0
    after_seq: Annotated[int, Range(0)] | None = Field(
        None, description="The first `limit` messages after this seq"
    )
    before_seq: Annotated[int, Range(0)] | None = Field(
        None, description="The `limit` messages just before this seq (scroll-back)"
    )


class AuditQuery(Query):
    limit: Annotated[int, Range(1, AUDIT_LIMIT_MAX)] = 100
    offset: Annotated[int, Range(0)] = 0
    user_id: UUID | None = None
    action: Annotated[str, Text(64)] | None = None
    outcome: Annotated[Literal["denied", "would_deny", "revoked"], OneOf()] | None = Field(
        None, description="Only events with this outcome"
    )


class UserQuery(Query):
    query: Annotated[str, Prefix(USER_QUERY_MAX)] = Field(
        description="The start of the users' email, compared without regard to case"
    )
    limit: Annotated[int, Range(1, USER_LIMIT_MAX)] = 20


# --- parsing -------------------------------------------------------------------------

Q = TypeVar("Q", bound=Query)


def parse_query(model: type[Q], query: Mapping[str, str]) -> Q:
    """The model's parameters from the query string (the first of repeated ones),
    or :class:`ValidationFailed` naming the first bad one."""
    given = {name: query[name] for name in model.model_fields if name in query}
    try:
        return model.model_validate(given)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        name = str(first["loc"][0])
        message = "is required" if first["type"] == "missing" else first["msg"]
        raise ValidationFailed(f"{name}: {message}", [FieldError(name, message)]) from None
