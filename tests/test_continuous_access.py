"""The identity provider ends or changes access at once: Universal Logout, OIDC
Back-Channel Logout and Okta Event Hooks, in one process (over SQLite and
PostgreSQL) and in a process started after the revocation. The same across two
processes sharing Redis is in ``test_continuous_access_cluster``."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import func, select

from chatsvc.keys import AUTHENTICATOR, DB_SESSIONS
from chatsvc.store.models import BrowserSession, Revocation
from chatsvc.web.cookie import digest
from tests.conftest import Caller, MakeClient, create_session, sign_in
from tests.fake_okta import FakeOkta
from tests.test_browser_auth import CLIENT_ID, browser_sign_in, grants, page_csrf
from tests.test_browser_sessions import cookie_of
from tests.ws_helpers import connect, expect_close, next_frame, ping_pong

POLICY = 1008
LOGOUT = "/api/idp/global-token-revocation"
BACKCHANNEL = "/auth/backchannel-logout"
HOOK = "/api/idp/okta-event-hook"
SECRET = "hook-secret-for-tests"
ALICE = "alice@example.com"


async def web(make_client: MakeClient, **overrides: Any) -> TestClient:
    return await make_client(okta_client_id=CLIENT_ID, okta_event_hook_secret=SECRET, **overrides)


def audience(client: TestClient) -> str:
    return f"http://{client.host}:{client.port}{LOGOUT}"


async def universal_logout(
    client: TestClient, okta: FakeOkta, sub_id: dict[str, Any], token: str | None = None
) -> Any:
    token = token or okta.logout_request(audience(client))
    return await client.post(
        LOGOUT, json={"sub_id": sub_id}, headers={"Authorization": f"Bearer {token}"}
    )


def later_token(okta: FakeOkta, name: str, groups: list[str], **claims: Any) -> str:
    """A token the IdP issued after the revocation (its ``iat`` a second later)."""
    return okta.token(name, groups, iat=int(time.time()) + 1, **claims)


async def me_status(client: TestClient, token: str) -> tuple[int, dict[str, Any]]:
    resp = await client.get("/api/me", headers={"Authorization": f"Bearer {token}"})
    return resp.status, await resp.json()


async def revoked_events(client: TestClient, admin: Caller) -> list[dict[str, Any]]:
    resp = await client.get("/api/chat/audit?action=user.revoked", headers=admin.headers)
    assert resp.status == 200, await resp.text()
    return await resp.json()


# --- Universal Logout ----------------------------------------------------------------


async def test_universal_logout_ends_socket_token_and_browser_session_at_once(
    make_client: MakeClient, okta: FakeOkta, caller: Any, admin: Caller
) -> None:
    client = await web(make_client)
    writer = caller(ALICE, "write")
    await browser_sign_in(client, okta, ALICE)  # the same user, in a browser
    assert (await client.get("/api/me")).status == 200  # the cookie authenticates
    session = await create_session(client, writer)
    ws, _ = await connect(client, writer, session["id"])
    rest = caller(ALICE, "write")  # another token of theirs, used over REST
    assert (await me_status(client, rest.token))[0] == 200

    started = time.monotonic()
    resp = await universal_logout(client, okta, {"format": "email", "email": ALICE.upper()})
    assert resp.status == 204, await resp.text()
    await expect_close(ws, POLICY, "Access revoked", within=1.0)
    assert time.monotonic() - started < 1.0

    status, problem = await me_status(client, rest.token)
    assert status == 401 and problem["code"] == "INVALID_TOKEN"
    assert problem["detail"] == "Token revoked"
    assert (await me_status(client, writer.token))[0] == 401
    client.session.cookie_jar.clear_domain(client.host)  # the cookie's session is gone
    assert (await client.get("/api/me")).status == 401

    # A token issued afterwards works.
    assert (await me_status(client, later_token(okta, ALICE, ["Onyx-Writers"])))[0] == 200

    async def refresh_revoked() -> bool:
        return any(r["token_type_hint"] == "refresh_token" for r in okta.revocations)

    for _ in range(100):
        if await refresh_revoked():
            break
        await asyncio.sleep(0.02)
    assert await refresh_revoked(), "the browser session's refresh token was not revoked"

    [event] = await revoked_events(client, admin)
    assert event["outcome"] == "revoked" and event["resource_type"] == "user"
    assert event["user_email"] == ALICE and event["resource_id"] == event["user_id"]


async def test_a_copied_cookie_is_dead_after_universal_logout(
    make_client: MakeClient, okta: FakeOkta, caller: Any
) -> None:
    client = await web(make_client)
    await browser_sign_in(client, okta, ALICE)
    copied = cookie_of(client)
    resp = await universal_logout(client, okta, {"format": "email", "email": ALICE})
    assert resp.status == 204
    thief = await web(make_client)
    thief.session.cookie_jar.update_cookies({"chatsvc_session": copied})
    assert (await thief.get("/api/me")).status == 401


async def test_iss_sub_names_the_user_by_okta_user_id_or_sub(
    client: TestClient, okta: FakeOkta, caller: Any
) -> None:
    by_uid = caller("bob@example.com", "write", uid="00u-bob")
    by_sub = caller("carol@example.com", "write")
    other = caller("dave@example.com", "write")
    for who in (by_uid, by_sub, other):
        await sign_in(client, who)
    org = {"format": "iss_sub", "iss": okta.org, "sub": "00u-bob"}
    assert (await universal_logout(client, okta, org)).status == 204
    custom = {"format": "iss_sub", "iss": okta.issuer, "sub": "carol@example.com"}
    assert (await universal_logout(client, okta, custom)).status == 204
    assert (await me_status(client, by_uid.token))[0] == 401
    assert (await me_status(client, by_sub.token))[0] == 401
    assert (await me_status(client, other.token))[0] == 200


def _forged(okta: FakeOkta, client: TestClient) -> dict[str, str | None]:
    good = audience(client)
    return {
        "no token": None,
        "signed by the authorization server, not the org": okta.logout_request(
            good, key=okta.keys[0]
        ),
        "wrong aud": okta.logout_request("https://elsewhere.example.com" + LOGOUT),
        "expired": okta.logout_request(
            good, iat=int(time.time()) - 900, exp=int(time.time()) - 600
        ),
        "no jti": okta.logout_request(good, jti=None),
        "an access token": okta.token(ALICE, ["Onyx-Admins"]),
    }


async def test_a_bad_logout_request_token_is_401_and_revokes_nothing(
    client: TestClient, okta: FakeOkta, caller: Any, admin: Caller
) -> None:
    writer = caller(ALICE, "write")
    await sign_in(client, writer)
    for name, token in _forged(okta, client).items():
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        resp = await client.post(
            LOGOUT, json={"sub_id": {"format": "email", "email": ALICE}}, headers=headers
        )
        assert resp.status == 401, (name, await resp.text())
        assert "WWW-Authenticate" in resp.headers, name
    assert (await me_status(client, writer.token))[0] == 200
    assert await revoked_events(client, admin) == []


async def test_a_replayed_logout_request_is_401(
    client: TestClient, okta: FakeOkta, caller: Any, admin: Caller
) -> None:
    first, second = caller(ALICE, "write"), caller("bob@example.com", "write")
    await sign_in(client, first)
    await sign_in(client, second)
    token = okta.logout_request(audience(client))
    alice = {"format": "email", "email": ALICE}
    assert (await universal_logout(client, okta, alice, token)).status == 204
    bob = {"format": "email", "email": "bob@example.com"}
    resp = await universal_logout(client, okta, bob, token)
    assert resp.status == 401, await resp.text()
    assert (await me_status(client, second.token))[0] == 200
    assert len(await revoked_events(client, admin)) == 1


async def test_malformed_bodies_are_400_and_unknown_users_404(
    client: TestClient, okta: FakeOkta, caller: Any, admin: Caller
) -> None:
    writer = caller(ALICE, "write")
    await sign_in(client, writer)
    bodies: list[Any] = [
        {},
        {"sub_id": {"format": "phone_number", "phone_number": "+1"}},
        {"sub_id": {"format": "email"}},
        {"sub_id": {"format": "email", "email": "not-an-email"}},
        {"sub_id": {"format": "iss_sub", "iss": okta.org}},
        {"sub_id": "alice"},
        [1, 2],
    ]
    for body in bodies:
        token = okta.logout_request(audience(client))
        resp = await client.post(LOGOUT, json=body, headers={"Authorization": f"Bearer {token}"})
        assert resp.status == 400, (body, await resp.text())
    token = okta.logout_request(audience(client))
    resp = await client.post(
        LOGOUT, data=b"{not json", headers={"Authorization": f"Bearer {token}"}
    )
    assert resp.status == 400
    for sub_id in (
        {"format": "email", "email": "nobody@example.com"},
        {"format": "iss_sub", "iss": okta.org, "sub": "00u-nobody"},
        {"format": "iss_sub", "iss": "https://other.example.com", "sub": ALICE},
    ):
        resp = await universal_logout(client, okta, sub_id)
        assert resp.status == 404, (sub_id, await resp.text())
    assert (await me_status(client, writer.token))[0] == 200
    assert await revoked_events(client, admin) == []


async def test_a_process_started_after_the_revocation_honours_it(
    make_client: MakeClient, okta: FakeOkta, caller: Any
) -> None:
    first = await web(make_client)
    writer = caller(ALICE, "write")
    await sign_in(first, writer)
    resp = await universal_logout(first, okta, {"format": "email", "email": ALICE})
    assert resp.status == 204
    later = await web(make_client)  # the same database, a fresh process
    status, problem = await me_status(later, writer.token)
    assert status == 401 and problem["detail"] == "Token revoked"
    assert (await me_status(later, later_token(okta, ALICE, ["Onyx-Writers"])))[0] == 200


async def test_expired_revocations_are_purged(
    make_client: MakeClient, okta: FakeOkta, caller: Any
) -> None:
    client = await web(make_client, revocation_ttl=1.0)
    writer = caller(ALICE, "write")
    await sign_in(client, writer)
    assert (await universal_logout(client, okta, {"format": "email", "email": ALICE})).status == 204
    revocations = client.app[AUTHENTICATOR].revocations
    assert len(revocations) == 1
    await asyncio.sleep(1.1)
    later = await web(make_client)  # loads what is in force: nothing, and purges the row
    assert len(later.app[AUTHENTICATOR].revocations) == 0
    async with later.app[DB_SESSIONS]() as db:
        assert await db.scalar(select(func.count()).select_from(Revocation)) == 0


# --- Back-Channel Logout -------------------------------------------------------------


async def _two_browsers(make_client: MakeClient, okta: FakeOkta) -> tuple[TestClient, TestClient]:
    one, two = await web(make_client), await web(make_client)
    await browser_sign_in(one, okta, ALICE)
    await browser_sign_in(two, okta, ALICE)
    assert (await one.get("/api/me")).status == 200
    assert (await two.get("/api/me")).status == 200
    return one, two


async def _sid_of(client: TestClient) -> str:
    async with client.app[DB_SESSIONS]() as db:
        sid = await db.scalar(
            select(BrowserSession.sid).where(BrowserSession.id == digest(cookie_of(client)))
        )
    assert sid
    return sid


async def test_backchannel_logout_by_sid_ends_only_that_session(
    make_client: MakeClient, okta: FakeOkta
) -> None:
    one, two = await _two_browsers(make_client, okta)
    resp = await one.post(
        BACKCHANNEL, data={"logout_token": okta.logout_token(CLIENT_ID, sid=await _sid_of(one))}
    )
    assert resp.status == 200, await resp.text()
    assert resp.headers["Cache-Control"] == "no-store"
    assert (await one.get("/api/me")).status == 401
    assert (await two.get("/api/me")).status == 200


async def test_backchannel_logout_by_sub_ends_all_of_the_users_sessions(
    make_client: MakeClient, okta: FakeOkta
) -> None:
    one, two = await _two_browsers(make_client, okta)
    resp = await one.post(
        BACKCHANNEL, data={"logout_token": okta.logout_token(CLIENT_ID, sub=ALICE)}
    )
    assert resp.status == 200, await resp.text()
    assert (await one.get("/api/me")).status == 401
    assert (await two.get("/api/me")).status == 401


async def test_backchannel_logout_closes_the_sockets_opened_through_the_session(
    make_client: MakeClient, okta: FakeOkta, caller: Any
) -> None:
    one, two = await _two_browsers(make_client, okta)
    session = await create_session(one, caller(ALICE, "write"))
    path = f"/api/chat/sessions/{session['id']}/ws"
    origin = {"Origin": f"http://{one.host}:{one.port}"}
    page_socket = await one.ws_connect(path, headers=origin)
    assert (await page_socket.receive_json())["type"] == "connected"
    other_origin = {"Origin": f"http://{two.host}:{two.port}"}
    other_socket = await two.ws_connect(path, headers=other_origin)
    assert (await other_socket.receive_json())["type"] == "connected"
    token = okta.logout_token(CLIENT_ID, sid=await _sid_of(one))
    assert (await one.post(BACKCHANNEL, data={"logout_token": token})).status == 200
    await expect_close(page_socket, POLICY, "Access revoked", within=1.0)
    await ping_pong(other_socket)


async def test_bad_logout_tokens_are_400(make_client: MakeClient, okta: FakeOkta) -> None:
    one, _ = await _two_browsers(make_client, okta)
    replayed = okta.logout_token(CLIENT_ID, sid="sid-unknown")
    assert (await one.post(BACKCHANNEL, data={"logout_token": replayed})).status == 200
    bad = {
        "missing": None,
        "replayed": replayed,
        "wrong aud": okta.logout_token("another-client", sub=ALICE),
        "no event": okta.logout_token(CLIENT_ID, sub=ALICE, events={"x": {}}),
        "nonce": okta.logout_token(CLIENT_ID, sub=ALICE, nonce="n"),
        "neither sub nor sid": okta.logout_token(CLIENT_ID),
        "unsigned": okta.unsigned_token({"iss": okta.issuer, "aud": CLIENT_ID, "sub": ALICE}),
        "not a JWT": "abc",
    }
    for name, token in bad.items():
        data = {"logout_token": token} if token else {}
        resp = await one.post(BACKCHANNEL, data=data)
        assert resp.status == 400, (name, await resp.text())
        assert (await resp.json())["error"] == "invalid_request"
    assert (await one.get("/api/me")).status == 200


# --- Okta Event Hooks -----------------------------------------------------------------


def hook_delivery(event_type: str, user: str, group: str | None = None) -> dict[str, Any]:
    target = [{"type": "User", "id": user, "alternateId": user}]
    if group:
        target.append({"type": "UserGroup", "displayName": group})
    event = {"eventType": event_type, "published": _now_iso(), "target": target}
    return {"eventType": "com.okta.event_hook", "data": {"events": [event]}}


def _now_iso() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


async def post_hook(client: TestClient, body: Any, secret: str = SECRET) -> Any:
    return await client.post(HOOK, json=body, headers={"Authorization": secret})


async def test_the_verification_challenge_is_echoed_with_the_right_secret(
    make_client: MakeClient,
) -> None:
    client = await web(make_client)
    challenge = {"x-okta-verification-challenge": "abc123"}
    resp = await client.get(HOOK, headers={"Authorization": SECRET, **challenge})
    assert resp.status == 200
    assert await resp.json() == {"verification": "abc123"}
    for headers in ({}, {"Authorization": "wrong"}, {"Authorization": SECRET + "x"}):
        resp = await client.get(HOOK, headers={**headers, **challenge})
        assert resp.status == 401, headers


async def test_a_wrong_secret_is_401_and_changes_nothing(
    make_client: MakeClient, caller: Any
) -> None:
    client = await web(make_client)
    writer = caller(ALICE, "write")
    await sign_in(client, writer)
    body = hook_delivery("user.lifecycle.deactivate", ALICE)
    assert (await post_hook(client, body, secret="wrong")).status == 401
    assert (await post_hook(client, body, secret="")).status == 401
    assert (await me_status(client, writer.token))[0] == 200


async def test_the_secret_can_travel_in_another_header(
    make_client: MakeClient, caller: Any
) -> None:
    client = await web(make_client, okta_event_hook_header="X-Hook-Key")
    writer = caller(ALICE, "write")
    await sign_in(client, writer)
    body = hook_delivery("user.lifecycle.suspend", ALICE)
    assert (await post_hook(client, body)).status == 401  # in Authorization: not accepted
    resp = await client.post(HOOK, json=body, headers={"X-Hook-Key": SECRET})
    assert resp.status == 200
    assert (await me_status(client, writer.token))[0] == 401


async def test_without_a_secret_the_hook_receiver_is_off(client: TestClient) -> None:
    resp = await client.get(HOOK, headers={"x-okta-verification-challenge": "x"})
    assert resp.status == 404


async def test_a_membership_removal_lowers_the_level_live_on_an_open_socket(
    make_client: MakeClient, okta: FakeOkta, caller: Any
) -> None:
    client = await web(make_client)
    owner = caller("owner@example.com", "write")
    session = await create_session(client, owner, is_shared=True)
    both = ["Onyx-Writers", "Onyx-Readers"]
    member = Caller(ALICE, okta.token(ALICE, both), "write")
    ws, connected = await connect(client, member, session["id"])
    assert connected["can_send"] is True

    resp = await post_hook(
        client, hook_delivery("group.user_membership.remove", ALICE, "Onyx-Writers")
    )
    assert resp.status == 200
    changed = await next_frame(ws, "permission_changed", within=1.0)
    assert changed["permission"] == "read" and changed["can_send"] is False
    renew = await next_frame(ws, "error")
    assert renew == {"type": "error", "code": "INVALID_TOKEN", "message": "Token revoked"}
    # The old token is refused everywhere; sending on the socket is refused at the new level.
    status, problem = await me_status(client, member.token)
    assert status == 401 and problem["detail"] == "Token revoked"
    await ws.send_json({"type": "message", "content": "still a writer?"})
    refused = await next_frame(ws, "error")
    assert refused["code"] == "PERMISSION_DENIED"

    # The page renews in place with the token the IdP now issues (fewer groups).
    fresh = later_token(okta, ALICE, ["Onyx-Readers"])
    await ws.send_json({"type": "auth", "access_token": fresh})
    assert (await next_frame(ws, "auth_ok"))["type"] == "auth_ok"
    await ping_pong(ws)
    status, me = await me_status(client, fresh)
    assert status == 200 and me["permission"] == "read"


async def test_a_socket_that_does_not_renew_after_a_group_change_closes(
    make_client: MakeClient, okta: FakeOkta, caller: Any
) -> None:
    client = await web(make_client, revocation_renew_grace=0.3)
    owner = caller("owner@example.com", "write")
    session = await create_session(client, owner, is_shared=True)
    member = caller(ALICE, "write")
    ws, _ = await connect(client, member, session["id"])
    body = hook_delivery("group.user_membership.add", ALICE, "Onyx-Admins")
    assert (await post_hook(client, body)).status == 200
    frames = await expect_close(ws, POLICY, "Access revoked", within=2.0)
    assert {"type": "error", "code": "INVALID_TOKEN", "message": "Token revoked"} in frames
    changed = [f for f in frames if f["type"] == "permission_changed"]
    assert changed and changed[0]["permission"] == "admin"


async def test_a_removal_from_the_only_mapped_group_closes_the_socket(
    make_client: MakeClient, caller: Any
) -> None:
    client = await web(make_client)
    owner = caller("owner@example.com", "write")
    session = await create_session(client, owner, is_shared=True)
    member = caller(ALICE, "write")
    ws, _ = await connect(client, member, session["id"])
    body = hook_delivery("group.user_membership.remove", ALICE, "Onyx-Writers")
    assert (await post_hook(client, body)).status == 200
    await expect_close(ws, POLICY, "Access revoked", within=1.0)


async def test_deactivate_suspend_and_session_clear_act_as_universal_logout(
    make_client: MakeClient, caller: Any, admin: Caller
) -> None:
    client = await web(make_client)
    for index, event_type in enumerate(
        ("user.lifecycle.deactivate", "user.lifecycle.suspend", "user.session.clear")
    ):
        name = f"user{index}@example.com"
        who = caller(name, "write")
        session = await create_session(client, who)
        ws, _ = await connect(client, who, session["id"])
        assert (await post_hook(client, hook_delivery(event_type, name))).status == 200
        await expect_close(ws, POLICY, "Access revoked", within=1.0)
        assert (await me_status(client, who.token))[0] == 401, event_type
    reasons = sorted(e["reason"] for e in await revoked_events(client, admin))
    assert reasons == ["user.lifecycle.deactivate", "user.lifecycle.suspend", "user.session.clear"]


async def test_unknown_events_unmapped_groups_and_unknown_users_are_acknowledged(
    make_client: MakeClient, caller: Any, admin: Caller
) -> None:
    client = await web(make_client)
    writer = caller(ALICE, "write")
    await sign_in(client, writer)
    for body in (
        hook_delivery("user.account.update_profile", ALICE),
        hook_delivery("group.user_membership.remove", ALICE, "Marketing"),
        hook_delivery("user.lifecycle.deactivate", "nobody@example.com"),
        {"eventType": "com.okta.event_hook", "data": {"events": []}},
    ):
        assert (await post_hook(client, body)).status == 200, body
    assert (await me_status(client, writer.token))[0] == 200
    assert await revoked_events(client, admin) == []


async def test_a_malformed_hook_delivery_is_400(make_client: MakeClient) -> None:
    client = await web(make_client)
    for body in ({}, {"data": {}}, {"data": {"events": [{"target": []}]}}, [1]):
        assert (await post_hook(client, body)).status == 400, body
    resp = await client.post(HOOK, data=b"{", headers={"Authorization": SECRET})
    assert resp.status == 400


@pytest.mark.parametrize("path", [LOGOUT, HOOK])
async def test_idp_routes_do_not_take_a_users_bearer_token(
    make_client: MakeClient, caller: Any, path: str
) -> None:
    client = await web(make_client)
    admin_token = caller("root@example.com", "admin").headers
    resp = await client.post(path, json={}, headers=admin_token)
    assert resp.status == 401


async def test_a_cached_token_is_checked_against_the_revocations_on_every_request(
    client: TestClient, caller: Any
) -> None:
    writer = caller(ALICE, "write")
    me = await sign_in(client, writer)  # now cached
    # A revocation that reached this process without its cache being cleared
    # (the check itself, not the cache drop, refuses the token).
    client.app[AUTHENTICATOR].revocations.apply(uuid.UUID(me["id"]), time.time(), time.time() + 60)
    status, problem = await me_status(client, writer.token)
    assert status == 401 and problem["detail"] == "Token revoked"


async def test_after_a_group_change_the_page_gets_a_token_with_the_new_groups(
    make_client: MakeClient, okta: FakeOkta
) -> None:
    client = await web(make_client)
    await browser_sign_in(client, okta, ALICE, ("Onyx-Writers", "Onyx-Readers"))
    csrf = {"X-CSRF-Token": await page_csrf(client)}
    before = await (await client.get("/auth/token", headers=csrf)).json()
    okta.change_groups(ALICE, ["Onyx-Readers"])
    body = hook_delivery("group.user_membership.remove", ALICE, "Onyx-Writers")
    assert (await post_hook(client, body)).status == 200
    await asyncio.sleep(1.05)  # the IdP's next token is of a later second than the change
    after = await (await client.get("/auth/token", headers=csrf)).json()
    assert after["access_token"] != before["access_token"]
    assert grants(okta) == ["authorization_code", "refresh_token"]
    status, me = await me_status(client, after["access_token"])
    assert status == 200 and me["permission"] == "read"
    assert (await client.get("/api/me")).status == 200  # the cookie lives on


async def test_a_retry_after_a_failed_revocation_is_not_a_replay(
    client: TestClient, okta: FakeOkta, caller: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sqlalchemy.exc import OperationalError

    from chatsvc.store import revocations as revocation_store

    writer = caller(ALICE, "write")
    await sign_in(client, writer)
    stored = revocation_store.add

    async def database_gone(*args: Any, **kwargs: Any) -> Any:
        raise OperationalError("INSERT", {}, Exception("database is gone"))

    monkeypatch.setattr(revocation_store, "add", database_gone)
    token = okta.logout_request(audience(client))
    alice = {"format": "email", "email": ALICE}
    resp = await universal_logout(client, okta, alice, token)
    assert resp.status == 422, await resp.text()
    assert (await me_status(client, writer.token))[0] == 200  # nothing was revoked
    monkeypatch.setattr(revocation_store, "add", stored)
    assert (await universal_logout(client, okta, alice, token)).status == 204  # the IdP's retry
    assert (await me_status(client, writer.token))[0] == 401


async def test_a_hook_event_delivered_twice_is_audited_once(
    make_client: MakeClient, caller: Any, admin: Caller
) -> None:
    client = await web(make_client)
    writer = caller(ALICE, "write")
    await sign_in(client, writer)
    body = hook_delivery("user.lifecycle.suspend", ALICE)
    assert (await post_hook(client, body)).status == 200
    assert (await post_hook(client, body)).status == 200  # Okta delivers at least once
    assert len(await revoked_events(client, admin)) == 1


async def test_a_group_change_ends_a_browser_session_that_cannot_renew(
    make_client: MakeClient,
) -> None:
    import re

    client = await make_client(okta_issuer=None, okta_event_hook_secret=SECRET)
    form = await client.get("/auth/login")
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', await form.text())
    assert csrf is not None
    data = [("email", ALICE), ("groups", "Onyx-Writers"), ("csrf_token", csrf.group(1))]
    assert (await client.post("/auth/login", data=data, allow_redirects=False)).status == 303
    assert (await client.get("/api/me")).status == 200
    body = hook_delivery("group.user_membership.remove", ALICE, "Onyx-Writers")
    assert (await post_hook(client, body)).status == 200
    # The development sign-in has no refresh token: the session ends, it does not fail.
    assert (await client.get("/api/me")).status == 401
    async with client.app[DB_SESSIONS]() as db:
        assert await db.scalar(select(func.count()).select_from(BrowserSession)) <= 1  # a visitor's


async def test_a_revocation_this_process_missed_closes_its_sockets_at_the_next_reload(
    client: TestClient, caller: Any
) -> None:
    from chatsvc.keys import REVOKER
    from chatsvc.store import revocations as revocation_store

    writer = caller(ALICE, "write")
    session = await create_session(client, writer)
    ws, connected = await connect(client, writer, session["id"])
    now = datetime.now(UTC)
    async with client.app[DB_SESSIONS]() as db:  # what another process stored
        await revocation_store.add(
            db, [uuid.UUID(connected["user_id"])], now, now.replace(year=now.year + 1), "x", now
        )
        await db.commit()
    await ping_pong(ws)  # no event reached this process
    assert await client.app[REVOKER].reload()
    await expect_close(ws, POLICY, "Access revoked", within=1.0)
