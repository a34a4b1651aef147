"""``GET /api/users``: the directory an owner picks collaborators from. Prefix
search on the email (case-insensitive, ``%`` and ``_`` literal), ordered by
email, bounded; only ``{user_id, email}``; write level, denials audited."""

from __future__ import annotations

from typing import Any

import pytest

from chatsvc.api import routing
from tests.conftest import Caller, sign_in

USERS = "/api/users"
USER_FIELDS = {"user_id", "email"}


@pytest.fixture(autouse=True)
def _verify_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every answer must be what its response model writes (chatsvc.api.models)."""
    monkeypatch.setattr(routing, "VERIFY_ANSWERS", True)


async def search(client, who: Caller, **params: Any) -> list[dict[str, Any]]:
    resp = await client.get(USERS, params=params, headers=who.headers)
    assert resp.status == 200, await resp.text()
    return await resp.json()


async def emails(client, who: Caller, query: str, **params: Any) -> list[str]:
    return [user["email"] for user in await search(client, who, query=query, **params)]


async def known(client, caller, *names: str) -> dict[str, str]:
    """Sign the users in (so chatsvc knows them); email -> user id."""
    return {name: (await sign_in(client, caller(name, "write")))["id"] for name in names}


async def audit_events(client, admin: Caller) -> list[dict[str, Any]]:
    resp = await client.get("/api/chat/audit?limit=500", headers=admin.headers)
    assert resp.status == 200, await resp.text()
    return await resp.json()


async def test_a_prefix_finds_the_users_whose_email_starts_with_it_by_email(client, caller, writer):
    ids = await known(
        client, caller, "alice@example.com", "alan@example.com", "bob@example.com", "xal@ex.com"
    )
    found = await search(client, writer, query="al")
    assert found == [
        {"user_id": ids["alan@example.com"], "email": "alan@example.com"},
        {"user_id": ids["alice@example.com"], "email": "alice@example.com"},
    ]
    assert await emails(client, writer, "alice@") == ["alice@example.com"]
    assert await emails(client, writer, "zed") == []


async def test_only_users_who_signed_in_are_listed_and_the_caller_is_one(client, caller, writer):
    await known(client, caller, "wanda@example.com")
    caller("wendy@example.com", "write")  # has a token, never used it
    assert await emails(client, writer, "w") == ["wanda@example.com", "writer@example.com"]


async def test_the_answer_holds_exactly_user_id_and_email(client, caller, writer):
    ids = await known(client, caller, "carl@example.com")
    [user] = await search(client, writer, query="carl")
    assert set(user) == USER_FIELDS
    assert user == {"user_id": ids["carl@example.com"], "email": "carl@example.com"}


async def test_the_match_ignores_case_and_keeps_the_emails_own(client, caller, writer):
    await known(client, caller, "Carol.Smith@Example.com", "carolyn@example.com")
    for query in ("carol.s", "CAROL.S", "CaRoL.sMiTh@eXaMpLe.CoM"):
        assert await emails(client, writer, query) == ["Carol.Smith@Example.com"]
    # Ordered by email without regard to case, too.
    assert await emails(client, writer, "CAROL") == [
        "Carol.Smith@Example.com",
        "carolyn@example.com",
    ]


async def test_surrounding_spaces_are_ignored(client, caller, writer):
    await known(client, caller, "dora@example.com")
    assert await emails(client, writer, "  dora ") == ["dora@example.com"]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("a_", ["a_b@example.com"]),  # not "any one character"
        ("a%", ["a%b@example.com"]),  # not "anything"
        ("a/", ["a/b@example.com"]),  # the escape character itself
        ("a\\", ["a\\b@example.com"]),  # PostgreSQL's default escape character
        ("%", []),
        ("_", []),
        ("a", ["a%b@example.com", "a/b@example.com", "a\\b@example.com", "a_b@example.com", "axb@example.com"]),
    ],
)  # fmt: skip
async def test_like_wildcards_in_the_prefix_are_plain_characters(
    client, caller, writer, query, expected
):
    await known(
        client,
        caller,
        "a_b@example.com",
        "axb@example.com",
        "a%b@example.com",
        "a/b@example.com",
        "a\\b@example.com",
    )
    assert sorted(await emails(client, writer, query)) == sorted(expected)


async def test_limit_defaults_to_20_and_bounds_the_answer(client, caller, writer):
    names = [f"user{i:02}@example.com" for i in range(52)]
    await known(client, caller, *names)
    assert await emails(client, writer, "user") == names[:20]
    assert await emails(client, writer, "user", limit="3") == names[:3]
    assert await emails(client, writer, "user", limit="1") == names[:1]
    assert await emails(client, writer, "user", limit="50") == names[:50]


BAD_QUERIES: list[tuple[dict[str, str], str, str]] = [
    ({}, "query", "query: is required"),
    ({"query": ""}, "query", "query: must not be empty"),
    ({"query": "   "}, "query", "query: must not be empty"),
    ({"query": "a" * 321}, "query", "query: must be at most 320 characters"),
    ({"query": "a\x00"}, "query", "query: must not contain NUL characters"),
    ({"query": "a", "limit": "0"}, "limit", "limit: must be between 1 and 50"),
    ({"query": "a", "limit": "51"}, "limit", "limit: must be between 1 and 50"),
    ({"query": "a", "limit": "-1"}, "limit", "limit: must be between 1 and 50"),
    ({"query": "a", "limit": "ten"}, "limit", "limit: must be an integer"),
    ({"query": "a", "limit": "1e1"}, "limit", "limit: must be an integer"),
    ({"query": "a", "limit": " 5"}, "limit", "limit: must be an integer"),
]


async def test_bad_input_is_a_400_naming_the_parameter_and_changes_nothing(
    client, caller, writer, admin, subtests
):
    await known(client, caller, "alice@example.com")
    await sign_in(client, admin)
    before = await search(client, writer, query="a", limit="50")
    for params, field, detail in BAD_QUERIES:
        with subtests.test(params=params):
            resp = await client.get(USERS, params=params, headers=writer.headers)
            assert resp.status == 400
            assert resp.content_type == "application/problem+json"
            body = await resp.json()
            assert (body["code"], body["detail"]) == ("VALIDATION_ERROR", detail)
            assert body["errors"] == [{"field": field, "message": detail.split(": ", 1)[1]}]
    assert await search(client, writer, query="a", limit="50") == before
    assert await audit_events(client, admin) == []  # a 400 is no denial


async def test_the_longest_query_is_accepted(client, writer):
    assert await search(client, writer, query="a" * 320) == []


@pytest.mark.parametrize("who", ["reader", "nobody"])
async def test_below_write_level_is_denied_and_audited(client, request, admin, writer, who: str):
    caller_: Caller = request.getfixturevalue(who)
    await sign_in(client, writer)
    me = await sign_in(client, caller_)
    resp = await client.get(USERS, params={"query": "w"}, headers=caller_.headers)
    assert resp.status == 403
    body = await resp.json()
    assert (body["code"], body["detail"]) == ("PERMISSION_DENIED", "Requires write permission")
    assert "writer@example.com" not in await resp.text()
    [event] = await audit_events(client, admin)
    assert {k: event[k] for k in ("action", "resource_type", "resource_id", "reason")} == {
        "action": "user.list",
        "resource_type": "user",
        "resource_id": None,
        "reason": "Requires write permission",
    }
    assert (event["user_id"], event["request_id"]) == (me["id"], resp.headers["X-Request-ID"])
    assert event["outcome"] == "denied"


async def test_the_level_is_checked_before_the_query(client, reader, admin):
    resp = await client.get(USERS, headers=reader.headers)
    assert resp.status == 403
    assert (await resp.json())["detail"] == "Requires write permission"


async def test_an_admin_may_search(client, admin, writer):
    await sign_in(client, writer)
    assert await emails(client, admin, "writer") == ["writer@example.com"]


async def test_without_a_token_it_is_401(client, writer):
    await sign_in(client, writer)
    resp = await client.get(USERS, params={"query": "w"})
    assert resp.status == 401
    assert resp.headers["WWW-Authenticate"] == 'Bearer realm="chatsvc"'
    assert "writer@example.com" not in await resp.text()
    bad = await client.get(
        USERS, params={"query": "w"}, headers={"Authorization": "Bearer not-a-jwt"}
    )
    assert bad.status == 401


async def test_with_the_levels_turned_off_everyone_acts_as_write(make_client, reader, writer):
    client = await make_client(enable_chat_permissions=False)
    await sign_in(client, writer)
    assert await emails(client, reader, "writer") == ["writer@example.com"]
