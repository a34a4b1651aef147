"""``/metrics`` as an operator reads it: process and build facts, messages,
closes by code, pool and audit queue gauges, a fan-out tail that is visible, and
a broker gauge only where a broker is configured."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from aiohttp.test_utils import TestClient
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import Caller, create_session, send_message
from tests.ws_helpers import connect, expect_close, ws_path

REDIS_URL = os.environ.get("CHATSVC_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


async def scrape(client: TestClient) -> dict[str, Any]:
    resp = await client.get("/metrics")
    assert resp.status == 200
    samples: dict[str, Any] = {}
    for family in text_string_to_metric_families(await resp.text()):
        for sample in family.samples:
            key = sample.name + "".join(f"|{k}={v}" for k, v in sorted(sample.labels.items()))
            samples[key] = sample.value
    return samples


async def test_the_families_an_operator_alerts_on_are_exported(
    client: TestClient, writer: Caller
) -> None:
    session = await create_session(client, writer)
    message = await send_message(client, writer, session["id"])
    await client.put(
        f"/api/chat/messages/{message['id']}", json={"content": "edited"}, headers=writer.headers
    )
    await client.delete(f"/api/chat/messages/{message['id']}", headers=writer.headers)
    ws, _ = await connect(client, writer, session["id"])
    await ws.close()
    refused = await client.ws_connect(ws_path(session["id"]))  # no token
    await expect_close(refused, 1008, "Authentication required")

    samples = await scrape(client)
    assert samples["chatsvc_messages_total|change=sent"] == 1
    assert samples["chatsvc_messages_total|change=edited"] == 1
    assert samples["chatsvc_messages_total|change=deleted"] == 1
    assert samples["chatsvc_ws_closes_total|code=1008"] == 1
    assert sum(v for k, v in samples.items() if k.startswith("chatsvc_ws_closes_total")) == 2
    assert samples["process_resident_memory_bytes"] > 0
    assert any(k.startswith("python_gc_objects_collected_total") for k in samples)
    build = next(k for k in samples if k.startswith("chatsvc_build_info"))
    assert "version=" in build and "python=" in build
    assert samples["chatsvc_db_pool_size"] >= 1
    assert "chatsvc_db_pool_in_use" in samples
    assert samples["chatsvc_audit_queue"] >= 0
    assert "chatsvc_ws_fanout_seconds_bucket|le=2.5" in samples
    assert not any(k.startswith("chatsvc_broker_up") for k in samples)


async def test_the_broker_gauge_exists_where_a_broker_is_configured(
    make_client: Callable[..., Any],
) -> None:
    client = await make_client(broker_url=REDIS_URL)
    samples = await scrape(client)
    assert "chatsvc_broker_up" in samples
