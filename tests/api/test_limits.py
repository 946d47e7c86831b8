"""The HTTP surface's limits on a running bridge (real sockets on loopback): an oversized body is
413, oversized or too many headers are 400, a client that trickles its headers (slowloris) or sits
idle is cut off by the keep-alive timer, one that trickles its body gets 408, and /healthz answers
all the while.

The waits here are aiohttp's own timers on the event loop, which no injected clock drives: each
limit is set to a second or less and every wait has a bound well above it."""

from __future__ import annotations

import asyncio
import contextlib

import aiohttp
import pytest

from bridge.serve import started

TOKEN = "limits-test-token"
BOUND = 10.0  # seconds: far above every limit below, so a pass never depends on the machine's speed


@pytest.fixture
def limited(make_config):
    return make_config(
        server={
            "listen": "127.0.0.1:0",
            "admin_token": TOKEN,
            "max_body_size": 4096,
            "max_header_size": 2048,
            "max_headers": 16,
            "keepalive_timeout": "1s",
            "request_timeout": "1s",
        }
    )


async def raw(port: int, data: bytes) -> bytes:
    """Send `data` on a fresh connection and read until the server closes it."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), BOUND)
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def test_an_oversized_body_is_refused_with_413(limited):
    async with (
        started(limited) as running,
        aiohttp.ClientSession() as http,
        http.post(
            f"http://127.0.0.1:{running.port}/api/watches",
            data=b"x" * 5000,
            headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
        ) as resp,
    ):
        assert resp.status == 413


async def test_an_oversized_header_or_too_many_headers_are_refused_with_400(limited):
    async with started(limited) as running:
        long = await raw(
            running.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 3000 + b"\r\n\r\n"
        )
        many = b"".join(b"X-H%d: v\r\n" % i for i in range(40))
        crowded = await raw(running.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + many + b"\r\n")
    assert long.split(b"\r\n")[0].endswith(b" 400 Bad Request")
    assert crowded.split(b"\r\n")[0].endswith(b" 400 Bad Request")


async def test_an_idle_connection_is_closed_by_the_keepalive_timer(limited):
    async with started(limited) as running:
        reader, writer = await asyncio.open_connection("127.0.0.1", running.port)
        try:
            assert await asyncio.wait_for(reader.read(), BOUND) == b""  # closed without a request
        finally:
            writer.close()


async def test_slow_header_senders_are_cut_off_while_healthz_keeps_answering(limited):
    async with started(limited) as running, aiohttp.ClientSession() as http:
        slow = [await asyncio.open_connection("127.0.0.1", running.port) for _ in range(50)]
        for _, writer in slow:
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")  # and never the rest

        async with http.get(f"http://127.0.0.1:{running.port}/healthz") as resp:
            assert resp.status == 200  # the open slow sockets do not hold the server

        async def trickle_until_closed(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bytes:
            # A header byte every 200 ms: activity that must not keep the connection alive.
            while not reader.at_eof():
                with contextlib.suppress(ConnectionError):
                    writer.write(b"a")
                with contextlib.suppress(TimeoutError):
                    return await asyncio.wait_for(reader.read(), 0.2)
            return b""

        answers = await asyncio.wait_for(
            asyncio.gather(*(trickle_until_closed(r, w) for r, w in slow)), BOUND
        )
        for _, writer in slow:
            writer.close()
    assert all(a == b"" for a in answers)  # each was closed, none got a response


async def test_a_client_trickling_its_body_gets_408(limited):
    async with started(limited) as running:
        head = (
            b"POST /api/watches HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Authorization: Bearer " + TOKEN.encode() + b"\r\nContent-Length: 1000\r\n\r\n{"
        )
        reader, writer = await asyncio.open_connection("127.0.0.1", running.port)
        writer.write(head)  # and never the other 999 bytes
        status = await asyncio.wait_for(reader.readline(), BOUND)
        closed = await asyncio.wait_for(reader.read(), BOUND)  # then the server hangs up
        writer.close()
    assert status == b"HTTP/1.1 408 Request Timeout\r\n"
    assert b"[server] request_timeout" in closed


def test_a_zero_timeout_is_refused_at_its_line(tmp_path):
    from bridge.config.loader import load_config
    from bridge.errors import ConfigError

    path = tmp_path / "config.toml"
    path.write_text('[server]\nlisten = "127.0.0.1:0"\nkeepalive_timeout = "0s"\n')
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert f"{path}:3: server.keepalive_timeout: must be longer than 0s" in str(caught.value)
