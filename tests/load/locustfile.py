"""Locust load test for chatsvc: REST readers, REST writers and WebSocket members.

    locust -f tests/load/locustfile.py --host http://127.0.0.1:8080

or ``python -m tests.load.run``, which starts a local service first.

Tokens
    ``CHATSVC_LOAD_TOKENS=/path/file``: one token per line (e.g. from a real
    Okta), used round-robin by every user class; they need write permission for
    the writers and WebSocket members. Otherwise tokens are minted by the
    development issuer with ``python run.py token`` in this environment, so
    ``CHATSVC_DATA_DIR`` must be the target's (its signing key lives there). ``CHATSVC_LOAD_IDENTITIES`` (default 5) distinct
    users are minted per role; Locust users share them round-robin.

User classes
    ``RestReader``  (read level): list sessions, open one, page its messages.
    ``RestWriter``  (write level): create a shared session, send, edit its own messages.
    ``WebSocketMember`` (write level): join one of ``CHATSVC_LOAD_ROOMS`` (default 2)
    shared rooms, send and receive. Locust has no WebSocket user, so this one
    runs ``websocket-client`` (blocking sockets, made cooperative by Locust's
    gevent monkey-patching) with a receiving greenlet per member. It reports
    ``WS connect`` (upgrade to ``connected`` frame), ``WS send`` (to the sender's
    own ``message`` frame) and ``WS delivery`` (receive time minus the sender's
    ``metadata.t``, for every message of another member it receives) as Locust
    request events.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import random
import subprocess
import sys
import time
import uuid
from collections import deque
from pathlib import Path
from typing import Any

import gevent
import websocket
from gevent.lock import Semaphore
from locust import HttpUser, between, task
from locust.exception import StopUser

REPO = Path(__file__).resolve().parents[2]
IDENTITIES = int(os.environ.get("CHATSVC_LOAD_IDENTITIES", "5"))
ROOMS = int(os.environ.get("CHATSVC_LOAD_ROOMS", "2"))
TOKEN_TTL = int(os.environ.get("CHATSVC_LOAD_TOKEN_TTL", str(4 * 3600)))
READ_GROUP = os.environ.get("CHATSVC_LOAD_READ_GROUP", "Onyx-Readers")
WRITE_GROUP = os.environ.get("CHATSVC_LOAD_WRITE_GROUP", "Onyx-Writers")
LIST_PATH = "/api/chat/sessions?limit=50&include_messages=true"


class TokenPool:
    """Tokens per role: from ``CHATSVC_LOAD_TOKENS`` or minted once per identity."""

    def __init__(self) -> None:
        self._file_tokens: list[str] | None = None
        path = os.environ.get("CHATSVC_LOAD_TOKENS")
        if path:
            lines = Path(path).read_text().splitlines()
            self._file_tokens = [t.strip() for t in lines if t.strip() and not t.startswith("#")]
            if not self._file_tokens:
                raise SystemExit(f"CHATSVC_LOAD_TOKENS={path}: no tokens in the file")
        self._minted: dict[tuple[str, int], str] = {}
        self._locks: dict[tuple[str, int], Semaphore] = {}
        self._counters: dict[str, itertools.count[int]] = {}

    def next(self, role: str, group: str) -> str:
        counter = self._counters.setdefault(role, itertools.count())
        n = next(counter)
        if self._file_tokens is not None:
            return self._file_tokens[n % len(self._file_tokens)]
        key = (role, n % IDENTITIES)
        lock = self._locks.setdefault(key, Semaphore())
        with lock:
            if key not in self._minted:
                self._minted[key] = self._mint(f"load-{role}-{key[1]}@load.example", group)
        return self._minted[key]

    @staticmethod
    def _mint(sub: str, group: str) -> str:
        out = subprocess.run(
            [
                sys.executable,
                "run.py",
                "token",
                "--sub",
                sub,
                "--groups",
                group,
                "--ttl",
                str(TOKEN_TTL),
            ],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if out.returncode != 0 or not out.stdout.strip():
            raise SystemExit(f"python run.py token failed: {out.stderr.strip()[-300:]}")
        return out.stdout.strip()


TOKENS = TokenPool()


def _json(response: Any) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


class RestReader(HttpUser):
    """List sessions, open one, page through its messages (newest page, then one back)."""

    weight = 4
    wait_time = between(0.5, 2.0)

    def on_start(self) -> None:
        self.client.headers["Authorization"] = f"Bearer {TOKENS.next('reader', READ_GROUP)}"
        self.session_ids: list[str] = []

    @task(3)
    def list_sessions(self) -> None:
        with self.client.get(LIST_PATH, name="/api/chat/sessions [list]", catch_response=True) as r:
            body = _json(r)
            if r.status_code == 200 and isinstance(body, list):
                self.session_ids = [s["id"] for s in body]
                r.success()
            else:
                r.failure(f"{r.status_code}")

    @task(2)
    def open_and_page(self) -> None:
        if not self.session_ids:
            self.list_sessions()
            if not self.session_ids:
                return
        session_id = random.choice(self.session_ids)
        r = self.client.get(
            f"/api/chat/sessions/{session_id}?include_messages=false",
            name="/api/chat/sessions/{id}",
        )
        session = _json(r) if r.status_code == 200 else None
        if not session:
            return
        last = session["last_seq"]
        path = f"/api/chat/sessions/{session_id}/messages?limit=50"
        page = _json(
            self.client.get(
                f"{path}&before_seq={last + 1}", name="/api/chat/sessions/{id}/messages [newest]"
            )
        )
        if isinstance(page, list) and page and page[0]["seq"] > 1:
            self.client.get(
                f"{path}&before_seq={page[0]['seq']}",
                name="/api/chat/sessions/{id}/messages [older]",
            )


class RestWriter(HttpUser):
    """Own a shared session; send messages and edit its own recent ones."""

    weight = 2
    wait_time = between(0.5, 2.0)

    def on_start(self) -> None:
        self.client.headers["Authorization"] = f"Bearer {TOKENS.next('writer', WRITE_GROUP)}"
        r = self.client.post(
            "/api/chat/sessions",
            json={"title": f"load session {uuid.uuid4().hex[:8]}", "is_shared": True},
            name="/api/chat/sessions",
        )
        if r.status_code != 201:
            raise StopUser()
        self.session_id = r.json()["id"]
        self.mine: deque[str] = deque(maxlen=20)

    @task(5)
    def send(self) -> None:
        r = self.client.post(
            f"/api/chat/sessions/{self.session_id}/messages",
            json={"content": "load test message " + "lorem " * 10, "metadata": {"t": time.time()}},
            name="/api/chat/sessions/{id}/messages",
        )
        if r.status_code == 201:
            self.mine.append(r.json()["id"])

    @task(1)
    def edit_own(self) -> None:
        if not self.mine:
            return
        self.client.put(
            f"/api/chat/messages/{random.choice(self.mine)}",
            json={"content": "edited by the load test"},
            name="/api/chat/messages/{id}",
        )


class Rooms:
    """The shared sessions the WebSocket members crowd into (created on first need)."""

    def __init__(self) -> None:
        self._ids: dict[int, str] = {}
        self._lock = Semaphore()

    def get(self, index: int, client: Any) -> str | None:
        with self._lock:
            if index not in self._ids:
                r = client.post(
                    "/api/chat/sessions",
                    json={"title": f"load room {index}", "is_shared": True},
                    name="/api/chat/sessions [room]",
                )
                if r.status_code != 201:
                    return None
                self._ids[index] = r.json()["id"]
            return self._ids[index]


ROOM_IDS = Rooms()
_member_numbers = itertools.count()


class WebSocketMember(HttpUser):
    """A member of a shared room: connects, sends now and then, receives everything."""

    weight = 2
    wait_time = between(1.0, 3.0)

    def on_start(self) -> None:
        self.token = TOKENS.next("member", WRITE_GROUP)
        self.client.headers["Authorization"] = f"Bearer {self.token}"
        room = ROOM_IDS.get(next(_member_numbers) % max(1, ROOMS), self.client)
        if room is None:
            raise StopUser()
        self.room = room
        self.pending: dict[str, float] = {}
        self.ws: websocket.WebSocket | None = None
        self.receiver: gevent.Greenlet | None = None
        self.connect()

    def fire(
        self,
        name: str,
        started: float,
        length: int = 0,
        exc: Exception | None = None,
        response_time: float | None = None,
    ) -> None:
        self.environment.events.request.fire(
            request_type="WS",
            name=name,
            response_time=response_time
            if response_time is not None
            else (time.time() - started) * 1000,
            response_length=length,
            exception=exc,
            context={},
        )

    def connect(self) -> None:
        url = self.host.replace("http://", "ws://", 1).replace("https://", "wss://", 1)
        url = f"{url.rstrip('/')}/api/chat/sessions/{self.room}/ws"
        started = time.time()
        try:
            ws = websocket.create_connection(
                url, header=[f"Authorization: Bearer {self.token}"], timeout=30
            )
            first = json.loads(ws.recv())
            if first.get("type") != "connected":
                raise RuntimeError(f"first frame {first.get('type')}: {first}")
        except Exception as exc:
            self.fire("connect", started, exc=exc)
            raise StopUser() from exc
        self.fire("connect", started, len(json.dumps(first)))
        ws.settimeout(None)
        self.ws = ws
        self.receiver = gevent.spawn(self.receive_loop)

    def receive_loop(self) -> None:
        ws = self.ws
        assert ws is not None
        while True:
            try:
                data = ws.recv()
            except Exception as exc:  # closed by the server or by on_stop
                if not getattr(self, "stopping", False):
                    self.fire("receive", time.time(), exc=exc)
                return
            if not data:
                continue
            now = time.time()
            try:
                frame = json.loads(data)
            except ValueError:
                continue
            kind = frame.get("type")
            if kind == "message":
                started = self.pending.pop(frame.get("client_msg_id") or "", None)
                if started is not None:  # our own message: the send's acknowledgement
                    self.fire("send", started, len(data))
                    continue
                # Someone else's message: how long it took to reach this member.
                sent = (frame.get("metadata") or {}).get("t")
                if isinstance(sent, int | float):
                    self.fire("delivery", now, len(data), response_time=(now - sent) * 1000)
            elif kind == "error":
                self.fire(
                    f"error {frame.get('code')}",
                    now,
                    len(data),
                    exc=RuntimeError(frame.get("message")),
                )

    @task(3)
    def send(self) -> None:
        if self.ws is None:
            return
        client_msg_id = uuid.uuid4().hex
        started = time.time()
        self.pending[client_msg_id] = started
        frame = {
            "type": "message",
            "content": "load test frame",
            "metadata": {"t": started},
            "client_msg_id": client_msg_id,
        }
        try:
            self.ws.send(json.dumps(frame))
        except Exception as exc:
            self.pending.pop(client_msg_id, None)
            self.fire("send", started, exc=exc)

    @task(1)
    def typing(self) -> None:
        if self.ws is not None:
            self.ws.send(json.dumps({"type": "typing", "is_typing": True}))

    def on_stop(self) -> None:
        self.stopping = True
        if self.ws is not None:
            with contextlib.suppress(Exception):  # already closed
                self.ws.close()
        if self.receiver is not None:
            self.receiver.kill(block=False)
