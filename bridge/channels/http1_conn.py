"""One HTTP/1.1 client connection of `http1.Poster`: one request at a time, its answer parsed as the
bytes arrive (status line, headers, then a Content-Length, chunked or close-delimited body, of
which the first EXCERPT_BYTES are kept)."""

from __future__ import annotations

import asyncio
from typing import NamedTuple, cast

MAX_HEAD = 64 * 1024  # status line and headers of an answer
MAX_DRAIN = 64 * 1024  # body bytes read past the excerpt to keep a connection; more: close it
EXCERPT_BYTES = 256  # of the answer, for the attempt record


class HttpError(OSError):
    """The server broke HTTP/1.1 or the connection (a failed attempt, retried by the schedule)."""


class Stale(HttpError):
    """A reused connection closed before any byte of the answer: the request may be retried."""


class Answer(NamedTuple):
    status: int
    retry_after: str | None
    excerpt: bytes


# Parser states
_HEAD, _LENGTH, _CHUNK_SIZE, _CHUNK_DATA, _CHUNK_END, _TRAILERS, _UNTIL_EOF = range(7)


class Connection(asyncio.Protocol):
    """One HTTP/1.1 connection: one request at a time, its answer parsed as bytes arrive."""

    def __init__(self) -> None:
        self._transport: asyncio.Transport | None = None
        self._waiter: asyncio.Future[tuple[Answer, bool]] | None = None
        self._buf = bytearray()
        self.open = False
        self.idle_since = 0.0
        self._reused = False  # a request was made on it before: a close before the answer is stale
        self._stale_ok = False
        self._got_bytes = False
        self._state = _HEAD
        self._status = 0
        self._retry_after: str | None = None
        self._excerpt = bytearray()
        self._drained = 0
        self._remaining = 0
        self._keep = False

    # -- asyncio.Protocol ---------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # a stream transport (TCP, TLS)
        self.open = True

    def data_received(self, data: bytes) -> None:
        if self._waiter is None or self._waiter.done():
            self.abort()  # bytes nobody asked for: this connection cannot be trusted with the next one
            return
        self._buf += data
        self._got_bytes = True
        try:
            self._parse()
        except HttpError as exc:
            self._fail(exc)

    def eof_received(self) -> bool:
        self._ended(None)
        return False  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.open = False
        self._ended(exc)

    # -- requests -----------------------------------------------------------------------------------

    async def request(self, data: bytes) -> tuple[Answer, bool]:
        """Write one request; its answer and whether the connection may be used again."""
        transport = self._transport
        if transport is None or not self.open or transport.is_closing():
            raise Stale("connection closed while idle")
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[tuple[Answer, bool]] = loop.create_future()
        self._waiter = waiter
        self._buf.clear()
        self._got_bytes = False
        self._state = _HEAD
        self._status = 0
        self._retry_after = None
        self._excerpt = bytearray()
        self._drained = 0
        self._remaining = 0
        self._keep = False
        self._stale_ok, self._reused = self._reused, True
        transport.write(data)
        return await waiter

    def close(self) -> None:
        self.open = False
        if self._transport is not None:
            self._transport.close()

    def abort(self) -> None:
        self.open = False
        if self._transport is not None:
            self._transport.abort()

    def _fail(self, exc: BaseException) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)
        self.abort()

    def _done(self) -> None:
        waiter = self._waiter
        keep = self._keep and not self._buf  # leftover bytes: not ours to interpret; do not reuse
        if waiter is not None and not waiter.done():
            waiter.set_result((Answer(self._status, self._retry_after, bytes(self._excerpt)), keep))
        self._waiter = None

    def _ended(self, exc: Exception | None) -> None:
        """The server closed (EOF) or the connection broke."""
        self.open = False
        waiter = self._waiter
        if waiter is None or waiter.done():
            return
        if self._state == _UNTIL_EOF:
            self._keep = False
            self._done()
        elif not self._got_bytes and self._stale_ok:
            waiter.set_exception(Stale("the server closed a kept-alive connection"))
        else:
            why = f": {exc}" if exc is not None else ""
            waiter.set_exception(HttpError(f"server disconnected before the answer was complete{why}"))

    # -- the answer ---------------------------------------------------------------------------------

    def _take_body(self, data: bytes | bytearray) -> None:
        room = EXCERPT_BYTES - len(self._excerpt)
        if room > 0:
            self._excerpt += data[:room]
        self._drained += len(data)

    def _parse(self) -> None:
        buf = self._buf
        while True:
            state = self._state
            if state == _HEAD:
                end = buf.find(b"\r\n\r\n")
                if end < 0:
                    if len(buf) > MAX_HEAD:
                        raise HttpError("answer header too large")
                    return
                head = bytes(buf[:end])
                del buf[: end + 4]
                if self._head(head):
                    continue  # an interim 1xx: the real answer follows
                if self._state == _HEAD:  # no body
                    self._done()
                    return
            elif state == _LENGTH:
                n = min(self._remaining, len(buf))
                self._take_body(buf[:n])
                del buf[:n]
                self._remaining -= n
                if self._remaining == 0:
                    self._state = _HEAD
                    self._done()
                    return
                if self._drained > MAX_DRAIN:  # a large answer: what the record needs is read
                    self._keep = False
                    buf.clear()
                    self._done()
                    return
                return
            elif state == _CHUNK_SIZE:
                end = buf.find(b"\r\n")
                if end < 0:
                    if len(buf) > 1024:
                        raise HttpError("bad chunk size line")
                    return
                line = bytes(buf[:end]).split(b";", 1)[0].strip()
                del buf[: end + 2]
                try:
                    size = int(line, 16)
                except ValueError:
                    raise HttpError("bad chunk size line") from None
                if size < 0:
                    raise HttpError("bad chunk size line")
                self._remaining = size
                self._state = _CHUNK_DATA if size else _TRAILERS
            elif state == _CHUNK_DATA:
                n = min(self._remaining, len(buf))
                self._take_body(buf[:n])
                del buf[:n]
                self._remaining -= n
                if self._remaining:
                    if self._drained > MAX_DRAIN:
                        self._keep = False
                        buf.clear()
                        self._done()
                    return
                self._state = _CHUNK_END
            elif state == _CHUNK_END:
                if len(buf) < 2:
                    return
                if buf[:2] != b"\r\n":
                    raise HttpError("bad chunk terminator")
                del buf[:2]
                if self._drained > MAX_DRAIN:
                    self._keep = False
                    buf.clear()
                    self._done()
                    return
                self._state = _CHUNK_SIZE
            elif state == _TRAILERS:
                end = buf.find(b"\r\n")
                if end < 0:
                    if len(buf) > MAX_HEAD:
                        raise HttpError("answer trailers too large")
                    return
                del buf[: end + 2]
                if end == 0:  # the empty line that ends the trailers
                    self._state = _HEAD
                    self._done()
                    return
            else:  # _UNTIL_EOF: the body ends when the server closes
                self._take_body(buf)
                buf.clear()
                if self._drained > MAX_DRAIN:
                    self._done()
                return

    def _head(self, head: bytes) -> bool:
        """Read a status line and headers; True for an interim 1xx answer (skipped)."""
        lines = head.split(b"\r\n")
        parts = lines[0].split(b" ", 2)
        code = parts[1] if len(parts) > 1 else b""
        if not parts[0].startswith(b"HTTP/1.") or len(code) != 3 or not code.isdigit():
            raise HttpError(f"not an HTTP/1.x answer: {lines[0][:40]!r}")
        status = int(code)
        if 100 <= status < 200:
            if status == 101:
                raise HttpError("unexpected 101 Switching Protocols")
            return True
        length: int | None = None
        chunked = False
        close = parts[0] != b"HTTP/1.1"
        for line in lines[1:]:
            name, sep, value = line.partition(b":")
            if not sep:
                raise HttpError("malformed answer header")
            key = name.strip().lower()
            if key == b"content-length":
                v = value.strip()
                if not v.isdigit() or (length is not None and length != int(v)):
                    raise HttpError("bad Content-Length")
                length = int(v)
            elif key == b"transfer-encoding":
                chunked = value.strip().lower().endswith(b"chunked")
            elif key == b"connection":
                tokens = {t.strip().lower() for t in value.split(b",")}
                close = b"close" in tokens or (close and b"keep-alive" not in tokens)
            elif key == b"retry-after":
                self._retry_after = value.strip().decode("latin-1")
        self._status = status
        self._keep = not close
        if status in (204, 304):
            self._state = _HEAD
        elif chunked:
            self._state = _CHUNK_SIZE
        elif length is not None:
            self._remaining = length
            self._state = _LENGTH if length else _HEAD
        else:
            self._keep = False
            self._state = _UNTIL_EOF
        return False
