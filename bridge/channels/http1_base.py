"""What the two lean HTTP/1.1 clients' connections share (the webhook `Poster`'s `Connection` in
`http1_conn.py`, the provider GET `Origin`'s in `bridge/providers/http1.py`): one request at a time
on one transport, the answer parsed by httptools as bytes arrive, and how a connection is opened.
Each subclass keeps what it needs of an answer (256 bytes for an attempt record, against a capped,
decoded body for a read) and decides how an answer cut short reads (`_cut`)."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, TypeVar, cast

import aiohappyeyeballs
import httptools
from yarl import URL

AddrInfo = tuple[int, int, int, str, tuple[Any, ...]]  # as socket.getaddrinfo gives them
MAX_HEAD = 64 * 1024  # status line and headers of an answer
A = TypeVar("A")  # what a request's answer is made into
P = TypeVar("P", bound=asyncio.Protocol)


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where an http(s) URL's requests go: host and port, TLS (verified by default), `Host` header."""

    host: str
    port: int
    tls: ssl.SSLContext | None
    host_header: str  # an IPv6 literal in brackets, the port only when the URL gave one

    @classmethod
    def of(cls, url: URL, ssl_context: ssl.SSLContext | None = None) -> Endpoint:
        if url.scheme not in ("http", "https") or not url.raw_host:
            raise ValueError(f"not an http(s) URL: {url}")
        secure = url.scheme == "https"
        host = url.raw_host
        port = url.port or (443 if secure else 80)
        tls = (ssl_context or ssl.create_default_context()) if secure else None
        header = f"[{host}]" if ":" in host else host
        return cls(host, port, tls, header + (f":{port}" if url.explicit_port else ""))


class OneRequestConnection(asyncio.Protocol, Generic[A]):
    """One HTTP/1.1 connection: `_begin` writes a request, the subclass's httptools callbacks fill
    the answer, and `_waiter` gets it with whether the connection may be used again."""

    stale: ClassVar[type[Exception]]  # raised when a reused connection closed while idle
    # The subclass's answer state, reset before each request: bytes fed while the head was
    # incomplete (a head that never ends), and whether the body has begun.
    _head_bytes: int
    _in_body: bool

    def __init__(self) -> None:
        self._transport: asyncio.Transport | None = None
        self._waiter: asyncio.Future[tuple[A, bool]] | None = None
        self._parser: httptools.HttpResponseParser | None = None
        self.open = False
        self.idle_since = 0.0
        self._reused = False  # a request was made on it before: a close before the answer is stale
        self._stale_ok = False
        self._got_bytes = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # a stream transport (TCP, TLS)
        self.open = True

    def eof_received(self) -> bool:
        self._closed(None)
        return False  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed(exc)

    def _closed(self, exc: Exception | None) -> None:
        """The server closed (EOF) or the connection broke."""
        self.open = False
        waiter = self._waiter
        if waiter is None or waiter.done():
            return
        if not self._got_bytes and self._stale_ok:
            self._fail(self.stale("the server closed a kept-alive connection"))
        else:
            self._cut(exc)

    def _feed(self, data: bytes) -> bool:
        """`data_received`'s common part: the bytes to the parser (whose callbacks are the
        subclass's); False when the connection failed on them or nobody asked for them."""
        parser = self._parser
        if parser is None or self._waiter is None or self._waiter.done():
            self.abort()  # bytes nobody asked for: this connection cannot be trusted with the next request
            return False
        self._got_bytes = True
        if not self._in_body:
            self._head_bytes += len(data)
        try:
            parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(self._broken("unexpected 101 Switching Protocols"))
            return False
        except httptools.HttpParserError as exc:
            self._fail(self._broken(f"malformed HTTP answer: {exc}"))
            return False
        if not self._in_body and self._head_bytes > MAX_HEAD:
            self._fail(self._broken("answer header too large"))
            return False
        return self._waiter is not None  # a callback may have failed it

    def _broken(self, message: str) -> Exception:
        """The error of an answer that broke HTTP/1.1 (the subclass's own classes)."""
        raise NotImplementedError

    def _cut(self, exc: Exception | None) -> None:
        """The connection ended with some of the answer read (or none, on a first request)."""
        raise NotImplementedError

    def _finish(self, answer: A, keep: bool) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result((answer, keep))
        self._waiter = None
        self._parser = None

    def _begin(self, data: bytes) -> asyncio.Future[tuple[A, bool]]:
        """Write one request (the subclass has reset its answer state); its answer's future."""
        transport = self._transport
        if transport is None or not self.open or transport.is_closing():
            raise self.stale("connection closed while idle")
        waiter: asyncio.Future[tuple[A, bool]] = asyncio.get_running_loop().create_future()
        self._waiter = waiter
        self._parser = httptools.HttpResponseParser(self)
        self._got_bytes = False
        self._stale_ok, self._reused = self._reused, True
        transport.write(data)
        return waiter

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
        self._waiter = None
        self.abort()


async def connect(
    factory: Callable[[], P], addresses: Sequence[AddrInfo], tls: ssl.SSLContext | None, host: str
) -> P:
    """A new connection: the addresses tried as aiohttp's connector does (happy eyeballs, 250 ms
    before the next address family), then TLS on the connected socket when `tls` is given."""
    sock = await aiohappyeyeballs.start_connection(list(addresses), happy_eyeballs_delay=0.25, interleave=1)
    try:
        _, conn = await asyncio.get_running_loop().create_connection(
            factory, sock=sock, ssl=tls, server_hostname=host.rstrip(".") if tls is not None else None
        )
    except BaseException:
        sock.close()
        raise
    return conn
