"""Contract section 4, "Limits and bad input": every row answers 400 (or 413,
429) as problem JSON naming the field, and nothing is stored."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import orjson
import pytest

from chatsvc.api import routing
from tests.conftest import create_session, send_message, sign_in


@pytest.fixture(autouse=True)
def _verify_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every answer must be what its response model writes (chatsvc.api.models)."""
    monkeypatch.setattr(routing, "VERIFY_ANSWERS", True)


@dataclass(frozen=True)
class Raw:
    """A body sent as these exact bytes (not JSON-encoded by the test)."""

    data: bytes


def json_of_bytes(size: int, char: str = "x") -> dict[str, str]:
    """An object whose compact UTF-8 JSON is exactly ``size`` bytes (``{"k":"..."}``)."""
    payload = size - len(b'{"k":""}')
    assert payload % len(char.encode()) == 0
    return {"k": char * (payload // len(char.encode()))}


OVER_JSON = json_of_bytes(16_385)
# Under the limit in characters, over it in bytes: the limit counts bytes.
OVER_JSON_MULTIBYTE = json_of_bytes(16_386, "é")

SESSIONS = "/api/chat/sessions"
SESSION = "/api/chat/sessions/{session}"
MESSAGES = "/api/chat/sessions/{session}/messages"
MESSAGE = "/api/chat/messages/{message}"
COLLABORATORS = "/api/chat/sessions/{session}/collaborators"

TITLE_REQUIRED = "Chat session title is required"
CONTENT_REQUIRED = "Message content is required"

# (id, method, path, body, field named in errors[], detail or None)
BAD_BODIES: list[tuple[str, str, str, Any, str, str | None]] = [
    # blank
    ("create: empty title", "POST", SESSIONS, {"title": ""}, "title", TITLE_REQUIRED),
    ("create: blank title", "POST", SESSIONS, {"title": " \t\n "}, "title", TITLE_REQUIRED),
    ("update: blank title", "PUT", SESSION, {"title": "  "}, "title", TITLE_REQUIRED),
    ("send: empty content", "POST", MESSAGES, {"content": ""}, "content", CONTENT_REQUIRED),
    ("send: blank content", "POST", MESSAGES, {"content": "\n  "}, "content", CONTENT_REQUIRED),
    ("edit: blank content", "PUT", MESSAGE, {"content": " "}, "content", CONTENT_REQUIRED),
    # too long: characters are code points
    ("create: title 201", "POST", SESSIONS, {"title": "é" * 201}, "title", None),
    ("update: title 201", "PUT", SESSION, {"title": "😀" * 201}, "title", None),
    (
        "create: description 2001",
        "POST",
        SESSIONS,
        {"title": "t", "description": "d" * 2001},
        "description",
        None,
    ),
    ("update: description 2001", "PUT", SESSION, {"description": "d" * 2001}, "description", None),
    ("send: content 32001", "POST", MESSAGES, {"content": "c" * 32_001}, "content", None),
    ("edit: content 32001", "PUT", MESSAGE, {"content": "c" * 32_001}, "content", None),
    # too big as compact UTF-8 JSON
    (
        "create: chat_settings",
        "POST",
        SESSIONS,
        {"title": "t", "chat_settings": OVER_JSON},
        "chat_settings",
        None,
    ),
    ("update: chat_settings", "PUT", SESSION, {"chat_settings": OVER_JSON}, "chat_settings", None),
    (
        "send: metadata",
        "POST",
        MESSAGES,
        {"content": "c", "metadata": OVER_JSON},
        "metadata",
        None,
    ),
    (
        "send: metadata in bytes",
        "POST",
        MESSAGES,
        {"content": "c", "metadata": OVER_JSON_MULTIBYTE},
        "metadata",
        None,
    ),
    ("edit: metadata", "PUT", MESSAGE, {"metadata": OVER_JSON}, "metadata", None),
    # unknown fields
    ("create: unknown", "POST", SESSIONS, {"title": "t", "colour": "red"}, "colour", None),
    ("update: unknown", "PUT", SESSION, {"owner": "me"}, "owner", None),
    ("send: unknown", "POST", MESSAGES, {"content": "c", "seq": 7}, "seq", None),
    ("edit: unknown", "PUT", MESSAGE, {"content": "c", "is_edited": False}, "is_edited", None),
    ("add: unknown", "POST", COLLABORATORS, {"email": "a@b.c", "role": "x"}, "role", None),
    # strict types
    ("create: 'true'", "POST", SESSIONS, {"title": "t", "is_shared": "true"}, "is_shared", None),
    ("update: 'true'", "PUT", SESSION, {"is_shared": "true"}, "is_shared", None),
    ("create: 1 as title", "POST", SESSIONS, {"title": 1}, "title", None),
    ("send: 1 as content", "POST", MESSAGES, {"content": 1}, "content", None),
    ("edit: 1 as content", "PUT", MESSAGE, {"content": 1}, "content", None),
    ("add: 1 as email", "POST", COLLABORATORS, {"email": 1}, "email", None),
    (
        "send: list as metadata",
        "POST",
        MESSAGES,
        {"content": "c", "metadata": []},
        "metadata",
        None,
    ),
    (
        "send: unknown type",
        "POST",
        MESSAGES,
        {"content": "c", "message_type": "robot"},
        "message_type",
        None,
    ),
    (
        "send: empty client_msg_id",
        "POST",
        MESSAGES,
        {"content": "c", "client_msg_id": ""},
        "client_msg_id",
        None,
    ),
    (
        "send: client_msg_id 65",
        "POST",
        MESSAGES,
        {"content": "c", "client_msg_id": "i" * 65},
        "client_msg_id",
        None,
    ),
    # null for a field
    ("create: null title", "POST", SESSIONS, {"title": None}, "title", None),
    (
        "create: null description",
        "POST",
        SESSIONS,
        {"title": "t", "description": None},
        "description",
        None,
    ),
    ("update: null title", "PUT", SESSION, {"title": None}, "title", None),
    ("update: null is_shared", "PUT", SESSION, {"is_shared": None}, "is_shared", None),
    ("update: null settings", "PUT", SESSION, {"chat_settings": None}, "chat_settings", None),
    (
        "send: null metadata",
        "POST",
        MESSAGES,
        {"content": "c", "metadata": None},
        "metadata",
        None,
    ),
    ("edit: null content", "PUT", MESSAGE, {"content": None}, "content", None),
    # U+0000: PostgreSQL text cannot hold it, so no database accepts it
    ("create: NUL in title", "POST", SESSIONS, {"title": "a\x00b"}, "title", None),
    ("update: NUL in description", "PUT", SESSION, {"description": "\x00"}, "description", None),
    ("send: NUL in content", "POST", MESSAGES, {"content": "a\x00"}, "content", None),
    (
        "send: NUL in client_msg_id",
        "POST",
        MESSAGES,
        {"content": "c", "client_msg_id": "\x00"},
        "client_msg_id",
        None,
    ),
    ("edit: NUL in content", "PUT", MESSAGE, {"content": "\x00"}, "content", None),
    ("add: NUL in email", "POST", COLLABORATORS, {"email": "a\x00@example.com"}, "email", None),
    # missing required fields
    ("create: no title", "POST", SESSIONS, {}, "title", None),
    ("send: no content", "POST", MESSAGES, {}, "content", None),
    ("add: no email", "POST", COLLABORATORS, {}, "email", None),
    ("edit: nothing to change", "PUT", MESSAGE, {}, "body", None),
]

BODY_ROUTES = [
    ("POST", SESSIONS),
    ("PUT", SESSION),
    ("POST", MESSAGES),
    ("PUT", MESSAGE),
    ("POST", COLLABORATORS),
]

NOT_AN_OBJECT = [
    ("malformed JSON", Raw(b'{"title": "t",')),
    ("a list", Raw(b'[{"title": "t"}]')),
    ("a string", Raw(b'"title"')),
    ("a number", Raw(b"42")),
    ("null", Raw(b"null")),
    ("empty", Raw(b"")),
    ("not UTF-8", Raw(b'{"title": "\xff\xfe"}')),
]

# (id, path, query, field)
BAD_QUERIES = [
    (f"{name}: {query}", path, query, field)
    for name, path, limit_max in (("sessions", SESSIONS, 200), ("messages", MESSAGES, 500))
    for query, field in (
        ("limit=0", "limit"),
        (f"limit={limit_max + 1}", "limit"),
        ("limit=-1", "limit"),
        ("limit=ten", "limit"),
        ("limit=1.5", "limit"),
        ("offset=-1", "offset"),
        ("offset=x", "offset"),
        ("offset=2.0", "offset"),
    )
] + [
    ("messages: after_seq=-1", MESSAGES, "after_seq=-1", "after_seq"),
    ("messages: after_seq=x", MESSAGES, "after_seq=x", "after_seq"),
    ("messages: before_seq=-2", MESSAGES, "before_seq=-2", "before_seq"),
    ("sessions: include_messages=maybe", SESSIONS, "include_messages=maybe", "include_messages"),
    ("session: include_messages=yes", SESSION, "include_messages=yes", "include_messages"),
    ("audit: limit=0", "/api/chat/audit", "limit=0", "limit"),
    ("audit: user_id=x", "/api/chat/audit", "user_id=x", "user_id"),
    ("audit: action with NUL", "/api/chat/audit", "action=a%00b", "action"),
    ("audit: action of 65", "/api/chat/audit", "action=" + "a" * 65, "action"),
]


@dataclass
class Stored:
    session_id: str
    message_id: str


@pytest.fixture
async def stored(client, writer, admin) -> Stored:
    await sign_in(client, admin)
    session = await create_session(client, writer, title="Kept", chat_settings={"a": 1})
    message = await send_message(client, writer, session["id"], "kept", metadata={"b": 2})
    return Stored(session["id"], message["id"])


async def everything(client, admin, stored: Stored) -> dict[str, Any]:
    """All that an admin can read: sessions, the messages and the collaborators."""
    found: dict[str, Any] = {}
    for key, path in (
        ("sessions", "/api/chat/sessions?limit=200&include_messages=true"),
        ("messages", f"/api/chat/sessions/{stored.session_id}/messages?limit=500"),
        ("collaborators", f"/api/chat/sessions/{stored.session_id}/collaborators"),
    ):
        resp = await client.get(path, headers=admin.headers)
        assert resp.status == 200
        found[key] = await resp.json()
    return found


def fill(path: str, stored: Stored) -> str:
    return path.format(session=stored.session_id, message=stored.message_id)


async def send(client, who, method: str, path: str, body: Any):
    if isinstance(body, Raw):
        headers = {**who.headers, "Content-Type": "application/json"}
        return await client.request(method, path, data=body.data, headers=headers)
    return await client.request(method, path, json=body, headers=who.headers)


async def assert_problem(resp, status: int, field: str | None = None) -> dict[str, Any]:
    assert resp.status == status, await resp.text()
    assert resp.content_type == "application/problem+json"
    problem = await resp.json()
    assert problem["status"] == status
    assert problem["request_id"] == resp.headers["X-Request-ID"]
    if field is not None:
        assert field in [error["field"] for error in problem["errors"]], problem
    return problem


async def test_a_bad_body_is_refused_and_nothing_is_stored(client, writer, admin, stored, subtests):
    before = await everything(client, admin, stored)
    for name, method, path, body, field, detail in BAD_BODIES:
        with subtests.test(name):
            resp = await send(client, writer, method, fill(path, stored), body)
            problem = await assert_problem(resp, 400, field)
            assert problem["code"] == "VALIDATION_ERROR"
            if detail is not None:
                assert problem["detail"] == detail
            assert await everything(client, admin, stored) == before


async def test_a_body_that_is_not_a_json_object_is_refused(client, writer, admin, stored, subtests):
    before = await everything(client, admin, stored)
    for method, path in BODY_ROUTES:
        for name, body in NOT_AN_OBJECT:
            with subtests.test(route=f"{method} {path}", body=name):
                resp = await send(client, writer, method, fill(path, stored), body)
                await assert_problem(resp, 400, "body")
                assert await everything(client, admin, stored) == before


async def test_a_bad_query_parameter_is_refused(client, admin, stored, subtests):
    for name, path, query, field in BAD_QUERIES:
        with subtests.test(name):
            resp = await client.get(f"{fill(path, stored)}?{query}", headers=admin.headers)
            await assert_problem(resp, 400, field)


async def test_the_route_level_comes_before_a_bad_query(client, reader, nobody, subtests):
    for who, path, level in [
        (reader, "/api/chat/audit?limit=0&user_id=x", "admin"),
        (nobody, f"{SESSIONS}?limit=--5&include_messages=maybe", "read"),
    ]:
        with subtests.test(path):
            resp = await client.get(path, headers=who.headers)
            problem = await assert_problem(resp, 403)
            assert problem["detail"] == f"Requires {level} permission"


async def test_validation_comes_before_existence(client, writer, subtests):
    missing = Stored(str(uuid.uuid4()), str(uuid.uuid4()))
    for method, path in BODY_ROUTES:
        with subtests.test(f"{method} {path}"):
            resp = await send(client, writer, method, fill(path, missing), {"unknown": True})
            await assert_problem(resp, 400, "unknown")


# --- at the limits ----------------------------------------------------------------

AT_THE_LIMIT = [
    ("title 200 code points", "POST", SESSIONS, {"title": "é" * 200}),
    ("title 200 astral code points", "PUT", SESSION, {"title": "😀" * 200}),
    ("description 2000", "PUT", SESSION, {"description": "d" * 2000}),
    ("chat_settings 16384 bytes", "PUT", SESSION, {"chat_settings": json_of_bytes(16_384)}),
    ("content 32000", "POST", MESSAGES, {"content": "ü" * 32_000}),
    ("metadata 16384 bytes", "PUT", MESSAGE, {"metadata": json_of_bytes(16_384, "é")}),
    ("client_msg_id 64", "POST", MESSAGES, {"content": "c", "client_msg_id": "i" * 64}),
]


async def test_a_value_at_the_limit_is_accepted_and_stored_as_sent(
    client, writer, stored, subtests
):
    for name, method, path, body in AT_THE_LIMIT:
        with subtests.test(name):
            resp = await send(client, writer, method, fill(path, stored), body)
            assert resp.status in (200, 201), await resp.text()
            answer = await resp.json()
            assert {key: answer[key] for key in body} == body


async def test_a_query_parameter_at_the_limit_is_accepted(client, admin, stored, subtests):
    for path, query in [
        (SESSIONS, "limit=200&offset=0"),
        (SESSIONS, "limit=1"),
        (MESSAGES, "limit=500"),
        (MESSAGES, "after_seq=0&before_seq=0"),
        ("/api/chat/audit", "limit=500"),
    ]:
        with subtests.test(f"{path}?{query}"):
            resp = await client.get(f"{fill(path, stored)}?{query}", headers=admin.headers)
            assert resp.status == 200


# The wording of a bad query value: the first bad parameter, named; integers are plain decimal.
QUERY_WORDING = [
    (SESSIONS, "limit=-5", "limit", "must be between 1 and 200"),
    (SESSIONS, "offset=-5", "offset", "must be at least 0"),
    (SESSIONS, "offset=abc", "offset", "must be an integer"),
    (SESSIONS, "limit=--5", "limit", "must be an integer"),
    (SESSIONS, "limit=%2B5", "limit", "must be an integer"),
    (SESSIONS, "limit=%20", "limit", "must be an integer"),
    (SESSIONS, "limit=1234567890123", "limit", "must be an integer"),
    (SESSIONS, "limit=%D9%A3", "limit", "must be an integer"),  # an Arabic-Indic three
    (SESSIONS, "include_messages=", "include_messages", "must be true or false"),
    (SESSIONS, "offset=-1&limit=0", "limit", "must be between 1 and 200"),
    (SESSIONS, "limit=0&limit=5", "limit", "must be between 1 and 200"),  # the first one counts
    (SESSION, "include_messages=yes&limit=0", "include_messages", "must be true or false"),
    (MESSAGES, "limit=501", "limit", "must be between 1 and 500"),
    (MESSAGES, "before_seq=-2", "before_seq", "must be at least 0"),
    ("/api/chat/audit", "user_id=x", "user_id", "must be a UUID"),
    ("/api/chat/audit", "action=a%00b", "action", "must not contain NUL characters"),
    ("/api/chat/audit", "action=" + "a" * 65, "action", "must be at most 64 characters"),
]


async def test_a_bad_query_value_is_worded_as_it_always_was(client, admin, stored, subtests):
    for path, query, field, message in QUERY_WORDING:
        with subtests.test(f"{path}?{query}"):
            resp = await client.get(f"{fill(path, stored)}?{query}", headers=admin.headers)
            problem = await assert_problem(resp, 400)
            assert problem["detail"] == f"{field}: {message}"
            assert problem["errors"] == [{"field": field, "message": message}]


async def test_a_lenient_query_value_is_accepted(client, admin, stored, subtests):
    for path, query in [
        (SESSIONS, "limit=7&offset=007"),  # leading zeros are still a plain decimal
        (SESSIONS, "limit=&offset="),  # empty: the default
        (SESSIONS, "include_messages=TRUE"),
        (SESSIONS, "include_messages=0&unknown=x"),  # an unknown parameter is ignored
        (SESSION, "include_messages=False"),
        (MESSAGES, "after_seq=&before_seq="),
        ("/api/chat/audit", "user_id=&action="),
        ("/api/chat/audit", f"user_id={{{uuid.uuid4()}}}"),  # any form uuid.UUID reads
    ]:
        with subtests.test(f"{path}?{query}"):
            resp = await client.get(f"{fill(path, stored)}?{query}", headers=admin.headers)
            assert resp.status == 200, await resp.text()


# --- body size and rate --------------------------------------------------------------

ONE_MIB = 1024 * 1024


TOO_LARGE = [
    ("create session", "POST", SESSIONS, {"title": "t", "description": "d" * ONE_MIB}),
    ("send", "POST", MESSAGES, {"content": "c" * ONE_MIB}),
    ("edit", "PUT", MESSAGE, {"content": "c" * ONE_MIB}),
]


async def test_a_body_over_one_mib_is_too_large(client, writer, admin, stored, subtests):
    before = await everything(client, admin, stored)
    for name, method, path, body in TOO_LARGE:
        with subtests.test(name):
            raw = Raw(orjson.dumps(body))
            assert len(raw.data) > ONE_MIB
            resp = await send(client, writer, method, fill(path, stored), raw)
            problem = await assert_problem(resp, 413)
            assert problem["code"] == "PAYLOAD_TOO_LARGE"
            assert await everything(client, admin, stored) == before


async def test_too_many_messages_answer_429_with_retry_after(make_client, writer):
    client = await make_client(message_rate=1, message_burst=2)
    session = await create_session(client, writer)
    for n in range(2):
        await send_message(client, writer, session["id"], f"within the burst {n}")
    resp = await client.post(
        f"/api/chat/sessions/{session['id']}/messages",
        json={"content": "one too many"},
        headers=writer.headers,
    )
    problem = await assert_problem(resp, 429)
    assert problem["code"] == "RATE_LIMITED"
    retry_after = resp.headers["Retry-After"]
    assert retry_after.isdigit()
    assert int(retry_after) >= 1
    listed = await client.get(
        f"/api/chat/sessions/{session['id']}/messages", headers=writer.headers
    )
    assert [m["content"] for m in await listed.json()] == [
        "within the burst 0",
        "within the burst 1",
    ]


async def test_a_retry_of_a_stored_message_is_answered_even_when_rate_limited(make_client, writer):
    client = await make_client(message_rate=0.01, message_burst=1)
    session = await create_session(client, writer)
    first = await send_message(client, writer, session["id"], "once", client_msg_id="m-1")
    resp = await client.post(
        f"/api/chat/sessions/{session['id']}/messages",
        json={"content": "once", "client_msg_id": "m-1"},
        headers=writer.headers,
    )
    assert resp.status == 200
    assert (await resp.json())["id"] == first["id"]
    resp = await client.post(
        f"/api/chat/sessions/{session['id']}/messages",
        json={"content": "new one", "client_msg_id": "m-2"},
        headers=writer.headers,
    )
    assert resp.status == 429


async def test_the_rate_limit_is_per_user(make_client, writer, other_writer):
    client = await make_client(message_rate=1, message_burst=1)
    session = await create_session(client, writer, is_shared=True)
    await send_message(client, writer, session["id"])
    resp = await client.post(
        f"/api/chat/sessions/{session['id']}/messages",
        json={"content": "mine"},
        headers=other_writer.headers,
    )
    assert resp.status == 201
