"""The protocol documentation against the running service.

``docs/asyncapi.yaml`` and ``docs/protocol.md`` are what client writers read;
these tests keep them honest with what a client sees over HTTP and WebSocket:
the AsyncAPI document is AsyncAPI 3 with a typed payload per frame, every
client frame it lists is served (and nothing else is), the frames the server
sends match their documented schemas, and every route of ``/openapi.json`` is
described in ``protocol.md``. Only files, HTTP and WebSocket behaviour are
used, never chatsvc's modules.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import jsonschema_rs
import yaml
from aiohttp.test_utils import TestClient

from tests.conftest import Caller, create_session
from tests.ws_helpers import connect, frames_before_pong, next_frame, ping_pong

DOCS = Path(__file__).resolve().parents[1] / "docs"
ASYNCAPI = DOCS / "asyncapi.yaml"
PROTOCOL = DOCS / "protocol.md"

Node = dict[str, Any]
HTTP_METHODS = frozenset({"get", "put", "post", "delete", "patch", "head", "options", "trace"})


@cache
def asyncapi() -> Node:
    document = yaml.safe_load(ASYNCAPI.read_text(encoding="utf-8"))
    assert isinstance(document, dict), "docs/asyncapi.yaml is not a YAML mapping"
    return document


def pointer(ref: str) -> tuple[str, ...]:
    assert ref.startswith("#/"), f"only local references are used: {ref}"
    return tuple(part.replace("~1", "/").replace("~0", "~") for part in ref[2:].split("/"))


def lookup(path: tuple[str, ...]) -> Node:
    node: Any = asyncapi()
    for part in path:
        assert isinstance(node, dict) and part in node, f"unresolved reference #/{'/'.join(path)}"
        node = node[part]
    return node


def resolve(node: Node) -> tuple[tuple[str, ...], Node]:
    """Follow ``$ref`` until a definition; return where it lives and the definition."""
    path: tuple[str, ...] = ()
    for _ in range(10):
        if "$ref" not in node:
            return path, node
        path = pointer(node["$ref"])
        node = lookup(path)
    raise AssertionError(f"reference loop at #/{'/'.join(path)}")


def frame_types(payload: Node) -> list[str]:
    """The frame ``type`` values a payload schema allows (its ``const`` or ``enum``)."""
    _, schema = resolve(payload)
    _, prop = resolve(schema.get("properties", {}).get("type", {}))
    values = [prop["const"]] if "const" in prop else prop.get("enum", [])
    return [value for value in values if isinstance(value, str)]


def payload_validator(message_path: tuple[str, ...]) -> jsonschema_rs.Draft7Validator:
    """Validate against a message's payload, resolving its references in the document."""
    ref = "#/" + "/".join((*message_path, "payload"))
    root = {"$ref": ref, "components": asyncapi()["components"]}
    return jsonschema_rs.Draft7Validator(root, validate_formats=True)


def operation_messages(action: str) -> dict[str, tuple[tuple[str, ...], Node]]:
    """Frame type -> (where the message is defined, the message), for one direction."""
    found: dict[str, tuple[tuple[str, ...], Node]] = {}
    operations = [op for op in asyncapi()["operations"].values() if op["action"] == action]
    assert operations, f"no operation with action {action!r}"
    for operation in operations:
        for ref in operation["messages"]:
            where, message = resolve(ref)
            for frame_type in frame_types(message["payload"]):
                assert frame_type not in found, f"{action}: frame type {frame_type!r} twice"
                found[frame_type] = (where, message)
    return found


def server_frames() -> dict[str, tuple[tuple[str, ...], Node]]:
    return operation_messages("send")  # chatsvc's point of view: it sends these


def client_frames() -> dict[str, tuple[tuple[str, ...], Node]]:
    return operation_messages("receive")


def assert_documented_server_frame(frame: dict[str, Any]) -> None:
    documented = server_frames()
    assert frame.get("type") in documented, f"undocumented server frame: {frame}"
    where, _ = documented[frame["type"]]
    errors = [error.message for error in payload_validator(where).iter_errors(frame)]
    assert errors == [], f"{frame['type']} frame does not match docs/asyncapi.yaml: {errors}"


