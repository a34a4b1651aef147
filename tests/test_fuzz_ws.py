"""Hypothesis-generated WebSocket frames against a live service: whatever a
client sends, the socket stays served, every answer is a documented frame, and
the log holds no traceback, no unhandled error and no token."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import Caller, create_session
from tests.ws_helpers import connect, frames_before_pong

SERVER_FRAMES = {
    "connected",
    "message",
    "message_updated",
    "message_deleted",
    "session_updated",
    "session_deleted",
    "presence",
    "typing",
    "pong",
    "auth_ok",
    "error",
    "permission_changed",
}
ERROR_CODES = {
    "INVALID_JSON",
    "UNKNOWN_TYPE",
    "PERMISSION_DENIED",
    "INVALID_CONTENT",
    "INVALID_TOKEN",
    "RATE_LIMITED",
    "SEND_FAILED",
}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
deep = st.integers(1, 300).map(lambda n: json.loads('{"a":' * n + "1" + "}" * n))
frame_objects = st.fixed_dictionaries(
    {"type": st.sampled_from(["message", "typing", "ping", "auth", "bogus"]) | json_values},
    optional={
        "content": st.text(max_size=200) | json_values,
        "message_type": st.sampled_from(["user", "assistant", "system", "other"]) | json_values,
        "metadata": json_values | deep,
        "client_msg_id": st.text(max_size=80) | json_values,
        "is_typing": json_values,
        "access_token": st.text(max_size=60) | json_values,
    },
)
raw_frames = st.one_of(
    frame_objects.map(lambda f: ("text", json.dumps(f))),
    st.text(max_size=100).map(lambda t: ("text", t)),
    st.binary(max_size=100).map(lambda b: ("binary", b)),
    json_values.map(lambda v: ("text", json.dumps(v))),
)


@pytest.fixture
async def live(client: Any, writer: Caller) -> Any:
    session = await create_session(client, writer, is_shared=True)
    ws, _ = await connect(client, writer, session["id"])
    yield ws
    await ws.close()


@settings(
    max_examples=150,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(frames=st.lists(raw_frames, min_size=1, max_size=12))
async def test_any_frames_get_documented_answers_and_leave_the_socket_served(
    live: Any, writer: Caller, caplog: pytest.LogCaptureFixture, frames: list[tuple[str, Any]]
) -> None:
    caplog.clear()
    with caplog.at_level(logging.DEBUG):
        for kind, payload in frames:
            if kind == "binary":
                await live.send_bytes(payload)
            else:
                await live.send_str(payload)
        answers = await frames_before_pong(live)  # the socket is still served
    assert not live.closed
    for answer in answers:
        assert answer["type"] in SERVER_FRAMES, answer
        if answer["type"] == "error":
            assert answer["code"] in ERROR_CODES, answer
    text = "\n".join(record.getMessage() for record in caplog.records)
    assert "unhandled_error" not in text and "Traceback" not in text
    assert writer.token not in text
    assert not any(r.exc_info for r in caplog.records if r.name.startswith("chatsvc"))
