"""An asyncio client of ubdcc's push streams (a restapi's ``/ws``), in pure Python: the standard
library only, no WebSocket package needed.

The server speaks Binance's market-stream protocol::

    async with PushClient("ws://127.0.0.1:42081/ws") as client:
        await client.subscribe("binance.com:BTCUSDT@book20", "binance.com:BTCUSDT@bbo")
        view = BookView(20)
        async for stream, data in client:
            if stream.endswith("@book20"):
                view.apply(data)          # snapshot, diffs, status: the view stays right
                print(view.bids[0], view.asks[0], view.last_update_id)
            else:
                print(stream, data)       # {"b": [p, q], "a": [p, q], "u": ..., "E": ...}

Streams: ``<exchange>:<MARKET>@bbo``, ``<exchange>:<MARKET>@book<N>`` (N <= 1000), each
optionally ``@<interval>ms`` (>= 10) for conflated updates. A book that cannot be served sends
``{"status": "out_of_sync", "reason": ...}``, and ``{"status": "synced"}`` when it is back (a
snapshot follows). Only books with a replica on the restapi's host are served.

Back-pressure: messages wait in a bounded queue (``max_queue``); while it is full the client stops
reading the socket, so the server conflates (latest state wins) and, after 5 s without reading,
closes the connection with a reason (:class:`PushClosed`). Iterate promptly.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import ssl as _ssl
import struct
from typing import Any, AsyncIterator, Optional
from urllib.parse import urlsplit

__all__ = ["BookView", "PushClient", "PushClosed", "PushError"]

_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_TEXT, _BINARY, _CLOSE, _PING, _PONG, _CONTINUATION = 0x1, 0x2, 0x8, 0x9, 0xA, 0x0
_MAX_MESSAGE = 64 * 1024 * 1024  # a @book1000 snapshot is ~60 KiB; anything near this is wrong


class PushError(Exception):
    """The server refused a request (Binance-style ``code`` and ``msg``) or the connection."""

    def __init__(self, code: int, msg: str) -> None:
        super().__init__(f"{msg} (code {code})")
        self.code = code
        self.msg = msg


class PushClosed(Exception):
    """The connection ended: ``code`` and ``reason`` of the server's close frame (1006 and an
    empty reason when it ended without one)."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"connection closed ({code}): {reason}" if reason else f"connection closed ({code})")
        self.code = code
        self.reason = reason


class BookView:
    """The top-``depth`` view of a book kept from its ``@book<depth>`` messages: a snapshot replaces
    the view, a diff changes it (quantity 0 removes a level), a status message empties it until
    the next snapshot (``synced`` is then ``False``)."""

    def __init__(self, depth: int) -> None:
        self.depth = depth
        self.bids: list[list[float]] = []
        self.asks: list[list[float]] = []
        self.last_update_id = 0
        self.synced = False

    def apply(self, data: dict[str, Any]) -> None:
        """Applies one message's ``data``. Raises ``ValueError`` for a diff without a snapshot
        before it (which a correct server never sends)."""
        if "status" in data:
            self.bids, self.asks, self.synced = [], [], False
            return
        if data.get("snapshot"):
            self.bids = [list(level) for level in data["bids"]]
            self.asks = [list(level) for level in data["asks"]]
            self.synced = True
        elif not self.synced:
            raise ValueError("a diff before any snapshot")
        else:
            self._change(self.bids, data["bids"], reverse=True)
            self._change(self.asks, data["asks"], reverse=False)
        self.last_update_id = data["u"]

    def _change(self, side: list[list[float]], changes: list[list[float]], reverse: bool) -> None:
        levels = {price: quantity for price, quantity in side}
        for price, quantity in changes:
            if quantity == 0:
                levels.pop(price, None)
            else:
                levels[price] = quantity
        side[:] = [[p, levels[p]] for p in sorted(levels, reverse=reverse)[: self.depth]]


