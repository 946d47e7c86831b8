"""A lean HTTP/1.1 GET client for provider reads: pooled keep-alive connections per origin, answers
parsed by httptools (#16).

aiohttp's request machinery (ClientRequest, connector key, timer context, writer, ClientResponse,
the middleware chain) cost ~100 µs of CPU per GET here, most of a by-id poll (bench/README.md,
"pollpath"); this writes one request head and parses the answer in `data_received` (~20 µs).

Kept from the aiohttp session it replaces on this path: TLS with certificate and host name
verification (`ssl.create_default_context()`); the caller's total timeout over connect, write and
read; redirects never followed (a 3xx is returned as is and classified by the caller); a reused
connection the server closed before answering is retried once on a new one, as aiohttp retries
an idempotent request; names resolved as aiohttp's connector does (its `ThreadedResolver`, cached
10 s; `aiohappyeyeballs`). No cookies are kept (the providers authenticate by header) and no
`Accept-Encoding` is sent; a gzip or deflate body sent anyway is decompressed within the cap.
"""

from __future__ import annotations

import socket
import ssl
import time
import zlib
from typing import NamedTuple

from aiohttp.resolver import ThreadedResolver
from yarl import URL

from bridge.channels.http1 import header_bytes
from bridge.channels.http1_base import AddrInfo, Endpoint, OneRequestConnection, connect
from bridge.channels.http1_pool import IdlePool

DNS_TTL_S = 10.0


class WireError(OSError):
    """The server broke HTTP/1.1 or the connection before the answer's head was complete."""


class BrokenBody(WireError):
    """The body ended early, was malformed, or could not be decoded (a malformed answer)."""


class TooLarge(WireError):
    """The body is over the caller's cap."""


class Stale(WireError):
    """A reused connection closed before any byte of the answer: the GET may be retried."""


class Reply(NamedTuple):
    status: int
    headers: dict[str, str]  # lower-case names; only those a provider answer is read for
    body: bytes


_KEPT = frozenset({b"retry-after", b"content-encoding", b"content-length", b"transfer-encoding"})


class _Conn(OneRequestConnection[Reply]):
    stale = Stale

    def __init__(self) -> None:
        super().__init__()
        self._cap = 0
        self._reset()

    def _reset(self) -> None:
        self._status = 0
        self._headers: dict[str, str] = {}
        self._body: list[bytes] = []
        self._size = 0
        self._head_bytes = 0
        self._in_body = False
        self._framed = False

    def data_received(self, data: bytes) -> None:
        self._feed(data)

    def _broken(self, message: str) -> Exception:
        return (BrokenBody if self._in_body else WireError)(message)

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        key = name.lower()
        if key in _KEPT:
            self._headers[key.decode()] = value.decode("latin-1").strip()
            if key != b"retry-after" and key != b"content-encoding":
                self._framed = True

    def on_headers_complete(self) -> None:
        parser = self._parser
        status = parser.get_status_code() if parser is not None else 0
        if 100 <= status < 200:
            self._headers, self._framed = {}, False
            return  # an interim answer: the real one follows
        self._status = status
        self._in_body = True
        length = self._headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > self._cap:
            self._fail(TooLarge(f"body of {length} bytes exceeds the {self._cap} byte cap"))

    def on_body(self, body: bytes) -> None:
        if not self._status:
            return
        self._size += len(body)
        if self._size > self._cap:
            self._fail(TooLarge(f"body exceeds the {self._cap} byte cap"))
            return
        self._body.append(body)

    def on_message_complete(self) -> None:
        if not self._status:
            return
        keep = self._parser is not None and self._parser.should_keep_alive()
        self._done(keep)

    async def request(self, data: bytes, cap: int) -> tuple[Reply, bool]:
        self._cap = cap
        self._reset()
        return await self._begin(data)

    def _done(self, keep: bool) -> None:
        self._finish(Reply(self._status, self._headers, b"".join(self._body)), keep)

    def _cut(self, exc: Exception | None) -> None:
        if self._in_body and not self._framed:  # a body that ends when the server closes
            self._done(False)
        elif self._in_body:
            self._fail(BrokenBody("the server closed the connection within the body"))
        else:
            why = f": {exc}" if exc is not None else ""
            self._fail(WireError(f"server disconnected before the answer{why}"))


class Origin:
    """GETs on one origin (scheme, host, port) over pooled keep-alive connections."""

    def __init__(self, url: URL, *, ssl_context: ssl.SSLContext | None = None) -> None:
        end = Endpoint.of(url, ssl_context)
        self._host, self._port, self._ssl = end.host, end.port, end.tls
        self.host_header = end.host_header
        self._resolver = ThreadedResolver()
        self._pool: IdlePool[_Conn] = IdlePool()
        self._addresses: list[AddrInfo] = []
        self._resolved_at = -DNS_TTL_S

    async def get(self, path_qs: str, head: bytes, cap: int) -> Reply:
        """One GET (`head`: its header lines, CRLF each); raises WireError subclasses or OSError.
        The caller bounds the time (asyncio.timeout)."""
        data = b"GET %b HTTP/1.1\r\nHost: %b\r\n%b\r\n" % (
            path_qs.encode("latin-1"),
            self.host_header.encode("latin-1"),
            head,
        )
        return await self._pool.exchange(lambda conn: conn.request(data, cap), self._connect)

    async def _connect(self) -> _Conn:
        if time.monotonic() - self._resolved_at >= DNS_TTL_S:
            answers = await self._resolver.resolve(self._host, self._port, socket.AF_UNSPEC)
            if not answers:
                raise WireError(f"{self._host} has no address")
            self._addresses = [
                (a["family"], socket.SOCK_STREAM, socket.IPPROTO_TCP, "", _sockaddr(a["host"], a["port"]))
                for a in answers
            ]
            self._resolved_at = time.monotonic()
        return await connect(_Conn, self._addresses, self._ssl, self._host)

    async def close(self) -> None:
        self._pool.close()
        await self._resolver.close()


def _sockaddr(host: str, port: int) -> tuple[object, ...]:
    return (host, port, 0, 0) if ":" in host else (host, port)


def decoded(reply: Reply, cap: int) -> bytes:
    """The body without its Content-Encoding (gzip or deflate, within `cap`); BrokenBody otherwise."""
    encoding = reply.headers.get("content-encoding", "identity").lower()
    if encoding in ("", "identity"):
        return reply.body
    if encoding not in ("gzip", "deflate", "x-gzip"):
        raise BrokenBody(f"unsupported Content-Encoding {encoding!r}")
    d = zlib.decompressobj(wbits=zlib.MAX_WBITS | 32)  # gzip or zlib framing
    try:
        out = d.decompress(reply.body, cap + 1)
    except zlib.error as exc:
        raise BrokenBody(f"broken {encoding} body") from exc
    if len(out) > cap:
        raise TooLarge(f"decoded body exceeds the {cap} byte cap")
    return out


__all__ = ["BrokenBody", "Origin", "Reply", "Stale", "TooLarge", "WireError", "decoded", "header_bytes"]
