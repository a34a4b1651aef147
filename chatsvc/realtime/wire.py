"""WebSocket frames encoded once and written straight to a member's transport.

Why this module exists: aiohttp's public API (``WebSocketResponse.send_frame``)
builds the frame header again for every socket and goes through a coroutine per
member; a broadcast to thousands of members spends most of its time there.
aiohttp has no supported way to hand the same pre-built frame to many sockets,
so the two things the hub needs are wrapped here, and nowhere else:

- :func:`text_frame` builds a complete server frame (FIN, opcode text, no mask,
  no RSV bits: uncompressed) around a payload, once per broadcast;
- :class:`DirectWriter` writes such bytes to one socket's transport.

Checked against aiohttp 3.14.5 (``aiohttp/_websocket/writer.py`` and
``aiohttp/web_ws.py``). Why whole-frame ``transport.write()`` calls cannot
corrupt the stream there: ``WebSocketWriter.send_frame`` writes an uncompressed
frame synchronously (``_write_websocket_frame``: one ``transport.write`` of
header + payload, or two back to back with no ``await`` between them) and only
awaits afterwards (the drain), so aiohttp's own pings, pongs and close frames
are whole on the wire too, and a frame of ours always lands between two of
theirs. Compressed frames may be built in an executor while other writes happen,
which would break the compressor's context; the hub therefore never uses this
path on a socket that negotiated permessage-deflate (:func:`supports_direct`).
``WebSocketResponse.close`` sets ``closed`` before it writes the close frame,
and :meth:`DirectWriter.writable` checks it (and the transport), so nothing is
written after aiohttp started closing.
"""

from __future__ import annotations

import asyncio
import struct

from aiohttp import web

_LEN1 = struct.Struct("!BB").pack
_LEN2 = struct.Struct("!BBH").pack
_LEN3 = struct.Struct("!BBQ").pack
_FIN_TEXT = 0x80 | 0x1


def text_frame(payload: bytes) -> bytes:
    """The complete unmasked, uncompressed text frame carrying ``payload``."""
    n = len(payload)
    if n < 126:
        return _LEN1(_FIN_TEXT, n) + payload
    if n < 65536:
        return _LEN2(_FIN_TEXT, 126, n) + payload
    return _LEN3(_FIN_TEXT, 127, n) + payload


def supports_direct(ws: web.WebSocketResponse) -> bool:
    """Prepared, and without permessage-deflate."""
    return ws.prepared and not ws.compress


class DirectWriter:
    """One socket's transport, for whole pre-built frames."""

    __slots__ = ("_transport", "_ws")

    @property
    def transport(self) -> asyncio.Transport:
        return self._transport

    def __init__(self, ws: web.WebSocketResponse) -> None:
        writer = ws._writer  # private: see the module docstring
        assert writer is not None, "the response is not prepared"
        self._ws = ws
        self._transport: asyncio.Transport = writer.transport

    def writable(self) -> bool:
        """False once aiohttp started closing the socket or the transport went."""
        return not self._ws.closed and not self._transport.is_closing()

    def write(self, data: bytes) -> int:
        """Write whole frames; return the bytes now waiting in the transport."""
        transport = self._transport
        transport.write(data)
        return transport.get_write_buffer_size()

    def buffered(self) -> int:
        return self._transport.get_write_buffer_size()


def frames_waiting(ws: web.WebSocketResponse) -> bool:
    """Whether the client's next frames are already read and waiting (private, as above)."""
    reader = ws._reader
    return reader is not None and bool(reader._buffer)
