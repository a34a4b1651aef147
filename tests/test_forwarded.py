"""Behind a load balancer (``CHATSVC_TRUSTED_PROXIES``): the audit trail records
the real client, and nobody else can claim an address with a header."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from chatsvc.settings import SettingsError, load_settings
from tests.conftest import Caller, create_session
from tests.ws_helpers import audit_events


async def denied_from(client: Any, who: Caller, admin: Caller, headers: dict[str, str]) -> str:
    """Make ``who`` get a 403 with ``headers``; return the client_ip the trail recorded."""
    owner_session = await create_session(client, admin)
    resp = await client.delete(
        f"/api/chat/sessions/{owner_session['id']}", headers={**who.headers, **headers}
    )
    assert resp.status == 403
    events = await audit_events(client, admin, "session.delete")
    return events[0]["client_ip"]


@pytest.mark.parametrize(
    ("forwarded_for", "client"),
    [
        ("203.0.113.7", "203.0.113.7"),
        # Left of the proxy's own entry the client wrote what it liked.
        ("198.51.100.1, 203.0.113.7", "203.0.113.7"),
        # A chain of trusted proxies: the first untrusted address from the right.
        ("203.0.113.7, 127.0.0.5", "203.0.113.7"),
    ],
)
async def test_a_trusted_proxy_names_the_client(
    make_client: Callable[..., Any],
    caller: Callable[..., Caller],
    forwarded_for: str,
    client: str,
) -> None:
    app_client = await make_client(trusted_proxies="127.0.0.0/8")
    writer, admin = caller("w@example.com", "write"), caller("a@example.com", "admin")
    seen = await denied_from(app_client, writer, admin, {"X-Forwarded-For": forwarded_for})
    assert seen == client


async def test_without_trusted_proxies_the_header_is_ignored(
    client: Any, writer: Caller, admin: Caller
) -> None:
    seen = await denied_from(client, writer, admin, {"X-Forwarded-For": "203.0.113.7"})
    assert seen == "127.0.0.1"


async def test_a_peer_that_is_not_a_trusted_proxy_cannot_claim_an_address(
    make_client: Callable[..., Any], caller: Callable[..., Caller]
) -> None:
    app_client = await make_client(trusted_proxies="10.0.0.0/8")  # the test client is 127.0.0.1
    writer, admin = caller("w@example.com", "write"), caller("a@example.com", "admin")
    seen = await denied_from(app_client, writer, admin, {"X-Forwarded-For": "203.0.113.7"})
    assert seen == "127.0.0.1"


def test_a_malformed_trusted_proxy_setting_stops_start_up(tmp_path: Any) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(
            environ={"CHATSVC_TRUSTED_PROXIES": "10.0.0.0/8,not-a-network"},
            config_file=tmp_path / "absent.toml",
        )
    assert "CHATSVC_TRUSTED_PROXIES" in str(caught.value)
