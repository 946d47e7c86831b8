"""A lean HTTP/1.1 POST client for one webhook URL: pooled keep-alive connections, request bytes
built once, a small response parser (#16).

aiohttp's `ClientSession` builds a ClientRequest, a connector key, a timer context, a writer and a
ClientResponse per request: 40-55 % of the event loop's time per durable delivery (bench/README.md,
"fifth pass"). A webhook only ever POSTs bytes to one configured origin and needs the status, the
first bytes of the answer and `Retry-After`, so this client writes one prebuilt head + the body on a
pooled connection and parses the answer in `data_received`.

What it keeps from the session it replaces: TLS with certificate and host name verification
(`ssl.create_default_context()`); a total timeout over connect, write and read; redirects never
followed (the status is returned as is); names resolved by the given resolver, so the outbound
guard (`outbound.GuardedResolver`) checks the address connected to, and answers cached 10 s as
aiohttp's connector does, each new connection made as its connector makes it (`aiohappyeyeballs`,
aiohttp's own dependency: the next address family tried after 250 ms); idle connections dropped
after 15 s or when the server closes them. A
reused connection the server closed before answering is retried once on a new one (what aiohttp's
caller would otherwise see as a failed attempt, retried later with the same webhook-id anyway).
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from collections.abc import Sequence

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from bridge.channels.http1_base import AddrInfo, Endpoint, connect
from bridge.channels.http1_conn import EXCERPT_BYTES, Answer, Connection, HttpError
from bridge.channels.http1_pool import IdlePool

__all__ = ["EXCERPT_BYTES", "Answer", "HttpError", "Poster", "header_bytes"]

DNS_TTL_S = 10.0  # as aiohttp's connector's DNS cache


def header_bytes(headers: Sequence[tuple[str, str]]) -> bytes:
    """`Name: value\\r\\n` lines; a value with a line break would inject headers, so it is refused."""
    out = bytearray()
    for name, value in headers:
        if any(c in name for c in "\r\n:") or not name.strip() or "\r" in value or "\n" in value:
            raise ValueError(f"header {name!r}: line breaks (or a colon in the name) are not allowed")
        out += f"{name}: {value}\r\n".encode("latin-1")
    return bytes(out)


class Poster:
    """POSTs bodies to one URL on pooled keep-alive connections; `close` drops them."""

    def __init__(
        self,
        url: str,
        headers: Sequence[tuple[str, str]],
        *,
        resolver: AbstractResolver | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        u = URL(url)
        end = Endpoint.of(u, ssl_context)
        self._host, self._port, self._ssl = end.host, end.port, end.tls
        self._literal = _is_ip(self._host)
        self._resolver = resolver
        path = u.raw_path_qs or "/"
        # The head of every request but its per-attempt headers and length (appended by `post`).
        ours = [("Host", end.host_header), ("Accept", "*/*")]
        if u.user is not None:  # credentials in the URL: Basic auth, as aiohttp sends them
            ours.append(("Authorization", aiohttp.encode_basic_auth(u.user, u.password or "")))
        given = {name.lower() for name, _ in headers}  # a configured header replaces ours
        ours = [(n, v) for n, v in ours if n.lower() not in given]
        self._head = f"POST {path} HTTP/1.1\r\n".encode("latin-1") + header_bytes([*ours, *headers])
        self._pool: IdlePool[Connection] = IdlePool()
        self._addresses: list[AddrInfo] = []
        self._resolved_at = -DNS_TTL_S
        self._resolving: asyncio.Future[list[ResolveResult]] | None = None

    async def post(self, extra_head: bytes, body: bytes, *, within_s: float) -> Answer:
        """POST `body` with the static head plus `extra_head` (header lines); the answer, or raises
        TimeoutError, OutboundRefused (from the resolver) or another OSError."""
        data = b"%b%bContent-Length: %d\r\n\r\n%b" % (self._head, extra_head, len(body), body)
        async with asyncio.timeout(within_s):
            return await self._pool.exchange(lambda conn: conn.request(data), self._connect)

    async def _connect(self) -> Connection:
        return await connect(Connection, await self._addr_infos(), self._ssl, self._host)

    async def _addr_infos(self) -> list[AddrInfo]:
        if self._literal:
            return [_addr_info(self._host, self._port)]
        if self._resolver is None:  # no guard asked for: the system's resolver, uncached
            loop = asyncio.get_running_loop()
            infos = await loop.getaddrinfo(self._host, self._port, type=socket.SOCK_STREAM)
            return [(f, t, p, "", addr) for f, t, p, _, addr in infos]
        if time.monotonic() - self._resolved_at >= DNS_TTL_S:
            # One look-up for every connection opened meanwhile (a burst opens dozens at once).
            if self._resolving is None:
                self._resolving = asyncio.ensure_future(
                    self._resolver.resolve(self._host, self._port, socket.AF_UNSPEC)
                )
            resolving = self._resolving
            try:
                answers = await asyncio.shield(resolving)
            finally:
                if self._resolving is resolving and resolving.done():
                    self._resolving = None
            if not answers:
                raise HttpError(f"{self._host} has no address")
            self._addresses = [_addr_info(a["host"], a["port"]) for a in answers]
            self._resolved_at = time.monotonic()
        return self._addresses

    async def close(self) -> None:
        self._pool.close()
        if self._resolver is not None:
            await self._resolver.close()


def _addr_info(host: str, port: int) -> AddrInfo:
    if ":" in host:  # IPv6
        return (socket.AF_INET6, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (host, port, 0, 0))
    return (socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (host, port))


def _is_ip(host: str) -> bool:
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, host)
        except OSError:
            continue
        return True
    return False