# --- the document ---------------------------------------------------------------------


def test_asyncapi_document_is_asyncapi_3_with_a_typed_payload_per_message() -> None:
    document = asyncapi()
    assert document["asyncapi"] == "3.0.0"
    assert document["info"]["title"] and document["info"]["version"]
    for section in ("channels", "operations", "components"):
        assert isinstance(document.get(section), dict) and document[section], section

    for name, channel in document["channels"].items():
        for parameter in channel.get("parameters", {}):
            assert "{" + parameter + "}" in channel["address"], (name, parameter)

    messages = document["components"]["messages"]
    assert messages
    for name, message in messages.items():
        assert isinstance(message.get("payload"), dict), f"message {name} has no payload schema"
        _, payload = resolve(message["payload"])
        assert payload.get("type") == "object", f"message {name}: payload is not an object"
        assert "type" in payload.get("required", []), f"message {name}: `type` is not required"
        assert frame_types(payload), f"message {name}: no `type` const or enum"
        validator = payload_validator(("components", "messages", name))
        for example in message.get("examples", []):
            errors = [error.message for error in validator.iter_errors(example["payload"])]
            assert errors == [], f"example {example.get('name')} of {name}: {errors}"

    for op_name, operation in document["operations"].items():
        assert operation["action"] in ("send", "receive"), op_name
        channel_path, _ = resolve(operation["channel"])
        for ref in operation["messages"]:
            # AsyncAPI 3: an operation's messages are messages of its channel.
            assert pointer(ref["$ref"])[:3] == (*channel_path, "messages"), (op_name, ref)
            resolve(ref)

    assert server_frames() and client_frames()
    for frame_type, (_, message) in client_frames().items():
        assert message.get("examples"), f"client frame {frame_type!r} needs an example"


# --- the service ----------------------------------------------------------------------


async def test_connected_frame_has_exactly_the_documented_required_fields(
    client: TestClient, writer: Caller
) -> None:
    session = await create_session(client, writer)
    _, connected = await connect(client, writer, session["id"])
    _, message = server_frames()["connected"]
    _, payload = resolve(message["payload"])
    assert set(connected) == set(payload["required"])
    assert_documented_server_frame(connected)


async def test_every_documented_client_frame_is_served(client: TestClient, writer: Caller) -> None:
    session = await create_session(client, writer)
    for frame_type, (_, message) in client_frames().items():
        frame = {**message["examples"][0]["payload"], "type": frame_type}
        if "access_token" in frame:
            frame["access_token"] = writer.token  # the example's token is a placeholder
        ws, _ = await connect(client, writer, session["id"])
        await ws.send_json(frame)
        replies = await frames_before_pong(ws)
        errors = [reply for reply in replies if reply["type"] == "error"]
        assert errors == [], f"documented {frame_type!r} frame was refused: {errors}"
        for reply in replies:
            assert_documented_server_frame(reply)
        await ws.close()


async def test_an_undocumented_client_frame_type_gets_unknown_type(
    client: TestClient, writer: Caller
) -> None:
    documented = set(client_frames())
    undocumented = next(
        name for name in ("shout", "subscribe", "presence", "x-frame") if name not in documented
    )
    session = await create_session(client, writer)
    ws, _ = await connect(client, writer, session["id"])
    await ws.send_json({"type": undocumented})
    error = await next_frame(ws, "error")
    assert error["code"] == "UNKNOWN_TYPE"
    assert_documented_server_frame(error)
    await ping_pong(ws)  # the socket stays open, as documented


async def test_every_openapi_route_is_described_in_protocol_md(client: TestClient) -> None:
    resp = await client.get("/openapi.json")
    assert resp.status == 200
    spec = await resp.json()
    text = PROTOCOL.read_text(encoding="utf-8")
    missing = [
        f"{method.upper()} {path}"
        for path, operations in spec["paths"].items()
        for method in operations
        if method in HTTP_METHODS and f"{method.upper()} {path}" not in text
    ]
    assert missing == [], f"docs/protocol.md does not describe: {missing}"
    for channel in asyncapi()["channels"].values():
        assert channel["address"] in spec["paths"], channel["address"]
