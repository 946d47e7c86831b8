"""The HTTP chokepoint classifies every wire failure into our errors, naming provider and endpoint."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import aiohttp
import pytest
from aiohttp import web

from bridge import errors
from bridge.providers.http import ProviderHttp, parse_retry_after


def make_http(session: aiohttp.ClientSession, **overrides: float) -> ProviderHttp:
    opts: dict[str, float] = {"timeout": 2.0, "max_body_bytes": 4096, "max_requests_per_second": 100.0}
    opts.update(overrides)
    return ProviderHttp(
        "podero",
        session,
        timeout=opts["timeout"],
        max_body_bytes=int(opts["max_body_bytes"]),
        max_requests_per_second=opts["max_requests_per_second"],
        max_concurrency=4,
    )


async def serve(aiohttp_server, handler):
    app = web.Application()
    app.router.add_route("*", "/x", handler)
    return await aiohttp_server(app)


def test_retry_after_accepts_seconds_and_http_dates():
    now = datetime(2026, 11, 22, 21, 0, tzinfo=UTC)
    assert parse_retry_after("120", now=now) == 120.0
    assert parse_retry_after("Sun, 22 Nov 2026 21:01:30 GMT", now=now) == 90.0
    assert parse_retry_after("Sun, 22 Nov 2026 20:00:00 GMT", now=now) == 0.0
    assert parse_retry_after("soon", now=now) is None
    assert parse_retry_after(None) is None


@pytest.mark.parametrize(
    ("status", "error", "retry_after"),
    [
        pytest.param(401, errors.ProviderAuthError, None, id="401-auth"),
        pytest.param(404, errors.ProviderNotFound, None, id="404-not-found"),
        pytest.param(429, errors.ProviderRateLimited, 30.0, id="429-rate-limited"),
        pytest.param(500, errors.ProviderUnavailable, None, id="500-unavailable"),
        pytest.param(503, errors.ProviderUnavailable, 30.0, id="503-unavailable-with-retry-after"),
        pytest.param(418, errors.ProviderError, None, id="418-unexpected"),
    ],
)
async def test_status_is_classified_with_provider_endpoint_and_status(
    aiohttp_server, status, error, retry_after
):
    async def handler(request):
        headers = {"Retry-After": "30"} if status in (429, 503) else {}
        return web.json_response({"detail": "x"}, status=status, headers=headers)

    server = await serve(aiohttp_server, handler)
    async with aiohttp.ClientSession() as session:
        with pytest.raises(error) as info:
            await make_http(session).request_json("GET", str(server.make_url("/x")), endpoint="/x")
    assert type(info.value) is error
    assert info.value.retry_after == retry_after
    assert "podero GET /x" in str(info.value)
    assert f"HTTP {status}" in str(info.value)


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"<html>maintenance</html>", id="html"),
        pytest.param(b'{"id": "abc", "is_char', id="truncated-json"),
    ],
)
async def test_a_body_that_is_not_json_is_malformed(aiohttp_server, body):
    async def handler(request):
        return web.Response(body=body, content_type="application/json")

    server = await serve(aiohttp_server, handler)
    async with aiohttp.ClientSession() as session:
        with pytest.raises(errors.ProviderMalformed, match="not JSON"):
            await make_http(session).request_json("GET", str(server.make_url("/x")), endpoint="/x")


async def test_a_body_over_the_cap_is_refused_without_reading_it_all(aiohttp_server):
    async def handler(request):
        return web.Response(body=b"[" + b"1," * 5000 + b"1]", content_type="application/json")

    server = await serve(aiohttp_server, handler)
    async with aiohttp.ClientSession() as session:
        with pytest.raises(errors.ProviderMalformed, match="byte cap"):
            await make_http(session).request_json("GET", str(server.make_url("/x")), endpoint="/x")


async def test_a_slow_provider_times_out(aiohttp_server):
    release = asyncio.Event()

    async def handler(request):
        await release.wait()
        return web.json_response({})

    server = await serve(aiohttp_server, handler)
    try:
        async with aiohttp.ClientSession() as session:
            with pytest.raises(errors.ProviderTimeout, match=r"no answer within 0\.2s"):
                await make_http(session, timeout=0.2).request_json(
                    "GET", str(server.make_url("/x")), endpoint="/x"
                )
    finally:
        release.set()


async def test_a_refused_connection_is_unavailable(unused_tcp_port):
    async with aiohttp.ClientSession() as session:
        with pytest.raises(errors.ProviderUnavailable, match="connection failed"):
            await make_http(session).request_json(
                "GET", f"http://127.0.0.1:{unused_tcp_port}/x", endpoint="/x"
            )


async def test_redirects_are_not_followed(aiohttp_server):
    async def handler(request):
        raise web.HTTPFound("/elsewhere")

    server = await serve(aiohttp_server, handler)
    async with aiohttp.ClientSession() as session:
        with pytest.raises(errors.ProviderError, match="HTTP 302"):
            await make_http(session).request_json("GET", str(server.make_url("/x")), endpoint="/x")


async def test_json_body_is_sent_and_decoded(aiohttp_server):
    async def handler(request):
        return web.json_response({"echo": await request.json()})

    server = await serve(aiohttp_server, handler)
    async with aiohttp.ClientSession() as session:
        out = await make_http(session).request_json(
            "POST", str(server.make_url("/x")), endpoint="/x", json={"homeId": "h1"}
        )
    assert out == {"echo": {"homeId": "h1"}}
