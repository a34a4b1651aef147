"""Domain errors. Code below the api layer raises these; one middleware
(:mod:`chatsvc.http.problems`) turns them into RFC 9457 problem JSON."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from chatsvc.policy import Action


@dataclass(frozen=True, slots=True)
class FieldError:
    field: str
    message: str


class ChatError(Exception):
    status: int = 500
    code: str = "INTERNAL_ERROR"
    title: str = "Internal Server Error"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class NotFound(ChatError):
    status, code, title = 404, "NOT_FOUND", "Not Found"


class Conflict(ChatError):
    status, code, title = 409, "CONFLICT", "Conflict"


class AccessDenied(ChatError):
    status, code, title = 403, "PERMISSION_DENIED", "Forbidden"

    def __init__(self, detail: str, action: Action | None = None) -> None:
        super().__init__(detail)
        self.action = action


class ValidationFailed(ChatError):
    status, code, title = 400, "VALIDATION_ERROR", "Bad Request"

    def __init__(self, detail: str, errors: list[FieldError] | None = None) -> None:
        super().__init__(detail)
        self.errors = errors or []


class Unauthenticated(ChatError):
    status, code, title = 401, "AUTHENTICATION_REQUIRED", "Unauthorized"

    def __init__(
        self, detail: str = "Authentication required", invalid_token: bool = False
    ) -> None:
        super().__init__(detail)
        self.invalid_token = invalid_token
        if invalid_token:
            self.code = "INVALID_TOKEN"


class RateLimited(ChatError):
    status, code, title = 429, "RATE_LIMITED", "Too Many Requests"

    def __init__(self, retry_after: int) -> None:
        super().__init__("Too many messages; slow down")
        self.retry_after = retry_after


class ServiceUnavailable(ChatError):
    status, code, title = 503, "SERVICE_UNAVAILABLE", "Service Unavailable"
