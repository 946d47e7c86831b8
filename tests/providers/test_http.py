"""The HTTP chokepoint classifies every wire failure into our errors, naming provider and endpoint."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import aiohttp
import pytest
from aiohttp import web
from hypothesis import given
from hypothesis import strategies as st

from bridge import errors
from bridge.providers.http import RETRY_AFTER_LIMIT, ProviderHttp, parse_retry_after


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
    ("header", "expected"),
    [
        pytest.param("99999", 300.0, id="huge-seconds"),
        pytest.param("9" * 40, 300.0, id="40-digits"),
        pytest.param("9" * 400, 300.0, id="400-digits-is-inf-before-clamping"),
        pytest.param("-5", 0.0, id="negative"),
        pytest.param("1.5", 1.5, id="fraction"),
        pytest.param("Fri, 31 Dec 9999 23:59:59 GMT", 300.0, id="date-in-year-9999"),
        pytest.param("Sun, 22 Nov 2026 20:00:00 GMT", 0.0, id="date-in-the-past"),
        pytest.param("Sun, 22 Nov 99999 20:00:00 GMT", None, id="date-past-year-9999"),
        pytest.param("Sun, 32 Nov 2026 20:00:00 GMT", None, id="day-32"),
        pytest.param("soon", None, id="words"),
        pytest.param("", None, id="empty"),
        pytest.param("1e400", None, id="exponent-is-malformed"),
    ],
)
def test_retry_after_extremes_are_clamped_or_ignored_never_raised(header, expected):
    now = datetime(2026, 11, 22, 21, 0, tzinfo=UTC)
    assert parse_retry_after(header, now=now, cap=300.0) == expected


@given(st.text(max_size=80))
def test_no_retry_after_header_raises_or_leaves_the_cap(header):
    value = parse_retry_after(header, now=datetime(2026, 11, 22, 21, 0, tzinfo=UTC), cap=300.0)
    assert value is None or 0.0 <= value <= 300.0


def test_without_a_cap_retry_after_is_still_at_most_a_day():
    assert parse_retry_after("9" * 40) == RETRY_AFTER_LIMIT


@pytest.mark.parametrize("status", [500, 502, 504, 408])
async def test_a_retry_after_on_a_status_other_than_429_or_503_is_ignored(aiohttp_server, status):
    async def handler(request):
        return web.json_response({"detail": "x"}, status=status, headers={"Retry-After": "99999"})

    server = await serve(aiohttp_server, handler)
    async with aiohttp.ClientSession() as session:
        with pytest.raises(errors.ProviderUnavailable) as info:
            await make_http(session).request_json("GET", str(server.make_url("/x")), endpoint="/x")
    assert info.value.retry_after is None
    assert info.value.retry_after_asked is None


async def test_a_huge_retry_after_is_clamped_to_the_providers_cap_and_the_ask_is_kept(aiohttp_server):
    async def handler(request):
        return web.json_response({"detail": "x"}, status=429, headers={"Retry-After": "9" * 40})

    server = await serve(aiohttp_server, handler)
    async with aiohttp.ClientSession() as session:
        http = ProviderHttp(
            "ws",
            session,
            timeout=2.0,
            max_body_bytes=4096,
            max_requests_per_second=100.0,
            max_concurrency=4,
            retry_after_cap=300.0,
        )
        with pytest.raises(errors.ProviderRateLimited) as info:
            await http.request_json("GET", str(server.make_url("/x")), endpoint="/x")
    assert info.value.retry_after == 300.0
    assert info.value.retry_after_asked is not None
    assert info.value.retry_after_asked > 1e39


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
