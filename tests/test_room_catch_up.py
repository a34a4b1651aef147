"""Hub.resync: messages read from the database join a room's ordered delivery,
each seq once and in order, after the access facts read with them; and
RoomResync, which reads them, against a real database."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import aiohttp
import orjson
from sqlalchemy import update

from chatsvc.auth.principal import Level, Principal
from chatsvc.events import MessageSent
from chatsvc.events.broker import MemoryBroker
from chatsvc.keys import DB_SESSIONS
from chatsvc.metrics import Metrics
from chatsvc.policy import SessionFacts
from chatsvc.realtime.hub import Connection, Hub
from chatsvc.realtime.setup import RoomResync
from chatsvc.store import messages as store_messages
from chatsvc.store.models import ChatSession
from tests.conftest import create_session, sign_in
from tests.ws_helpers import TIMEOUT, connect

OWNER = uuid.uuid4()


class FakeTransport:
    """Records what the hub writes (whole WebSocket frames)."""

    def __init__(self) -> None:
        self.data = bytearray()

    def write(self, data: bytes) -> None:
        self.data += data

    def get_write_buffer_size(self) -> int:
        return 0

    def is_closing(self) -> bool:
        return False


class FakeWriter:
    def __init__(self) -> None:
        self.transport = FakeTransport()


class FakeSocket:
    """A prepared socket without compression: the hub writes to its transport."""

    closed = False
    prepared = True
    compress = False

    def __init__(self) -> None:
        self._writer = FakeWriter()

    async def close(self, code: int = 1000, message: bytes = b"") -> None:
        self.closed = True


def text_frames(data: bytes) -> list[bytes]:
    """The payloads of the unmasked text frames in ``data``."""
    payloads, i = [], 0
    while i < len(data):
        length, i = data[i + 1] & 0x7F, i + 2
        if length == 126:
            length, i = int.from_bytes(data[i : i + 2], "big"), i + 2
        elif length == 127:
            length, i = int.from_bytes(data[i : i + 8], "big"), i + 8
        payloads.append(bytes(data[i : i + length]))
        i += length
    return payloads


def principal(user_id: uuid.UUID) -> Principal:
    return Principal(user_id, "iss", str(user_id), f"{user_id}@example.com", Level.WRITE, (), 2**40)


def message(seq: int) -> dict[str, Any]:
    return {
        "id": uuid.uuid4(),
        "seq": seq,
        "content": f"m{seq}",
        "user_id": OWNER,
        "user_email": "owner@example.com",
        "message_type": "text",
        "metadata": {},
        "client_msg_id": None,
        "created_at": "2026-01-01T00:00:00Z",
        "updated_at": "2026-01-01T00:00:00Z",
    }


def room_with(hub: Hub, session_id: uuid.UUID, next_seq: int, *users: uuid.UUID) -> list[Any]:
    conns = []
    for user_id in users:
        conn = Connection(
            FakeSocket(),  # type: ignore[arg-type]
            principal(user_id),
            session_id,
            SessionFacts(OWNER, True, False),
            1 << 20,
            None,
            None,
            0.1,
        )
        hub.add(conn)
        conns.append(conn)
    hub.note_seq(session_id, next_seq - 1)
    return conns


def delivered(conn: Connection) -> list[int]:
    written = conn.ws._writer.transport.data  # type: ignore[attr-defined]
    return [orjson.loads(payload)["seq"] for payload in text_frames(written)]


def new_hub() -> Hub:
    return Hub(MemoryBroker(), Metrics(), 2.0, 6.0, lambda conn: None, reorder_wait=0.5)


async def test_caught_up_messages_fill_the_gap_before_what_waits_in_order():
    hub, sid = new_hub(), uuid.uuid4()
    (member,) = room_with(hub, sid, 5, uuid.uuid4())
    hub.on_event(MessageSent(sid, message(8)))  # live, ahead of the gap: waits
    assert delivered(member) == []
    hub.resync(sid, (OWNER, True, set()), [message(s) for s in range(5, 10)])
    assert delivered(member) == [5, 6, 7, 8, 9]
    room = hub.rooms[sid]
    assert (room.next_seq, room.pending, room.gap_timer) == (10, {}, None)
    # The live copies of what the catch-up gave come later: dropped, not repeated.
    for seq in (6, 9):
        hub.on_event(MessageSent(sid, message(seq)))
    hub.on_event(MessageSent(sid, message(10)))
    assert delivered(member) == [5, 6, 7, 8, 9, 10]


async def test_a_seq_missing_from_the_database_was_deleted_and_is_not_waited_for():
    hub, sid = new_hub(), uuid.uuid4()
    (member,) = room_with(hub, sid, 5, uuid.uuid4())
    hub.resync(sid, (OWNER, True, set()), [message(5), message(7), message(8)])
    assert delivered(member) == [5, 7, 8]
    assert hub.rooms[sid].next_seq == 9
    assert hub.rooms[sid].gap_timer is None


async def test_what_the_room_already_delivered_is_not_delivered_again():
    hub, sid = new_hub(), uuid.uuid4()
    (member,) = room_with(hub, sid, 5, uuid.uuid4())
    read = [message(s) for s in range(5, 8)]  # read before the live events came
    for seq in (5, 6):
        hub.on_event(MessageSent(sid, message(seq)))
    hub.resync(sid, (OWNER, True, set()), read)
    assert delivered(member) == [5, 6, 7]


async def test_a_room_still_starting_is_left_to_its_first_members_backlog():
    hub, sid = new_hub(), uuid.uuid4()
    conn = Connection(
        FakeSocket(),  # type: ignore[arg-type]
        principal(uuid.uuid4()),
        sid,
        SessionFacts(OWNER, True, False),
        1 << 20,
        None,
        None,
        0.1,
    )
    hub.add(conn)  # no note_seq yet: its backlog is being replayed
    hub.resync(sid, (OWNER, True, set()), [message(1)])
    assert delivered(conn) == []
    assert hub.rooms[sid].next_seq is None


async def test_a_revocation_read_with_the_messages_closes_the_member_before_they_go_out():
    hub, sid = new_hub(), uuid.uuid4()
    owner, guest = room_with(hub, sid, 1, OWNER, uuid.uuid4())
    hub.resync(sid, (OWNER, False, set()), [message(1), message(2)])  # unshared meanwhile
    assert delivered(owner) == [1, 2]
    assert delivered(guest) == []
    assert guest.closing
    await asyncio.sleep(0)  # let the close run
    assert guest.closed_with is not None and guest.closed_with.reason == "Access revoked"


# --- RoomResync against a real database ----------------------------------------------


class QuietBroker:
    """What RoomResync asks of the broker: whether events may be missed."""

    relaying = False


async def _store_unpublished(client: Any, session_id: str, author: dict[str, Any], n: int) -> None:
    """Messages whose events never reached this process (as if lost with Redis)."""
    for i in range(n):
        async with client.app[DB_SESSIONS]() as db:
            await store_messages.send_message(
                db,
                uuid.UUID(session_id),
                uuid.UUID(author["id"]),
                author["email"],
                f"lost {i}",
                "user",
                {},
                None,
            )


async def test_a_reconnect_catches_every_room_up_page_by_page(make_client, writer):
    client = await make_client(ws_backlog_page=3)
    session = await create_session(client, writer, is_shared=True)
    author = await sign_in(client, writer)
    ws, _ = await connect(client, writer, session["id"])
    await _store_unpublished(client, session["id"], author, 7)
    await RoomResync(client.app, QuietBroker()).all_rooms()  # type: ignore[arg-type]
    got = [(await ws.receive_json(timeout=TIMEOUT))["seq"] for _ in range(7)]
    assert got == [1, 2, 3, 4, 5, 6, 7]
    await ws.close()


async def test_while_not_relaying_rooms_catch_up_and_revocations_close_within_the_interval(
    make_client, writer, other_writer
):
    client = await make_client(broker_down_resync_interval=0.3)
    session = await create_session(client, writer, is_shared=True)
    author = await sign_in(client, writer)
    guest, _ = await connect(client, other_writer, session["id"])
    resync = RoomResync(client.app, QuietBroker())  # type: ignore[arg-type]
    watch = asyncio.create_task(resync.run())
    try:
        await _store_unpublished(client, session["id"], author, 2)
        assert [(await guest.receive_json(timeout=TIMEOUT))["seq"] for _ in range(2)] == [1, 2]
        async with client.app[DB_SESSIONS]() as db:  # unshared where no event reaches us
            await db.execute(
                update(ChatSession)
                .where(ChatSession.id == uuid.UUID(session["id"]))
                .values(is_shared=False)
            )
            await db.commit()
        await _store_unpublished(client, session["id"], author, 1)
        started = time.monotonic()
        closing = await guest.receive(timeout=TIMEOUT)
        assert time.monotonic() - started <= 0.3 + 0.5
        assert closing.type == aiohttp.WSMsgType.CLOSE, closing  # seq 3 never reached it
        assert (closing.data, closing.extra) == (1008, "Access revoked")
    finally:
        watch.cancel()
        await asyncio.gather(watch, return_exceptions=True)
