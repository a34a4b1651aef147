"""Two real chatsvc processes sharing one database and one Redis, for the
scale-out tests; and a TCP proxy in front of Redis that can cut the connection."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class TcpProxy:
    """Forwards a local port to Redis; :meth:`cut` drops every connection and
    refuses new ones until :meth:`restore` (a Redis outage, as the service sees it)."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = free_port()
        self.open = True
        self._writers: set[asyncio.StreamWriter] = set()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        self._ready.wait(5)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._serve())

    async def _serve(self) -> None:
        self._serve_task = asyncio.current_task()
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        self._ready.set()
        with contextlib.suppress(asyncio.CancelledError):
            async with self._server:
                await self._server.serve_forever()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.open:
            writer.close()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        self._writers.update((writer, up_writer))

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(Exception):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self._writers.discard(writer)
        self._writers.discard(up_writer)

    def _cut(self) -> None:
        self.open = False
        for writer in list(self._writers):
            transport = writer.transport
            transport.abort()  # type: ignore[attr-defined]
        self._writers.clear()

    def cut(self) -> None:
        self._loop.call_soon_threadsafe(self._cut)
        time.sleep(0.1)

    def restore(self) -> None:
        self.open = True

    async def _shutdown(self) -> None:
        self._cut()
        keep = {asyncio.current_task(), self._serve_task}
        tasks = [t for t in asyncio.all_tasks() if t not in keep]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._loop.call_soon(self._serve_task.cancel)

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(5)
        self._thread.join(5)


@dataclass
class Node:
    port: int
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def get_json(self, path: str) -> tuple[int, Any]:
        import json

        try:
            with urllib.request.urlopen(self.url + path, timeout=2) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"null")


@dataclass
class Cluster:
    data_dir: Path
    env: dict[str, str]
    proxy: TcpProxy
    nodes: list[Node] = field(default_factory=list)

    def start_node(self, migrate: bool) -> Node:
        port = free_port()
        log = self.data_dir / f"node-{port}.log"
        env = {
            **self.env,
            "CHATSVC_PORT": str(port),
            "CHATSVC_AUTO_MIGRATE": "true" if migrate else "false",
        }
        process = subprocess.Popen(
            [sys.executable, "run.py"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=log.open("wb"),
        )
        node = Node(port, process, log)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"chatsvc exited: {log.read_text()[-2000:]}")
            with contextlib.suppress(OSError):
                status, body = node.get_json("/readyz")
                if status == 200 and body.get("broker") == "up":
                    self.nodes.append(node)
                    return node
            time.sleep(0.1)
        process.kill()
        raise RuntimeError(f"chatsvc did not become ready: {log.read_text()[-2000:]}")

    def stop(self) -> None:
        for node in self.nodes:
            node.process.terminate()
        for node in self.nodes:
            try:
                node.process.wait(10)
            except subprocess.TimeoutExpired:
                node.process.kill()
        self.proxy.close()


def redis_target() -> tuple[str, int]:
    url = urlsplit(os.environ.get("CHATSVC_TEST_REDIS_URL", "redis://127.0.0.1:6379/0"))
    return url.hostname or "127.0.0.1", url.port or 6379
