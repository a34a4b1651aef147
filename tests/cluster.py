"""Two real chatsvc processes sharing one database and one Redis, for the
scale-out tests; a TCP proxy in front of Redis that can cut the connection; and
a private ``redis-server`` that a test may stop and start again (never the
machine's shared one)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
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
        self.frozen = False  # connections stay open but carry nothing (a black hole)
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
        self._flowing = asyncio.Event()
        self._flowing.set()
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
                    if self.frozen:
                        continue
                    await self._flowing.wait()
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

    def freeze(self) -> None:
        """Connections stay open and nothing passes until :meth:`thaw`, which lets
        what waited through (a server stopped with SIGSTOP, as its clients see it)."""
        self._loop.call_soon_threadsafe(self._flowing.clear)
        time.sleep(0.05)

    def thaw(self) -> None:
        self._loop.call_soon_threadsafe(self._flowing.set)

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


class RedisServer:
    """A ``redis-server`` of the test's own on a free port (no persistence):
    :meth:`restart` is a real Redis restart, with every key and subscription gone."""

    def __init__(self, directory: Path, password: str | None = None) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed")
        self.binary = binary
        self.directory = directory
        self.password = password
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.start()

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self) -> None:
        args = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1"]
        args += ["--save", "", "--appendonly", "no", "--dir", str(self.directory)]
        if self.password:
            args += ["--requirepass", self.password]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock,
            ):
                sock.sendall(b"PING\r\n")
                if sock.recv(64).startswith((b"+PONG", b"-NOAUTH")):
                    return
            time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()  # a crash: no goodbye to the clients
            self.process.wait(10)
            self.process = None

    def restart(self, down_for: float) -> None:
        self.stop()
        time.sleep(down_for)
        self.start()


def _admin_dsn(url: str) -> tuple[str, str]:
    """(server DSN on the ``postgres`` database, the base DSN) from the test URL."""
    dsn = url.replace("postgresql+asyncpg://", "postgresql://")
    base = dsn.rsplit("/", 1)[0]
    return f"{base}/postgres", base


def _admin(dsn: str, statement: str) -> None:
    import asyncpg

    async def run() -> None:
        conn = await asyncpg.connect(dsn)
        await conn.execute(statement)
        await conn.close()

    with ThreadPoolExecutor(1) as pool:  # callers may already run an event loop
        pool.submit(asyncio.run, run()).result()


@contextlib.contextmanager
def two_nodes(
    data_dir: Path,
    redis_host: str,
    redis_port: int,
    pg_url: str | None,
    extra_env: dict[str, str] | None = None,
) -> Iterator[Cluster]:
    """Two chatsvc processes on one database (a fresh PostgreSQL database when
    ``pg_url`` is set, else one SQLite file) reaching Redis through a :class:`TcpProxy`."""
    from chatsvc.auth.dev_issuer import DevIssuer
    from chatsvc.settings import load_settings

    env = {k: v for k, v in os.environ.items() if not k.startswith("CHATSVC_")}
    database = admin = None
    if pg_url:
        admin, base = _admin_dsn(pg_url)
        database = f"chatsvc_cluster_{uuid.uuid4().hex[:8]}"
        _admin(admin, f'CREATE DATABASE "{database}"')
        env["CHATSVC_DATABASE_URL"] = (
            f"{base.replace('postgresql://', 'postgresql+asyncpg://')}/{database}"
        )
    proxy = TcpProxy(redis_host, redis_port)
    env.update(
        {
            "CHATSVC_DATA_DIR": str(data_dir),
            "CHATSVC_BROKER_URL": f"redis://127.0.0.1:{proxy.port}/0",
            "CHATSVC_ACCESS_LOG": "false",
            "CHATSVC_BROKER_RECONNECT_MAX": "0.5",
            "CHATSVC_MESSAGE_RATE": "1000",
            "CHATSVC_MESSAGE_BURST": "1000",
            **(extra_env or {}),
        }
    )
    DevIssuer(load_settings(environ={}, config_file=Path("/nonexistent"), data_dir=data_dir))
    cluster = Cluster(data_dir, env, proxy)
    try:
        cluster.start_node(migrate=True)
        cluster.start_node(migrate=False)
        yield cluster
    finally:
        cluster.stop()
        if database and admin:
            _admin(admin, f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
