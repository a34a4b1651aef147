"""Contract section 4, collaborators: add (201, then 200 with the same body),
list, remove, and the refusals (unknown user, the owner, not a collaborator)."""

from __future__ import annotations

import uuid
from datetime import datetime

import pytest

from chatsvc.api import routing
from tests.conftest import create_session, sign_in


@pytest.fixture(autouse=True)
def _verify_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every answer must be what its response model writes (chatsvc.api.models)."""
    monkeypatch.setattr(routing, "VERIFY_ANSWERS", True)


COLLABORATOR_FIELDS = {"user_id", "email", "added_at"}


def base(session_id: str) -> str:
    return f"/api/chat/sessions/{session_id}/collaborators"


async def collaborators_of(client, who, session_id: str) -> list[dict]:
    resp = await client.get(base(session_id), headers=who.headers)
    assert resp.status == 200, await resp.text()
    return await resp.json()


async def test_adding_a_collaborator_answers_201_with_the_entry(client, writer, other_writer):
    them = await sign_in(client, other_writer)
    session = await create_session(client, writer)
    resp = await client.post(
        base(session["id"]), json={"email": other_writer.email}, headers=writer.headers
    )
    assert resp.status == 201
    body = await resp.json()
    assert set(body) == COLLABORATOR_FIELDS
    assert body["user_id"] == them["id"]
    assert body["email"] == other_writer.email
    assert body["added_at"].endswith(("Z", "+00:00"))
    assert datetime.fromisoformat(body["added_at"].replace("Z", "+00:00"))
    assert await collaborators_of(client, writer, session["id"]) == [body]


async def test_adding_the_same_collaborator_again_answers_200_with_the_same_body(
    client, writer, other_writer
):
    await sign_in(client, other_writer)
    session = await create_session(client, writer)
    first = await client.post(
        base(session["id"]), json={"email": other_writer.email}, headers=writer.headers
    )
    again = await client.post(
        base(session["id"]), json={"email": other_writer.email}, headers=writer.headers
    )
    assert (first.status, again.status) == (201, 200)
    assert await again.json() == await first.json()
    assert len(await collaborators_of(client, writer, session["id"])) == 1


async def test_the_list_holds_every_collaborator(client, caller, writer):
    session = await create_session(client, writer)
    added = []
    for name in ("a@example.com", "b@example.com", "c@example.com"):
        await sign_in(client, caller(name, "write"))
        resp = await client.post(base(session["id"]), json={"email": name}, headers=writer.headers)
        assert resp.status == 201
        added.append(await resp.json())
    listed = await collaborators_of(client, writer, session["id"])
    assert sorted(listed, key=lambda c: c["email"]) == added


async def test_a_user_who_never_signed_in_is_not_found(client, writer):
    session = await create_session(client, writer)
    resp = await client.post(
        base(session["id"]), json={"email": "stranger@example.com"}, headers=writer.headers
    )
    assert resp.status == 404
    assert (await resp.json())["detail"] == "User not found"
    assert await collaborators_of(client, writer, session["id"]) == []


async def test_the_owner_cannot_be_a_collaborator(client, writer):
    session = await create_session(client, writer)
    resp = await client.post(
        base(session["id"]), json={"email": writer.email}, headers=writer.headers
    )
    assert resp.status == 400
    problem = await resp.json()
    assert [e["field"] for e in problem["errors"]] == ["email"]
    assert await collaborators_of(client, writer, session["id"]) == []


async def test_the_owner_is_refused_even_when_an_admin_adds_them(client, writer, admin):
    session = await create_session(client, writer)
    resp = await client.post(
        base(session["id"]), json={"email": writer.email}, headers=admin.headers
    )
    assert resp.status == 400


async def test_removing_a_collaborator_answers_204_and_empties_the_list(
    client, writer, other_writer
):
    them = await sign_in(client, other_writer)
    session = await create_session(client, writer)
    await client.post(
        base(session["id"]), json={"email": other_writer.email}, headers=writer.headers
    )
    resp = await client.delete(f"{base(session['id'])}/{them['id']}", headers=writer.headers)
    assert resp.status == 204
    assert await collaborators_of(client, writer, session["id"]) == []


async def test_removing_twice_is_not_found_the_second_time(client, writer, other_writer):
    them = await sign_in(client, other_writer)
    session = await create_session(client, writer)
    await client.post(
        base(session["id"]), json={"email": other_writer.email}, headers=writer.headers
    )
    first = await client.delete(f"{base(session['id'])}/{them['id']}", headers=writer.headers)
    second = await client.delete(f"{base(session['id'])}/{them['id']}", headers=writer.headers)
    assert (first.status, second.status) == (204, 404)


@pytest.mark.parametrize("who", ["a signed-in non-collaborator", "no such user", "malformed"])
async def test_removing_someone_who_is_not_a_collaborator_is_not_found(
    client, writer, other_writer, who
):
    session = await create_session(client, writer)
    user_id = {
        "a signed-in non-collaborator": (await sign_in(client, other_writer))["id"],
        "no such user": str(uuid.uuid4()),
        "malformed": "not-a-uuid",
    }[who]
    resp = await client.delete(f"{base(session['id'])}/{user_id}", headers=writer.headers)
    assert resp.status == 404
    assert resp.content_type == "application/problem+json"


async def test_deleting_a_session_removes_its_collaborators(client, writer, other_writer):
    await sign_in(client, other_writer)
    session = await create_session(client, writer)
    await client.post(
        base(session["id"]), json={"email": other_writer.email}, headers=writer.headers
    )
    deleted = await client.delete(f"/api/chat/sessions/{session['id']}", headers=writer.headers)
    assert deleted.status == 204
    listing = await client.get("/api/chat/sessions", headers=other_writer.headers)
    assert await listing.json() == []
    resp = await client.get(base(session["id"]), headers=writer.headers)
    assert resp.status == 404
    assert (await resp.json())["detail"] == "Chat session not found"


async def test_removing_from_a_missing_session_is_session_not_found_whatever_the_user_id(
    client, writer
):
    missing = uuid.uuid4()
    resp = await client.delete(
        f"/api/chat/sessions/{missing}/collaborators/not-a-uuid", headers=writer.headers
    )
    assert resp.status == 404
    assert (await resp.json())["detail"] == "Chat session not found"


# --- identity is (iss, sub); an email is only a label ------------------------------------


async def test_adding_by_user_id_adds_exactly_that_user(client, writer, other_writer):
    them = await sign_in(client, other_writer)
    session = await create_session(client, writer)
    resp = await client.post(
        base(session["id"]), json={"user_id": them["id"]}, headers=writer.headers
    )
    assert resp.status == 201, await resp.text()
    body = await resp.json()
    assert (body["user_id"], body["email"]) == (them["id"], other_writer.email)
    again = await client.post(
        base(session["id"]), json={"user_id": them["id"]}, headers=writer.headers
    )
    assert again.status == 200
    assert await again.json() == body


async def test_adding_an_unknown_user_id_is_not_found(client, writer):
    session = await create_session(client, writer)
    resp = await client.post(
        base(session["id"]), json={"user_id": str(uuid.uuid4())}, headers=writer.headers
    )
    assert resp.status == 404
    assert (await resp.json())["detail"] == "User not found"


async def test_adding_the_owner_by_user_id_is_400(client, writer):
    me = await sign_in(client, writer)
    session = await create_session(client, writer)
    resp = await client.post(
        base(session["id"]), json={"user_id": me["id"]}, headers=writer.headers
    )
    assert resp.status == 400
    assert [e["field"] for e in (await resp.json())["errors"]] == ["user_id"]


@pytest.mark.parametrize(
    "body",
    [{}, {"email": "a@example.com", "user_id": str(uuid.uuid4())}, {"user_id": "not-a-uuid"}],
    ids=["neither", "both", "malformed"],
)
async def test_a_collaborator_body_names_one_user(client, writer, body):
    session = await create_session(client, writer)
    resp = await client.post(base(session["id"]), json=body, headers=writer.headers)
    assert resp.status == 400, await resp.text()


async def test_someone_else_signing_in_with_the_same_email_is_never_added(client, caller, writer):
    """The impersonation: an attacker signs in first at an IdP that lets them claim
    the victim's email. Adding by that email must not reach the attacker."""
    attacker = caller("attacker-sub", "write", email="victim@example.com")
    victim = caller("victim-sub", "write", email="victim@example.com")
    attacker_me = await sign_in(client, attacker)
    victim_me = await sign_in(client, victim)
    assert attacker_me["id"] != victim_me["id"]
    session = await create_session(client, writer)

    resp = await client.post(
        base(session["id"]), json={"email": "victim@example.com"}, headers=writer.headers
    )
    assert resp.status == 409, await resp.text()
    assert (await resp.json())["detail"] == "Several users have this email; add by user_id"
    assert await collaborators_of(client, writer, session["id"]) == []

    # Case does not make two emails different people either.
    resp = await client.post(
        base(session["id"]), json={"email": "VICTIM@example.com"}, headers=writer.headers
    )
    assert resp.status == 409

    resp = await client.post(
        base(session["id"]), json={"user_id": victim_me["id"]}, headers=writer.headers
    )
    assert resp.status == 201
    listed = await collaborators_of(client, writer, session["id"])
    assert [entry["user_id"] for entry in listed] == [victim_me["id"]]
    # The attacker still cannot read the private session.
    read = await client.get(f"/api/chat/sessions/{session['id']}", headers=attacker.headers)
    assert read.status in (403, 404)


async def test_an_email_change_at_the_idp_keeps_the_same_user(client, caller):
    first = await sign_in(client, caller("stable-sub", "write", email="old@example.com"))
    second = await sign_in(client, caller("stable-sub", "write", email="new@example.com"))
    assert first["id"] == second["id"]
    assert second["email"] == "new@example.com"


async def test_the_idp_user_id_is_recorded(client, caller):
    from sqlalchemy import select

    from chatsvc.keys import DB_SESSIONS
    from chatsvc.store.models import User

    await sign_in(client, caller("okta-sub-1", "write", email="u1@example.com", uid="00u1abc"))
    await sign_in(client, caller("plain-sub-2", "write", email="u2@example.com"))
    async with client.app[DB_SESSIONS]() as db:
        rows = dict((await db.execute(select(User.subject, User.idp_user_id))).all())
    assert rows == {"okta-sub-1": "00u1abc", "plain-sub-2": "plain-sub-2"}
