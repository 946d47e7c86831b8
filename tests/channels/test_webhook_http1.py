"""The webhook channel's own HTTP/1.1 client (bridge/channels/http1.py): connections kept alive and
reused, chunked and closing answers read, a kept-alive connection the server dropped retried once,
TLS verified, header injection refused. Against real servers: aiohttp's, and a raw socket server
whose misbehaviour the test scripts."""

from __future__ import annotations

import asyncio
import base64
import ssl
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import aiohttp
import pytest
import trustme
from aiohttp import web
from standardwebhooks import Webhook

from bridge.channels.base import RenderContext
from bridge.channels.http1 import header_bytes
from bridge.channels.webhook import WebhookChannel
from bridge.clock import ManualClock
from bridge.config.models import WebhookChannelConfig
from bridge.model import Change, Delivery, Event, ResourceKey, delivery_id

SECRET = "whsec_" + base64.b64encode(b"http1-test-secret-0123456789abcd").decode()


@dataclass
class Seen:
    """What an aiohttp receiver saw: each request's peer port, path, headers and body."""

    requests: list[tuple[int, str, dict[str, str], bytes]] = field(default_factory=list)

    @property
    def ports(self) -> list[int]:
        return [port for port, *_ in self.requests]


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(datetime.now(UTC).replace(microsecond=0))


@pytest.fixture
async def channels(session, clock) -> AsyncIterator[Callable[..., WebhookChannel]]:
    made: list[WebhookChannel] = []

    def make(url: str, ssl_context: ssl.SSLContext | None = None, **extra: object) -> WebhookChannel:
        cfg = WebhookChannelConfig.model_validate({"kind": "webhook", "url": url, "secret": SECRET, **extra})
        channel = WebhookChannel("partner", cfg, session=session, clock=clock, ssl_context=ssl_context)
        made.append(channel)
        return channel

    yield make
    for channel in made:
        await channel.close()


def delivery_for(channel: WebhookChannel, n: int = 0) -> Delivery:
    at = datetime(2026, 12, 7, 1, 0, tzinfo=UTC)
    event = Event(
        id=f"evt_h{n}", rule_id="r", type="wallbox.charging_started", status="firing", severity="info",
        key=ResourceKey(source="podero.wallbox", provider="podero", resource_id=f"wb-{n}"), sequence=1,
        changes=(Change(field="is_charging", old=False, new=True),), state={"is_charging": True},
        occurred_at=at,
    )  # fmt: skip
    body = channel.render(event, RenderContext(old=None))
    return Delivery(
        id=delivery_id(event.id, channel.name), event_id=event.id, channel=channel.name, body=body,
        next_attempt_at=at, created_at=at,
    )  # fmt: skip


async def serve(aiohttp_server, handler, **kwargs: object) -> tuple[str, Seen]:
    seen = Seen()

    async def hook(request: web.Request) -> web.StreamResponse:
        peer = request.transport.get_extra_info("peername") if request.transport else ("", 0)
        seen.requests.append((peer[1], request.path_qs, dict(request.headers), await request.read()))
        return await handler(request)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", hook)
    server = await aiohttp_server(app, **kwargs)
    return str(server.make_url("/hook?tenant=acme")), seen


async def no_content(request: web.Request) -> web.StreamResponse:
    return web.Response(status=204)


async def test_sends_reuse_one_kept_alive_connection_and_carry_the_path_query_and_host(
    aiohttp_server, channels
):
    url, seen = await serve(aiohttp_server, no_content)
    channel = channels(url)
    results = [await channel.send(delivery_for(channel, i)) for i in range(5)]
    assert all(r.ok for r in results)
    assert len(set(seen.ports)) == 1  # one connection for the five
    _, path, headers, body = seen.requests[0]
    assert path == "/hook?tenant=acme"
    assert headers["Host"] == url.split("/")[2]
    assert headers["Content-Length"] == str(len(body))
    Webhook(SECRET).verify(body, headers)


