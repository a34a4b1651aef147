"""Logs are safe by construction: a real ``python run.py`` (production logging,
aiohttp's own loggers included) is sent malformed and hostile requests over a raw
socket; no token reaches its log, no request can forge or break a line, a request
aiohttp's parser refuses is answered with problem JSON, JSON mode writes nothing but
JSON, and shutdown says so. The formatter and redaction are also tested in-process."""

from __future__ import annotations

import io
import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp.http_exceptions import BadHttpMessage, LineTooLong

from chatsvc.auth.dev_issuer import DevIssuer
from chatsvc.http.access_log import duration_ms, loggable_path
from chatsvc.logs import REDACTED, SafeFormatter, configure_structlog, make_handler, redact
from chatsvc.settings import SettingsError, load_settings

ROOT = Path(__file__).resolve().parents[1]
START_TIMEOUT = 30.0
PROBLEM_KEYS = {"type", "title", "status", "detail", "code", "request_id"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Served:
    """``python run.py`` with its stderr in a file."""

    port: int
    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen[bytes]
    tokens: list[str] = field(default_factory=list)

    def raw(self, data: bytes, timeout: float = 5.0) -> Response:
        """Send raw bytes; read the answer until the server closes the connection."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=timeout) as sock:
            sock.sendall(data)
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        return Response(int(status_line.split()[1]), headers, body)

    def get(self, target: str) -> Response:
        return self.raw(
            f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode("latin-1")
        )

    def mint(self) -> str:
        settings = load_settings(environ=self.env)
        token = DevIssuer(settings).mint("alice@example.com", ["Onyx-Writers"])
        self.tokens.append(token)
        return token

    def log_bytes(self) -> bytes:
        return self.log_path.read_bytes()

    def lines(self) -> list[str]:
        return self.log_bytes().decode("utf-8").split("\n")[:-1]

    def wait_for(self, predicate: Callable[[str], bool], count: int = 1) -> list[str]:
        """The log's lines, once at least ``count`` satisfy ``predicate`` (the access
        line is written just after the answer is sent)."""
        deadline = time.monotonic() + 10
        while True:
            lines = self.lines()
            if sum(map(predicate, lines)) >= count or time.monotonic() > deadline:
                return lines
            time.sleep(0.05)

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()


def start(tmp_path: Path, **settings: str) -> Served:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHATSVC_")}
    env.update(
        CHATSVC_DATA_DIR=str(tmp_path),
        CHATSVC_CONFIG=os.devnull,
        CHATSVC_HOST="127.0.0.1",
        CHATSVC_PORT=str(port),
        **{f"CHATSVC_{k}": v for k, v in settings.items()},
    )
    log_path = tmp_path / "stderr.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "run.py"], cwd=ROOT, env=env, stdout=log, stderr=log
        )
    served = Served(port, env, log_path, process)
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        if process.poll() is not None:
            raise AssertionError(f"run.py exited: {log_path.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2):
                return served
        except (urllib.error.URLError, OSError):
            if time.monotonic() > deadline:
                served.stop()
                raise AssertionError(f"run.py not ready: {log_path.read_text()[-3000:]}") from None
            time.sleep(0.1)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    served = start(tmp_path_factory.mktemp("logging"))
    yield served
    served.stop()


def token_parts(token: str, size: int = 12) -> list[str]:
    """Every ``size``-character piece of the token: none may appear in a log."""
    return [token[i : i + size] for i in range(0, len(token) - size + 1)]


def assert_no_part_of(tokens: list[str], text: str) -> None:
    leaked = sorted({part for token in tokens for part in token_parts(token) if part in text})
    assert not leaked, f"token fragments in the log: {leaked[:5]}"


def assert_problem(resp: Response, status: int, code: str) -> dict[str, Any]:
    assert resp.status == status, resp
    assert resp.headers["content-type"].startswith("application/problem+json")
    body = resp.json()
    assert set(body) >= PROBLEM_KEYS
    assert (body["status"], body["code"]) == (status, code)
    assert body["request_id"] == resp.headers["x-request-id"]
    return body


# --- a token reaches the log (malformed requests) ---------------------------------------------


def test_a_bare_cr_after_a_bearer_token_is_a_problem_and_no_part_of_the_token_is_logged(served):
    token = served.mint()
    resp = served.raw(
        b"GET /api/me HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
        + token.encode()
        + b"\rX: 1\r\n\r\n"
    )
    body = assert_problem(resp, 400, "BAD_REQUEST")
    assert b"Authorization" not in resp.body and token.split(".")[0].encode() not in resp.body

    request_id = body["request_id"]
    lines = served.wait_for(lambda line: request_id in line, count=2)
    mine = [line for line in lines if request_id in line]
    assert len(mine) == 2, mine  # the one-line parser error and the access line
    bad = next(line for line in mine if "event=bad_request" in line)
    assert "logger=aiohttp.server" in bad
    assert "error=BadHttpMessage" in bad
    text = served.log_bytes().decode()
    assert "Traceback" not in text
    assert_no_part_of([token], text)


def test_a_long_url_with_an_access_token_is_a_problem_and_no_part_of_the_token_is_logged(served):
    token = served.mint()
    target = f"/api/chat/sessions/x/ws?access_token={token}&pad={'a' * 9000}"
    resp = served.raw(f"GET {target} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    body = assert_problem(resp, 400, "BAD_REQUEST")
    assert b"access_token" not in resp.body

    lines = served.wait_for(lambda line: body["request_id"] in line, count=2)
    bad = [line for line in lines if body["request_id"] in line and "event=bad_request" in line]
    assert len(bad) == 1 and "error=LineTooLong" in bad[0], bad
    text = served.log_bytes().decode()
    assert "Traceback" not in text
    assert_no_part_of([token], text)


def test_a_request_line_with_a_raw_space_is_a_problem_too(served):
    resp = served.raw(
        b"GET /x%0a2026-01-01 event=access_denied HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    assert_problem(resp, 400, "BAD_REQUEST")
    assert b"access_denied" not in resp.body


def test_tokens_of_well_formed_requests_stay_out_of_the_log_too(served):
    token = served.mint()
    resp = served.raw(
        f"GET /api/me?access_token={token} HTTP/1.1\r\nHost: x\r\n"
        f"Authorization: Bearer {token}\r\nCookie: chatsvc_session={token}\r\n"
        "Connection: close\r\n\r\n".encode()
    )
    assert resp.status == 200
    served.wait_for(lambda line: "path=/api/me " in line)
    assert_no_part_of(served.tokens, served.log_bytes().decode())


# --- log forging without a token ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "logged_path"),
    [
        ("/x%0a2026-01-01%20event=access_denied", "/x%0a2026-01-01%20event%3Daccess_denied"),
        ("/x%0d%0a2026-01-01%20level=ERROR", "/x%0d%0a2026-01-01%20level%3DERROR"),
        ("/x%00y", "/x%00y"),
        ('/x"%22\\', "/x%22%22%5C"),
    ],
    ids=["LF", "CRLF", "NUL", "quote"],
)
def test_a_path_cannot_forge_or_break_a_line(served, target, logged_path):
    resp = served.get(target)
    assert resp.status == 404
    request_id = resp.headers["x-request-id"]
    lines = served.wait_for(lambda line: request_id in line)
    mine = [line for line in lines if request_id in line]
    assert len(mine) == 1, mine
    assert f"path={logged_path} " in mine[0]
    assert mine[0].startswith("ts=")
    data = served.log_bytes()
    assert b"\x00" not in data and b"\r" not in data
    assert all(line.startswith("ts=") for line in served.lines())
    assert not any("event=access_denied" in line for line in served.lines())


def test_access_durations_are_rounded(served):
    resp = served.get("/healthz")
    lines = served.wait_for(lambda line: resp.headers["x-request-id"] in line)
    line = next(line for line in lines if resp.headers["x-request-id"] in line)
    value = re.search(r"duration_ms=([0-9.]+) ", line).group(1)  # type: ignore[union-attr]
    assert len(value.partition(".")[2]) <= 2, line


# --- JSON mode and shutdown ---------------------------------------------------------------------


def test_json_mode_writes_only_json_lines_and_a_stopped_line(tmp_path):
    served = start(tmp_path, LOG_FORMAT="json")
    try:
        token = served.mint()
        served.raw(
            b"GET /api/me HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
            + token.encode()
            + b"\rX: 1\r\n\r\n"
        )
        served.get("/x%0a2026-01-01%20event=access_denied")
        served.get("/x%00y%E2%80%A8%C2%85")
        served.raw(b"\x16\x03\x01 not http\r\n\r\n")
        served.get(f"/api/me?access_token={token}")
        served.wait_for(lambda line: '"event":"http"' in line, count=4)
    finally:
        assert served.stop() == 0
    data = served.log_bytes()
    text = data.decode("utf-8")
    assert text.endswith("\n")
    assert text.splitlines() == text.split("\n")[:-1]  # no other line break anywhere
    records = [json.loads(line) for line in text.splitlines()]
    for record in records:
        assert list(record)[:3] == ["ts", "level", "logger"]
        assert isinstance(record["msg"], str)
    events = [record.get("event") for record in records]
    assert {"listening", "http", "bad_request", "stopped"} <= set(events)
    assert events[-1] == "stopped"
    assert "Traceback" not in text
    assert_no_part_of([token], text)


def test_shutdown_writes_a_stopped_line_after_the_runner_cleans_up(tmp_path):
    served = start(tmp_path)
    served.get("/healthz")
    assert served.stop() == 0
    lines = served.lines()
    assert "event=listening" in next(line for line in lines if "event=listening" in line)
    assert 'msg="event=stopped signal=SIGTERM"' in lines[-1], lines[-3:]
    stopping = next(i for i, line in enumerate(lines) if "event=stopping" in line)
    assert stopping < len(lines) - 1


def test_an_unknown_log_format_is_refused():
    with pytest.raises(SettingsError, match="CHATSVC_LOG_FORMAT"):
        load_settings(environ={"CHATSVC_LOG_FORMAT": "xml"}, config_file=Path("/nonexistent"))
    assert load_settings(environ={}, config_file=Path("/nonexistent")).log_format == "keyvalue"


# --- the formatter, in-process ----------------------------------------------------------------------

JWT = (
    "eyJhbGciOiJSUzI1NiIsImtpZCI6ImsxIn0"
    ".eyJzdWIiOiJhbGljZUBleGFtcGxlLmNvbSIsImdyb3VwcyI6WyJPbnl4LVdyaXRlcnMiXX0"
    ".SgnaTuReSgnaTuReSgnaTuReSgnaTuReSgnaTuRe_-x"
)


@pytest.fixture(params=["keyvalue", "json"])
def capture(request: pytest.FixtureRequest) -> Iterator[tuple[logging.Logger, io.StringIO]]:
    """A logger writing through the production handler into a string."""
    stream = io.StringIO()
    logger = logging.getLogger(f"tests.logging.{request.param}")
    handler = make_handler(request.param, stream)
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    yield logger, stream
    logger.removeHandler(handler)


@pytest.mark.parametrize(
    "secret_text",
    [
        f"Authorization: Bearer {JWT}",
        f"authorization: bearer {JWT}\\rX: 1",
        f"b'Authorization: Bearer {JWT}\\rX: 1'",
        f"token {JWT} seen",
        f"/ws?access_token={JWT}&x=1",
        f"/ws?x=1&refresh_token={JWT}",
        f"id_token={JWT}",
        f"access_token%3D{JWT}",
        "/auth/callback?state=s&code=SplxlOBeZQQYbYS6WxSbIA",
        f"Cookie: chatsvc_session={JWT}; other=1",
        "Set-Cookie: chatsvc_session=gAAAAABmXyZsecretsecretsecretsecret; HttpOnly",
        f"{{'Cookie': 'chatsvc_session={JWT}'}}",
        f'{{"access_token": "{JWT}", "token_type": "Bearer"}}',
        "Authorization: Basic YWxpY2U6c2VjcmV0cGFzc3dvcmQ=",
        JWT[:60],  # a token cut short (the first bytes of an over-long URL)
    ],
)
def test_redaction_removes_every_credential(secret_text):
    redacted = redact(secret_text)
    assert REDACTED in redacted
    for secret in (JWT, "SplxlOBeZQQYbYS6WxSbIA", "gAAAAABmXyZ", "YWxpY2U6c2VjcmV0"):
        assert_no_part_of([secret], redacted)


@pytest.mark.parametrize(
    "harmless",
    [
        "event=ws_closed conn=ws3 code=1001 reason=going_away",
        "logger=chatsvc.http.problems path=/api/chat/sessions/1",
        "event=token_rejected reason=expired source=header",
    ],
)
def test_redaction_leaves_ordinary_fields_alone(harmless):
    assert redact(harmless) == harmless


def test_tracebacks_are_redacted_and_kept_on_one_line(capture):
    logger, stream = capture
    try:
        raise ValueError(f"cannot use Authorization: Bearer {JWT}\nsecond line")
    except ValueError:
        logger.exception("event=boom id=%s", 7)
    out = stream.getvalue()
    assert out.count("\n") == 1
    assert "Traceback" in out and "ValueError" in out
    assert "event=boom id=7" in out
    assert_no_part_of([JWT], out)


def test_an_aiohttp_parser_error_is_one_short_line(capture):
    logger, stream = capture
    for exc in (
        BadHttpMessage(
            f"Missing expected LF after header value:\n\n  b'Authorization: Bearer {JWT}\\rX: 1'"
        ),
        LineTooLong(f"/ws?access_token={JWT}"[:40] + "...", 8190),
    ):
        logger.error("Error handling request from %s", "127.0.0.1", exc_info=exc)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    assert "Traceback" not in stream.getvalue()
    assert "BadHttpMessage" in lines[0] and "Missing expected LF after header value" in lines[0]
    assert "LineTooLong" in lines[1] and "Got more than 8190 bytes when reading" in lines[1]
    assert "access_token" not in lines[1] and "Authorization" not in lines[0]


@pytest.mark.parametrize(
    "value", ["a\nb", "a\r\nb", "a\x00b", "a\x1b[31mb", "a\u2028b", "a\x85b", "a\udc80b", 'a"b\\']
)
def test_no_control_character_is_written_raw(capture, value):
    logger, stream = capture
    logger.warning("event=hostile value=%s", value)
    out = stream.getvalue()
    assert out.endswith("\n") and out.count("\n") == 1
    assert out[:-1].isprintable(), repr(out)
    if "json" in logger.name:
        assert json.loads(out)["msg"].startswith("event=hostile value=a")
    else:
        assert re.fullmatch(r'ts=\S+ level=WARNING logger=\S+ msg="event=hostile value=a.*"\n', out)


def test_percent_style_messages_render_as_one_value(capture):
    logger, stream = capture
    logger.info("event=access_denied request_id=%s action=%s", "r1", "session.read")
    out = stream.getvalue()
    if "json" in logger.name:
        record = json.loads(out)
        assert record["event"] == "access_denied"
        assert record["msg"] == "event=access_denied request_id=r1 action=session.read"
        assert record["level"] == "INFO"
    else:
        assert out.endswith(
            ' level=INFO logger=tests.logging.keyvalue msg="event=access_denied request_id=r1 action=session.read"\n'
        )


@pytest.mark.parametrize("fmt", ["keyvalue", "json"])
def test_a_message_whose_arguments_do_not_fit_is_still_one_line(fmt):
    record = logging.makeLogRecord(
        {"name": "chatsvc", "levelno": 20, "levelname": "INFO", "msg": "event=odd a=%s b=%s"}
    )
    record.args = ("only one",)
    out = SafeFormatter(fmt).format(record)
    assert "\n" not in out and "event=log_error" in out and "TypeError" in out


def test_structlog_loggers_use_the_same_output(capture):
    import structlog

    logger, stream = capture
    configure_structlog()
    structlog.stdlib.get_logger(logger.name).bind(token=JWT).info("event=native n=%s", 1)
    out = stream.getvalue()
    assert "event=native n=1" in out and out.count("\n") == 1
    assert_no_part_of([JWT], out)


# --- the access log's pieces ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "logged"),
    [
        ("/api/me", "/api/me"),
        ("/api/me?access_token=x", "/api/me"),
        ("/x%0ay", "/x%0ay"),
        ("/a=b c", "/a%3Db%20c"),
        ("/é\udc80", "/%C3%A9%80"),
    ],
)
def test_loggable_path(raw, logged):
    assert loggable_path(raw) == logged


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.00048213, "0.48"), (0.0041, "4.10"), (0.012345, "12.3"), (0.48213, "482"), (-1, "0.00")],
)
def test_durations_are_rounded_to_their_precision(seconds, text):
    assert duration_ms(seconds) == text
