"""One HTTP/1.1 client connection of `http1.Poster`: one request at a time, its answer parsed as the
bytes arrive by httptools (llhttp, the parser Node.js and uvicorn use), of which the status,
`Retry-After` and the first EXCERPT_BYTES of the body are kept."""

from __future__ import annotations

from typing import NamedTuple

from bridge.channels.http1_base import MAX_HEAD, OneRequestConnection

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


class Connection(OneRequestConnection[Answer]):
    """One HTTP/1.1 connection: one request at a time, its answer parsed as bytes arrive.

    httptools calls back `on_header`, `on_headers_complete`, `on_body` and `on_message_complete`
    from `feed_data`; an interim 1xx answer is a message of its own and is skipped."""

    stale = Stale

    def __init__(self) -> None:
        super().__init__()
        self._reset_answer()

    def _reset_answer(self) -> None:
        self._status = 0
        self._retry_after: str | None = None
        self._excerpt = bytearray()
        self._drained = 0
        self._head_bytes = 0  # bytes fed while the head was incomplete (a head that never ends)
        self._header_bytes = 0  # of the header lines parsed (a head that came whole in one read)
        self._in_body = False
        self._framed = False  # Content-Length or chunked: an EOF before the end is a broken answer
        self._complete = False
        self._extra = False  # bytes after the answer: not ours to interpret, so no reuse
        self._keep = False

    # -- asyncio.Protocol ---------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if not self._feed(data):
            return
        if self._header_bytes > MAX_HEAD:  # a head that came whole in one read
            self._fail(HttpError("answer header too large"))
        elif self._complete:
            self._done()
        elif self._drained > MAX_DRAIN:  # a large answer: what the record needs is read
            self._keep = False
            self._done()

    def _broken(self, message: str) -> Exception:
        return HttpError(message)

    # -- httptools callbacks ------------------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self._complete:
            self._extra = True

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_bytes += len(name) + len(value) + 4
        key = name.lower()
        if key == b"retry-after":
            self._retry_after = value.strip().decode("latin-1")
        elif key in (b"content-length", b"transfer-encoding"):
            self._framed = True

    def on_headers_complete(self) -> None:
        parser = self._parser
        status = parser.get_status_code() if parser is not None else 0
        if 100 <= status < 200:
            self._retry_after, self._framed = None, False
            return  # an interim answer: the real one follows
        self._status = status
        self._in_body = True

    def on_body(self, body: bytes) -> None:
        if self._status:
            room = EXCERPT_BYTES - len(self._excerpt)
            if room > 0:
                self._excerpt += body[:room]
            self._drained += len(body)

    def on_message_complete(self) -> None:
        if not self._status or self._complete:
            return  # the end of an interim 1xx (or of bytes past the answer)
        self._keep = self._parser is not None and self._parser.should_keep_alive()
        self._complete = True

    # -- requests -----------------------------------------------------------------------------------

    async def request(self, data: bytes) -> tuple[Answer, bool]:
        """Write one request; its answer and whether the connection may be used again."""
        self._reset_answer()
        return await self._begin(data)

    def _done(self) -> None:
        answer = Answer(self._status, self._retry_after, bytes(self._excerpt))
        self._finish(answer, self._keep and not self._extra)

    def _cut(self, exc: Exception | None) -> None:
        if self._in_body and not self._framed:  # a body that ends when the server closes
            self._keep = False
            self._done()
        else:
            why = f": {exc}" if exc is not None else ""
            self._fail(HttpError(f"server disconnected before the answer was complete{why}"))
