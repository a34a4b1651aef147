"""Log output that is safe by construction: structlog renders every record.

One handler on the root logger, one :class:`structlog.stdlib.ProcessorFormatter`,
so chatsvc's loggers and every library's (``aiohttp.server``, ``aiohttp.web``,
``aiohttp.websocket``, SQLAlchemy, alembic, ``py.warnings``) come out the same
way, one record per line:

``keyvalue`` (the default)
    ``ts=2026-01-01T12:00:00.123Z level=INFO logger=chatsvc.access msg="event=http ..."``.
    A value is written bare only when it is made of harmless characters;
    otherwise it is quoted, with ``"``, ``\\`` and every non-printable character
    escaped, so no newline, NUL or other control character is ever written raw.
    The %-style message the code logs (``log.info("event=x a=%s", ...)``) is one
    value, ``msg``: ``event=...`` stays greppable inside it.
``json``
    One JSON object per line: ``ts``, ``level``, ``logger``, ``event`` (the
    message's ``event=`` name), ``msg``, then any ``exception``/``error``/``detail``.

Before rendering, every string -- the message, an exception's traceback, any
field -- goes through :func:`redact`: bearer tokens, JWTs, ``access_token=``-like
values, ``?code=``, and ``Cookie``/``Set-Cookie``/``Authorization`` header values
become ``[REDACTED]``. An HTTP parser error (a malformed request, logged by
``aiohttp.server`` with the offending line in its message) is reduced to one
line: its class and a short reason, no traceback.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Literal, TextIO

import orjson
import structlog
from aiohttp.http_exceptions import HttpProcessingError
from structlog.stdlib import ProcessorFormatter
from structlog.typing import EventDict, WrappedLogger

LogFormat = Literal["keyvalue", "json"]
LOG_FORMATS: tuple[LogFormat, ...] = ("keyvalue", "json")
REDACTED = "[REDACTED]"

# Library loggers that write through the same handler (they only propagate to it).
LIBRARY_LOGGERS = ("aiohttp.server", "aiohttp.access", "aiohttp.web", "aiohttp.websocket")

# --- redaction ---------------------------------------------------------------------------

_SECRET_PARAMS = r"access_token|refresh_token|id_token|client_secret"  # noqa: S105 (names)
_END = r"\r\n'\"\\"  # a header value ends at a line break, or at a quote or escape in a repr
_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # Header values, also inside a repr of raw request bytes or of a headers mapping.
    (
        re.compile(rf"(?i)(\b(?:set-)?cookie['\"]?\s*:\s*['\"]?)[^{_END}]+"),
        rf"\g<1>{REDACTED}",
    ),
    (
        re.compile(rf"(?i)(\b(?:proxy-)?authorization['\"]?\s*:\s*['\"]?)[^{_END}]+"),
        rf"\g<1>{REDACTED}",
    ),
    # A bearer token anywhere else ("Bearer x", "Bearer%20x", "Bearer+x").
    (re.compile(r"(?i)\b(bearer)(\s+|%20|\+)[^\s'\"\\,;&]+"), rf"\g<1>\g<2>{REDACTED}"),
    (re.compile(r"(?i)\b(basic\s+)[A-Za-z0-9+/]{8,}={0,2}"), rf"\g<1>{REDACTED}"),
    # Query strings and forms, plain or percent-encoded: access_token=..., ...&code=...
    (
        re.compile(rf"(?i)\b({_SECRET_PARAMS})(=|%3D)[^&\s'\"\\;,#]*"),
        rf"\g<1>\g<2>{REDACTED}",
    ),
    (re.compile(r"(?i)([?&]code(?:=|%3D))[^&\s'\"\\;,#]*"), rf"\g<1>{REDACTED}"),
    # JSON and reprs: "access_token": "..."
    (
        re.compile(rf"(?i)([\"']?(?:{_SECRET_PARAMS})[\"']?\s*:\s*[\"'])[^\"']*"),
        rf"\g<1>{REDACTED}",
    ),
    # JWTs: a base64url JSON header ("eyJ"), with its other segments or cut short;
    # and any three long base64url segments.
    (re.compile(r"\beyJ[A-Za-z0-9_-]{2,}(?:\.[A-Za-z0-9_-]*){0,2}"), REDACTED),
    (re.compile(r"\b[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{16,}"), REDACTED),
    # Fernet tokens (the session cookie's value).
    (re.compile(r"\bgAAAAA[A-Za-z0-9_=-]{20,}"), REDACTED),
)


def redact(text: str) -> str:
    """``text`` with every credential-looking part replaced by ``[REDACTED]``."""
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def _redact_deep(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, Mapping):
        return {_redact_deep(k): _redact_deep(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_redact_deep(v) for v in value]
    return value


# --- processors ------------------------------------------------------------------------------


def _exception_of(exc_info: Any) -> BaseException | None:
    if isinstance(exc_info, BaseException):
        return exc_info
    if isinstance(exc_info, tuple) and len(exc_info) == 3:
        return exc_info[1] if isinstance(exc_info[1], BaseException) else None
    if exc_info is True:
        return sys.exc_info()[1]
    return None


def short_reason(exc: BaseException) -> str:
    """An exception's message cut before anything it quotes (a header line, the start
    of a URL): ``Missing expected LF after header value``, ``Got more than 8190 bytes
    when reading``. At most 100 characters, redacted."""
    text = exc.message if isinstance(exc, HttpProcessingError) else str(exc)
    text = re.split(r"[:\n\r'\"(]", text or "", maxsplit=1)[0].strip()
    return redact(text[:100])


def _parser_errors_in_one_line(_: WrappedLogger, __: str, ed: EventDict) -> EventDict:
    exc = _exception_of(ed.get("exc_info"))
    if isinstance(exc, HttpProcessingError):
        del ed["exc_info"]
        ed["error"] = type(exc).__name__
        ed["detail"] = short_reason(exc)
    return ed


def _timestamp(created: float) -> str:
    return datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


def _base_fields(_: WrappedLogger, method: str, ed: EventDict) -> EventDict:
    record: logging.LogRecord | None = ed.get("_record")
    ed["ts"] = _timestamp(record.created if record else datetime.now(UTC).timestamp())
    ed["level"] = record.levelname if record else method.upper()
    ed["logger"] = record.name if record else ed.get("logger", "-")
    message = ed.pop("event", "")
    ed["msg"] = message if isinstance(message, str) else repr(message)
    return ed


def _redact_all(_: WrappedLogger, __: str, ed: EventDict) -> EventDict:
    return {key: _redact_deep(value) for key, value in ed.items()}


FIRST_KEYS = ("ts", "level", "logger", "event", "msg")


def _ordered(ed: EventDict) -> dict[str, Any]:
    ordered = {key: ed[key] for key in FIRST_KEYS if key in ed}
    ordered.update((k, v) for k, v in ed.items() if k not in ordered)
    return ordered


# --- key=value -------------------------------------------------------------------------------

_BARE = re.compile(r"[A-Za-z0-9_.,:/@+%*\[\]-]+")
_NAMED_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape_char(ch: str) -> str:
    named = _NAMED_ESCAPES.get(ch)
    if named is not None:
        return named
    if ch.isprintable():
        return ch
    code = ord(ch)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def quote(value: str) -> str:
    """One key=value value: bare if harmless, else quoted with every control
    character (and ``"``, ``\\``) escaped. Never contains a raw line break or NUL."""
    if value and _BARE.fullmatch(value):
        return value
    if value.isprintable() and '"' not in value and "\\" not in value:
        return f'"{value}"'
    return '"' + "".join(map(_escape_char, value)) + '"'


def _to_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if value is None or isinstance(value, bool | int | float):
        return str(value)
    return redact(repr(value))


def render_keyvalue(_: WrappedLogger, __: str, ed: EventDict) -> str:
    return " ".join(
        f"{quote(str(key))}={quote(_to_text(value))}" for key, value in _ordered(ed).items()
    )


# --- JSON ----------------------------------------------------------------------------------

_EVENT_NAME = re.compile(r"(?:^|\s)event=([A-Za-z0-9_.:-]+)")
# Valid raw inside a JSON string, yet line breaks to str.splitlines() and to some readers.
_JSON_LINE_BREAKS = {0x85: "\\u0085", 0x2028: "\\u2028", 0x2029: "\\u2029"}


def _event_name(_: WrappedLogger, __: str, ed: EventDict) -> EventDict:
    match = _EVENT_NAME.search(ed.get("msg", ""))
    if match and "event" not in ed:
        ed["event"] = match.group(1)
    return ed


def _json_default(value: Any) -> str:
    return redact(repr(value))


def _json_safe(value: Any) -> Any:
    if isinstance(value, str):  # lone surrogates (from undecodable bytes) are not JSON
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, Mapping):
        return {str(_json_safe(k)): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return _json_safe(_json_default(value)) if not isinstance(value, int | float) else value


def render_json(_: WrappedLogger, __: str, ed: EventDict) -> str:
    ordered = _ordered(ed)
    try:
        data = orjson.dumps(ordered, default=_json_default, option=orjson.OPT_NON_STR_KEYS)
    except (TypeError, orjson.JSONEncodeError):
        data = orjson.dumps(_json_safe(ordered))
    return data.decode("utf-8").translate(_JSON_LINE_BREAKS)


# --- wiring ---------------------------------------------------------------------------------


def _processors(fmt: LogFormat) -> list[Callable[..., Any]]:
    renderer: list[Callable[..., Any]] = (
        [_event_name, render_json] if fmt == "json" else [render_keyvalue]
    )
    return [
        _parser_errors_in_one_line,
        structlog.processors.StackInfoRenderer(),
        structlog.processors.format_exc_info,
        _base_fields,
        ProcessorFormatter.remove_processors_meta,
        _redact_all,
        *renderer,
    ]


class SafeFormatter(ProcessorFormatter):
    """structlog's formatter; a record that cannot be rendered (a message whose
    arguments do not fit it) still becomes one safe line, not a traceback on stderr."""

    def __init__(self, fmt: LogFormat = "keyvalue") -> None:
        if fmt not in LOG_FORMATS:
            raise ValueError(f"unknown log format {fmt!r}")
        super().__init__(processors=_processors(fmt), use_get_message=True)
        self._render = render_json if fmt == "json" else render_keyvalue

    def format(self, record: logging.LogRecord) -> str:
        try:
            return super().format(record)
        except Exception as exc:
            fallback = {
                "ts": _timestamp(record.created),
                "level": record.levelname,
                "logger": record.name,
                "event": "log_error",
                "msg": f"event=log_error error={type(exc).__name__} template={record.msg!r}",
            }
            if self._render is render_keyvalue:
                del fallback["event"]
            return self._render(None, "", _redact_all(None, "", fallback))


class SafeStreamHandler(logging.StreamHandler):  # type: ignore[type-arg]
    def handleError(self, record: logging.LogRecord) -> None:
        # The stream itself failed (closed, broken pipe): there is nowhere left to
        # report it, and the stdlib's default would print a raw traceback to stderr.
        pass


def make_handler(fmt: LogFormat = "keyvalue", stream: TextIO | None = None) -> logging.Handler:
    handler = SafeStreamHandler(stream or sys.stderr)
    handler.setFormatter(SafeFormatter(fmt))
    return handler


def _log_uncaught(kind: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
    if issubclass(kind, KeyboardInterrupt):
        sys.__excepthook__(kind, exc, tb)
        return
    logging.getLogger("chatsvc").critical(
        "event=crashed error=%s", kind.__name__, exc_info=(kind, exc, tb)
    )


def _log_uncaught_in_thread(args: threading.ExceptHookArgs) -> None:
    if args.exc_value is not None:
        logging.getLogger("chatsvc").error(
            "event=thread_crashed thread=%s error=%s",
            args.thread.name if args.thread else "-",
            args.exc_type.__name__,
            exc_info=(args.exc_type, args.exc_value, args.exc_traceback),
        )


def setup(level: str = "INFO", fmt: LogFormat = "keyvalue", stream: TextIO | None = None) -> None:
    """Route every logger of the process through one safe handler on ``stream`` (stderr)."""
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(make_handler(fmt, stream))
    root.setLevel(level)
    for name in LIBRARY_LOGGERS:
        library = logging.getLogger(name)
        for old in list(library.handlers):
            library.removeHandler(old)
        library.propagate = True
    # aiohttp's own access log would print query strings (WebSocket tokens); chatsvc's
    # (chatsvc.access) does not.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    logging.captureWarnings(True)
    configure_structlog()
    sys.excepthook = _log_uncaught
    threading.excepthook = _log_uncaught_in_thread


def configure_structlog() -> None:
    """structlog's own loggers hand their events to the stdlib's, and so to the one handler."""
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            structlog.stdlib.PositionalArgumentsFormatter(),
            ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