async def test_a_chunked_answer_is_read_to_its_end_excerpted_and_the_connection_reused(
    aiohttp_server, channels
):
    async def chunked(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(status=200)
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        for _ in range(4):
            await resp.write(b"y" * 300)
        await resp.write_eof()
        return resp

    url, seen = await serve(aiohttp_server, chunked)
    channel = channels(url)
    first = await channel.send(delivery_for(channel, 1))
    second = await channel.send(delivery_for(channel, 2))
    assert (first.ok, first.status_code, first.response_excerpt) == (True, 200, "y" * 256)
    assert second.ok
    assert seen.ports[0] == seen.ports[1]


async def test_connection_close_and_a_large_answer_are_not_reused(aiohttp_server, channels):
    answers = [
        web.Response(status=202, text="bye", headers={"Connection": "close"}),
        web.Response(status=200, body=b"z" * 200_000),
        web.Response(status=204),
    ]

    async def scripted(request: web.Request) -> web.StreamResponse:
        return answers.pop(0)

    url, seen = await serve(aiohttp_server, scripted)
    channel = channels(url)
    results = [await channel.send(delivery_for(channel, i)) for i in range(3)]
    assert [(r.ok, r.status_code) for r in results] == [(True, 202), (True, 200), (True, 204)]
    assert results[0].response_excerpt == "bye"
    assert results[1].response_excerpt == "z" * 256
    assert len(set(seen.ports)) == 3  # each answer ended its connection


@dataclass
class RawServer:
    """A socket server that answers per connection as `script(connection number, request number)`
    says: bytes to write, or None to close the connection without answering."""

    script: Callable[[int, int], bytes | None]
    requests: list[tuple[int, bytes]] = field(default_factory=list)
    connections: int = 0
    url: str = ""

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn, self.connections = self.connections, self.connections + 1
        n = 0
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    int(line.split(b":", 1)[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
                self.requests.append((conn, head + await reader.readexactly(length)))
                answer = self.script(conn, n)
                n += 1
                if answer is None:
                    break
                writer.write(answer)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


class RawServers:
    """Starts RawServers for a test and closes them after it."""

    def __init__(self) -> None:
        self.servers: list[asyncio.Server] = []

    async def start(self, script: Callable[[int, int], bytes | None]) -> RawServer:
        raw = RawServer(script)
        server = await asyncio.start_server(raw.handle, "127.0.0.1", 0)
        self.servers.append(server)
        raw.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/hook"
        return raw


@pytest.fixture
async def raw_server() -> AsyncIterator[RawServers]:
    servers = RawServers()
    yield servers
    for server in servers.servers:
        server.close()
        await server.wait_closed()


OK_204 = b"HTTP/1.1 204 No Content\r\n\r\n"


def webhook_id(request: bytes) -> bytes:
    return next(line for line in request.split(b"\r\n") if line.lower().startswith(b"webhook-id:"))


async def test_a_kept_alive_connection_the_server_dropped_is_retried_once_on_a_new_one(raw_server, channels):
    # Connection 0 answers its first request, then closes on the second without a byte.
    raw = await raw_server.start(lambda conn, n: OK_204 if conn > 0 or n == 0 else None)
    channel = channels(raw.url)
    first = await channel.send(delivery_for(channel, 1))
    second = await channel.send(delivery_for(channel, 2))
    assert (first.ok, second.ok) == (True, True), second.error
    assert [conn for conn, _ in raw.requests] == [0, 0, 1]
    assert webhook_id(raw.requests[1][1]) == webhook_id(raw.requests[2][1])  # the same message again
    assert raw.requests[1][1].split(b"\r\n\r\n", 1)[1] == raw.requests[2][1].split(b"\r\n\r\n", 1)[1]


async def test_a_new_connection_closed_before_the_answer_is_a_retryable_failure_not_retried_here(
    raw_server, channels
):
    raw = await raw_server.start(lambda conn, n: None)
    channel = channels(raw.url)
    result = await channel.send(delivery_for(channel))
    assert (result.ok, result.permanent) == (False, False)
    assert result.error is not None
    assert result.error.startswith("connection error: HttpError: server disconnected")
    assert len(raw.requests) == 1


@pytest.mark.parametrize(
    "answer",
    [
        b"hello\r\n\r\n",
        b"HTTP/1.1 2000 Nope\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nX-Pad: " + b"a" * 70_000,  # a head over 64 KB that never ends
    ],
)
async def test_an_answer_that_is_not_http_is_a_retryable_connection_error(raw_server, channels, answer):
    raw = await raw_server.start(lambda conn, n: answer)
    channel = channels(raw.url)
    result = await channel.send(delivery_for(channel))
    assert (result.ok, result.permanent) == (False, False)
    assert result.error is not None
    assert result.error.startswith("connection error: HttpError")


async def test_an_interim_100_continue_is_skipped_and_retry_after_read(raw_server, channels):
    answer = (
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 503 Busy\r\nRetry-After: 7\r\nContent-Length: 4\r\n\r\nbusy"
    )
    raw = await raw_server.start(lambda conn, n: answer)
    channel = channels(raw.url)
    result = await channel.send(delivery_for(channel))
    assert (result.ok, result.status_code, result.response_excerpt) == (False, 503, "busy")
    assert result.retry_after is not None


async def test_tls_is_verified_against_the_trusted_cas(aiohttp_server, channels):
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_ctx)
    url, seen = await serve(aiohttp_server, no_content, ssl=server_ctx)
    assert url.startswith("https://")

    untrusted = channels(url)  # the system's CAs: this private CA is not among them
    refused = await untrusted.send(delivery_for(untrusted))
    assert (refused.ok, refused.permanent) == (False, False)
    assert refused.error is not None
    assert "certificate verify failed" in refused.error
    assert seen.requests == []

    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    trusted = channels(url, ssl_context=client_ctx)
    delivered = await trusted.send(delivery_for(trusted))
    assert delivered.ok, delivered.error
    [(_, _, headers, body)] = seen.requests
    Webhook(SECRET).verify(body, headers)


async def test_a_header_with_a_line_break_fails_every_send_without_a_request(aiohttp_server, channels):
    url, seen = await serve(aiohttp_server, no_content)
    channel = channels(url, headers={"X-Partner": "acme\r\nX-Injected: 1"})
    result = await channel.send(delivery_for(channel))
    assert (result.ok, result.permanent) == (False, True)
    assert result.error is not None
    assert result.error.startswith("channel headers: header 'X-Partner'")
    assert seen.requests == []


async def test_a_name_without_a_guard_is_resolved_by_the_system_and_delivered(aiohttp_server, channels):
    url, seen = await serve(aiohttp_server, no_content)
    channel = channels(url.replace("127.0.0.1", "localhost"))  # built without an outbound guard
    results = [await channel.send(delivery_for(channel, i)) for i in range(2)]
    assert all(r.ok for r in results), results
    assert len(set(seen.ports)) == 1
    assert seen.requests[0][2]["Host"].startswith("localhost:")


async def test_a_configured_host_or_accept_header_replaces_ours(aiohttp_server, channels):
    url, seen = await serve(aiohttp_server, no_content)
    channel = channels(url, headers={"host": "hooks.partner.example", "Accept": "application/json"})
    assert (await channel.send(delivery_for(channel))).ok
    raw_headers = seen.requests[0][2]
    assert raw_headers["Host"] == "hooks.partner.example"
    assert raw_headers["Accept"] == "application/json"


async def test_credentials_in_the_url_are_sent_as_basic_auth(aiohttp_server, channels):
    url, seen = await serve(aiohttp_server, no_content)
    channel = channels(url.replace("http://", "http://hook%20user:s3cr%3At@"))
    assert (await channel.send(delivery_for(channel))).ok
    scheme, _, encoded = seen.requests[0][2]["Authorization"].partition(" ")
    assert (scheme, base64.b64decode(encoded)) == ("Basic", b"hook user:s3cr:t")


def test_header_lines_refuse_breaks_and_colons_in_names():
    assert header_bytes([("X-A", "1"), ("User-Agent", "w/1")]) == b"X-A: 1\r\nUser-Agent: w/1\r\n"
    for bad in [("X-A", "1\n"), ("X:A", "1"), ("X-A\r", "1"), (" ", "1")]:
        with pytest.raises(ValueError, match="line breaks"):
            header_bytes([bad])


async def answer_once_and_close(answer: bytes) -> tuple[asyncio.Server, str]:
    """A server that reads one request, writes `answer` and closes the connection."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(
            int(line.split(b":", 1)[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        await reader.readexactly(length)
        writer.write(answer)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/hook"


@pytest.mark.parametrize(
    ("answer", "ok", "excerpt"),
    [
        (b"HTTP/1.1 200 OK\r\n\r\nuntil the end", True, "until the end"),  # the body ends at the close
        (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", False, None),  # cut short: broken
        (b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * (70 * 1024) + b"\r\n\r\n", False, None),  # head too large
    ],
)
async def test_an_answer_ended_by_the_server_closing_is_read_and_a_cut_one_is_a_failure(
    channels, answer, ok, excerpt
):
    server, url = await answer_once_and_close(answer)
    try:
        channel = channels(url)
        result = await channel.send(delivery_for(channel))
    finally:
        server.close()
        await server.wait_closed()
    assert result.ok is ok, result.error
    if ok:
        assert result.response_excerpt == excerpt
    else:
        assert (result.permanent, (result.error or "").startswith("connection error: HttpError")) == (
            False,
            True,
        )