class PushClient:
    """One WebSocket connection to a restapi's ``/ws``.

    ``url``: ``ws://host:port/ws`` (or ``wss://``). ``token``: the API's bearer token, when it
    requires one (sent in the ``Authorization`` header, never in the URL). ``max_queue``: messages
    held for the iterator before the client stops reading the socket.
    """

    def __init__(self, url: str = "ws://127.0.0.1:42081/ws", *, token: Optional[str] = None,
                 max_queue: int = 10_000, timeout: float = 10.0) -> None:
        self.url = url
        self._token = token
        self._timeout = timeout
        self._messages: asyncio.Queue[Any] = asyncio.Queue(max_queue)
        self._replies: dict[Any, asyncio.Future[Any]] = {}
        self._next_id = 0
        self._reader: Optional[asyncio.StreamReader] = None
        self._writer: Optional[asyncio.StreamWriter] = None
        self._task: Optional[asyncio.Task[None]] = None
        self._closed: Optional[PushClosed] = None

    async def __aenter__(self) -> "PushClient":
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def connect(self) -> None:
        """Opens the connection and does the WebSocket handshake. Raises :class:`PushError` when
        the server answers with anything but an upgrade (its envelope's message)."""
        parts = urlsplit(self.url)
        secure = parts.scheme == "wss"
        if parts.scheme not in ("ws", "wss") or not parts.hostname:
            raise ValueError(f"not a ws:// or wss:// URL: {self.url}")
        port = parts.port or (443 if secure else 80)
        context = _ssl.create_default_context() if secure else None
        self._reader, self._writer = await asyncio.wait_for(
            asyncio.open_connection(parts.hostname, port, ssl=context), self._timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        headers = [f"GET {path} HTTP/1.1", f"Host: {parts.netloc}", "Upgrade: websocket",
                   "Connection: Upgrade", f"Sec-WebSocket-Key: {key}", "Sec-WebSocket-Version: 13"]
        if self._token:
            headers.append(f"Authorization: Bearer {self._token}")
        self._writer.write(("\r\n".join(headers) + "\r\n\r\n").encode())
        await self._writer.drain()
        head = await asyncio.wait_for(self._reader.readuntil(b"\r\n\r\n"), self._timeout)
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        fields = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in header_lines if h)}
        if status_line.split()[1:2] != ["101"]:
            raise PushError(-1, await self._refusal(status_line, fields))
        accept = base64.b64encode(hashlib.sha1((key + _GUID).encode()).digest()).decode()
        if fields.get("sec-websocket-accept") != accept:
            raise PushError(-1, "the server's handshake answer is not a WebSocket one")
        self._task = asyncio.get_running_loop().create_task(self._read_loop())

    async def _refusal(self, status_line: str, fields: dict[str, str]) -> str:
        """The message of a refused upgrade: the error envelope's ``message`` when there is one."""
        assert self._reader is not None
        length = int(fields.get("content-length", "0") or 0)
        body = await asyncio.wait_for(self._reader.readexactly(min(length, 65536)), self._timeout) if length else b""
        try:
            return f"{status_line}: {json.loads(body)['message']}"
        except (ValueError, KeyError, TypeError):
            return status_line

    async def subscribe(self, *streams: str) -> None:
        """Subscribes to ``streams`` (all or none). Raises :class:`PushError` with the reason."""
        await self._request("SUBSCRIBE", list(streams))

    async def unsubscribe(self, *streams: str) -> None:
        """Unsubscribes from ``streams``."""
        await self._request("UNSUBSCRIBE", list(streams))

    async def list_subscriptions(self) -> list[str]:
        """The streams held, in the order subscribed."""
        return await self._request("LIST_SUBSCRIPTIONS", None)

    async def _request(self, method: str, params: Optional[list[str]]) -> Any:
        if self._closed:
            raise self._closed
        self._next_id += 1
        request_id = self._next_id
        request: dict[str, Any] = {"method": method, "id": request_id}
        if params is not None:
            request["params"] = params
        reply = asyncio.get_running_loop().create_future()
        self._replies[request_id] = reply
        await self._send(_TEXT, json.dumps(request).encode())
        try:
            answer = await asyncio.wait_for(reply, self._timeout)
        finally:
            self._replies.pop(request_id, None)
        if "error" in answer:
            raise PushError(answer["error"].get("code", -1), answer["error"].get("msg", ""))
        return answer.get("result")

    def __aiter__(self) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        """Yields ``(stream, data)`` for every message; ends by raising :class:`PushClosed` unless
        :meth:`close` was called."""
        while True:
            item = await self._messages.get()
            if isinstance(item, PushClosed):
                if item.code == 1000 and item.reason == "closed by the client":
                    return
                raise item
            yield item

    async def recv(self) -> tuple[str, dict[str, Any]]:
        """The next ``(stream, data)``. Raises :class:`PushClosed` once the connection ended."""
        item = await self._messages.get()
        if isinstance(item, PushClosed):
            raise item
        return item

    async def close(self) -> None:
        """Closes the connection (a close frame, then the socket)."""
        if self._writer is None:
            return
        if not self._closed:
            try:
                await asyncio.wait_for(self._send(_CLOSE, struct.pack("!H", 1000)), 1.0)
            except (OSError, asyncio.TimeoutError):
                pass
            self._finish(PushClosed(1000, "closed by the client"))
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
        self._writer.close()
        self._writer = None

    async def _send(self, opcode: int, payload: bytes) -> None:
        """One masked frame (clients must mask, RFC 6455 §5.3)."""
        assert self._writer is not None
        mask = os.urandom(4)
        length = len(payload)
        if length < 126:
            head = struct.pack("!BB", 0x80 | opcode, 0x80 | length)
        elif length < 1 << 16:
            head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, length)
        else:
            head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, length)
        repeated = (mask * (length // 4 + 1))[:length]
        masked = (int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")).to_bytes(length, "big")
        self._writer.write(head + mask + masked)
        await self._writer.drain()

    async def _read_frame(self) -> tuple[int, bool, bytes]:
        assert self._reader is not None
        first, second = await self._reader.readexactly(2)
        length = second & 0x7F
        if length == 126:
            (length,) = struct.unpack("!H", await self._reader.readexactly(2))
        elif length == 127:
            (length,) = struct.unpack("!Q", await self._reader.readexactly(8))
        if length > _MAX_MESSAGE:
            raise PushClosed(1009, f"a frame of {length} bytes")
        mask = await self._reader.readexactly(4) if second & 0x80 else b""
        payload = await self._reader.readexactly(length)
        if mask:
            repeated = (mask * (length // 4 + 1))[:length]
            payload = (int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")).to_bytes(length, "big")
        return first & 0x0F, bool(first & 0x80), payload

    async def _read_loop(self) -> None:
        """Reads frames: replies resolve their request, stream messages go to the queue (waiting
        while it is full), pings are answered, a close ends it all."""
        parts: list[bytes] = []
        try:
            while True:
                opcode, fin, payload = await self._read_frame()
                if opcode == _PING:
                    await self._send(_PONG, payload)
                    continue
                if opcode == _PONG:
                    continue
                if opcode == _CLOSE:
                    code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
                    raise PushClosed(code, payload[2:].decode("utf-8", "replace"))
                parts.append(payload)
                if not fin:
                    continue
                text, parts = b"".join(parts), []
                await self._dispatch(json.loads(text))
        except PushClosed as closed:
            self._finish(closed)
        except (asyncio.IncompleteReadError, OSError) as error:
            self._finish(PushClosed(1006, str(error) or "connection lost"))

    async def _dispatch(self, message: dict[str, Any]) -> None:
        if "stream" in message:
            await self._messages.put((message["stream"], message["data"]))
            return
        reply = self._replies.get(message.get("id"))
        if reply is not None and not reply.done():
            reply.set_result(message)

    def _finish(self, closed: PushClosed) -> None:
        if self._closed:
            return
        self._closed = closed
        for reply in self._replies.values():
            if not reply.done():
                reply.set_exception(closed)
        # The iterator learns of the end after the messages before it; a full queue drops the
        # oldest message to make room (the connection is over anyway).
        if self._messages.full():
            self._messages.get_nowait()
        self._messages.put_nowait(closed)
