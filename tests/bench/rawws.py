"""A WebSocket connect that costs the measuring side almost nothing.

aiohttp's client spends about as much CPU on a WebSocket handshake as a server
does, so a single client process opening thousands of sockets measures itself
as much as the server. This client writes one prepared upgrade request per
socket and reads the answer with a bare asyncio protocol: it checks the
``101`` status line and, when asked, waits for the server's first complete
frame, then reads and drops whatever follows. It is for benchmarks only (it
never answers pings and closes without a close frame).
"""

from __future__ import annotations

import asyncio
import time

# Any 16-byte key in base64 will do: the server only hashes it for its answer.
KEY = "dGhlIHNhbXBsZSBub25jZQ=="


def upgrade_request(host: str, port: int, path: str, headers: dict[str, str]) -> bytes:
    lines = [
        f"GET {path} HTTP/1.1",
        f"Host: {host}:{port}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {KEY}",
        "Sec-WebSocket-Version: 13",
        *(f"{name}: {value}" for name, value in headers.items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def frame_end(buffer: bytes | bytearray, start: int) -> int | None:
    """Where the (unmasked, server-sent) frame starting at ``start`` ends, or
    None while it is incomplete."""
    if len(buffer) < start + 2:
        return None
    length = buffer[start + 1] & 0x7F
    header = 2
    if length == 126:
        header = 4
        if len(buffer) < start + 4:
            return None
        length = int.from_bytes(buffer[start + 2 : start + 4], "big")
    elif length == 127:
        header = 10
        if len(buffer) < start + 10:
            return None
        length = int.from_bytes(buffer[start + 2 : start + 10], "big")
    end = start + header + length
    return end if len(buffer) >= end else None


class RawSocket(asyncio.Protocol):
    def __init__(self, request: bytes, first_frame: bool) -> None:
        self.request = request
        self.first_frame = first_frame
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # (uvloop's is no subclass)
        transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        if self.ready.done():
            return
        self.buffer += data
        head = self.buffer.find(b"\r\n\r\n")
        if head < 0:
            return
        if not self.buffer.startswith(b"HTTP/1.1 101"):
            status = bytes(self.buffer[: self.buffer.find(b"\r\n")])
            self.ready.set_exception(ConnectionError(f"no upgrade: {status!r}"))
            return
        if self.first_frame and frame_end(self.buffer, head + 4) is None:
            return
        self.buffer.clear()
        self.ready.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.ready.done():
            self.ready.set_exception(exc or ConnectionError("closed before the first frame"))

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


async def connect_many(
    host: str,
    port: int,
    path: str,
    headers: dict[str, str],
    count: int,
    concurrency: int,
    first_frame: bool,
) -> tuple[list[RawSocket], float]:
    """Open ``count`` sockets, ``concurrency`` at a time; (sockets, seconds)."""
    loop = asyncio.get_running_loop()
    request = upgrade_request(host, port, path, headers)
    gate = asyncio.Semaphore(concurrency)
    sockets: list[RawSocket] = []

    async def one() -> None:
        async with gate:
            _, protocol = await loop.create_connection(
                lambda: RawSocket(request, first_frame), host, port
            )
            await asyncio.wait_for(protocol.ready, 60)
            sockets.append(protocol)

    started = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(count)))
    return sockets, time.perf_counter() - started
