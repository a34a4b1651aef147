"""Request bodies (pydantic v2, strict, no unknown fields).

The same models validate REST bodies and WebSocket frames and describe the
bodies in ``/openapi.json``. The REST answers' models are in
:mod:`chatsvc.api.models`, the query strings' in :mod:`chatsvc.api.query`."""

from __future__ import annotations

from typing import Annotated, Any, Literal, TypeVar

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from chatsvc.errors import FieldError, ValidationFailed
from chatsvc.store.values import json_shape

MAX_JSON_FIELD_BYTES = 16_384
MAX_JSON_DEPTH = 32
MAX_JSON_NODES = 4096  # values (objects, arrays, scalars) in one field
TITLE_MAX = 200
DESCRIPTION_MAX = 2_000
CONTENT_MAX = 32_000

TITLE_REQUIRED = "Chat session title is required"
CONTENT_REQUIRED = "Message content is required"


def _json_size(value: dict[str, Any], field: str) -> dict[str, Any]:
    # Shape first: a value nested past orjson's own limit cannot even be measured.
    depth, nodes = json_shape(value, MAX_JSON_DEPTH, MAX_JSON_NODES)
    if depth > MAX_JSON_DEPTH:
        raise ValueError(f"{field} must be nested at most {MAX_JSON_DEPTH} levels deep")
    if nodes > MAX_JSON_NODES:
        raise ValueError(f"{field} must hold at most {MAX_JSON_NODES} values")
    if len(orjson.dumps(value)) > MAX_JSON_FIELD_BYTES:
        raise ValueError(f"{field} must be at most {MAX_JSON_FIELD_BYTES} bytes as JSON")
    return value


def _title(value: str | None) -> str | None:
    if value is None:
        return None
    if not value.strip():
        raise ValueError(TITLE_REQUIRED)
    if len(value) > TITLE_MAX:
        raise ValueError(f"title must be at most {TITLE_MAX} characters")
    return value


def _content(value: str | None) -> str | None:
    if value is None:
        return None
    if not value.strip():
        raise ValueError(CONTENT_REQUIRED)
    if len(value) > CONTENT_MAX:
        raise ValueError(f"content must be at most {CONTENT_MAX} characters")
    return value


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    @field_validator("*")
    @classmethod
    def _no_nul(cls, value: Any) -> Any:
        # PostgreSQL text cannot hold U+0000: refuse it on every database alike (400, not 503).
        if isinstance(value, str) and "\x00" in value:
            raise ValueError("must not contain NUL characters")
        return value


class SessionCreate(Body):
    title: str
    description: str = Field("", max_length=DESCRIPTION_MAX)
    is_shared: bool = False
    chat_settings: dict[str, Any] = Field(default_factory=dict)

    _title = field_validator("title")(_title)

    @field_validator("chat_settings")
    @classmethod
    def _settings_size(cls, value: dict[str, Any]) -> dict[str, Any]:
        return _json_size(value, "chat_settings")


class SessionUpdate(Body):
    title: str | None = None
    description: str | None = Field(None, max_length=DESCRIPTION_MAX)
    is_shared: bool | None = None
    chat_settings: dict[str, Any] | None = None

    _title = field_validator("title")(_title)

    @field_validator("chat_settings")
    @classmethod
    def _settings_size(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        return None if value is None else _json_size(value, "chat_settings")


class MessageCreate(Body):
    content: str
    message_type: Literal["user", "assistant", "system"] = "user"
    metadata: dict[str, Any] = Field(default_factory=dict)
    client_msg_id: Annotated[str, Field(min_length=1, max_length=64)] | None = None

    _content = field_validator("content")(_content)

    @field_validator("metadata")
    @classmethod
    def _metadata_size(cls, value: dict[str, Any]) -> dict[str, Any]:
        return _json_size(value, "metadata")


class MessageUpdate(Body):
    content: str | None = None
    metadata: dict[str, Any] | None = None

    _content = field_validator("content")(_content)

    @field_validator("metadata")
    @classmethod
    def _metadata_size(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        return None if value is None else _json_size(value, "metadata")


class CollaboratorAdd(Body):
    """``{"user_id"}``, or ``{"email"}`` (honoured only when exactly one user has it)."""

    user_id: Annotated[
        str | None,
        Field(
            default=None,
            pattern=r"^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$",
        ),
    ]
    email: Annotated[str | None, Field(default=None, min_length=1, max_length=320)]
    # Exactly one of the two: checked by the use case, which names the field.


# --- parsing -----------------------------------------------------------------

M = TypeVar("M", bound=BaseModel)


def _field_name(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(part) for part in loc) or "body"


def parse_model(model: type[M], data: Any) -> M:
    """Validate ``data`` (already decoded JSON) or raise :class:`ValidationFailed`."""
    if not isinstance(data, dict):
        raise ValidationFailed(
            "Request body must be a JSON object", [FieldError("body", "must be a JSON object")]
        )
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = []
        for error in exc.errors(include_url=False):
            field = _field_name(error["loc"])
            message = error["msg"].removeprefix("Value error, ")
            if error["type"] == "extra_forbidden":
                message = "unknown field"
            errors.append(FieldError(field, message))
        first = errors[0]
        detail = (
            first.message
            if first.message in (TITLE_REQUIRED, CONTENT_REQUIRED)
            else (f"{first.field}: {first.message}")
        )
        raise ValidationFailed(detail, errors) from None


def decode_json(raw: bytes) -> Any:
    if not raw:
        raise ValidationFailed(
            "Request body must be a JSON object", [FieldError("body", "is empty")]
        )
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise ValidationFailed(
            "Malformed JSON body", [FieldError("body", "is not valid JSON")]
        ) from None


def reject_nulls(body: BaseModel) -> dict[str, Any]:
    """The fields the client gave; ``null`` is not a value any of them accepts."""
    given = {name: getattr(body, name) for name in body.model_fields_set}
    nulls = [FieldError(name, "must not be null") for name, value in given.items() if value is None]
    if nulls:
        raise ValidationFailed(f"{nulls[0].field}: must not be null", nulls)
    return given
