"""``GET /api/me`` and the permission levels resolved from the groups claim."""

import pytest

from tests.conftest import GROUPS


@pytest.mark.parametrize(
    ("groups", "expected"),
    [
        (GROUPS["read"], "read"),
        (GROUPS["write"], "write"),
        (GROUPS["admin"], "admin"),
        (["Onyx-Readers", "Onyx-Admins", "Onyx-Writers"], "admin"),
        (["Onyx-Readers", "Onyx-Writers"], "write"),
        (["Unrelated"], None),
        ([], None),
    ],
)
async def test_level_is_the_highest_mapped_group(client, okta, groups, expected):
    token = okta.token("carol@example.com", groups)
    resp = await client.get("/api/me", headers={"Authorization": f"Bearer {token}"})
    assert resp.status == 200
    body = await resp.json()
    assert body["permission"] == expected
    assert body["groups"] == groups
    assert body["email"] == "carol@example.com"
