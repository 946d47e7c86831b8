"""The lean GET path of ProviderHttp: the same classification as the session's path, auth by token."""

from __future__ import annotations

import asyncio
import gzip

import aiohttp
import pytest
from aiohttp import web

from bridge import errors
from bridge.clock import ManualClock
from bridge.providers.auth import OAuth2Middleware, TokenRequest
from bridge.providers.http import Lean, ProviderHttp


async def lean_http(server, session, *, cap: int = 4096) -> ProviderHttp:
    req = TokenRequest(url=str(server.make_url("/token")), grant="password", username="u", password="p")
    auth = OAuth2Middleware("podero", req, session_timeout=2.0, clock=ManualClock())
    return ProviderHttp(
        "podero", session, timeout=2.0, max_body_bytes=cap, max_requests_per_second=100.0,
        max_concurrency=4, lean=Lean(auth, {"User-Agent": "Wattbridge/test"}),
    )  # fmt: skip


@pytest.fixture
async def provider(aiohttp_server):
    seen: dict[str, list[str]] = {"auth": [], "ua": []}
    tokens = iter(["tok1", "tok2", "tok3"])

    async def token(request):
        return web.json_response({"access_token": next(tokens), "expires_in": 3600})

    async def thing(request):
        seen["auth"].append(request.headers.get("Authorization", ""))
        seen["ua"].append(request.headers.get("User-Agent", ""))
        if request.headers.get("Authorization") == "Bearer tok1":
            return web.json_response({}, status=401)  # revoked early: one refresh, one retry
        return web.json_response({"ok": True, "q": request.query.get("a")})

    async def zipped(request):
        return web.Response(body=gzip.compress(b'{"z": 1}'), headers={"Content-Encoding": "gzip"})

    async def big(request):
        return web.Response(body=b"[" + b"1," * 5000 + b"1]", content_type="application/json")

    async def moved(request):
        raise web.HTTPFound("/thing")

    app = web.Application()
    app.router.add_post("/token", token)
    app.router.add_get("/thing", thing)
    app.router.add_get("/zipped", zipped)
    app.router.add_get("/big", big)
    app.router.add_get("/moved", moved)
    server = await aiohttp_server(app)
    async with aiohttp.ClientSession() as session:
        http = await lean_http(server, session)
        yield http, server, seen
        await http.close()


async def test_a_get_carries_the_token_and_a_401_refreshes_it_once(provider):
    http, server, seen = provider
    body = await http.request_json(
        "GET", str(server.make_url("/thing")), endpoint="/thing", params={"a": "b"}
    )
    assert body == {"ok": True, "q": "b"}
    assert seen["auth"] == ["Bearer tok1", "Bearer tok2"]
    assert seen["ua"] == ["Wattbridge/test", "Wattbridge/test"]
    # The connection is reused and the fresh token kept.
    assert await http.request_json("GET", str(server.make_url("/thing")), endpoint="/thing") == {
        "ok": True,
        "q": None,
    }
    assert seen["auth"][-1] == "Bearer tok2"


async def test_a_gzip_body_is_decoded_and_a_body_over_the_cap_is_malformed(provider):
    http, server, _ = provider
    assert await http.request_json("GET", str(server.make_url("/zipped")), endpoint="/zipped") == {"z": 1}
    with pytest.raises(errors.ProviderMalformed, match="cap"):
        await http.request_json("GET", str(server.make_url("/big")), endpoint="/big")


async def test_redirects_are_not_followed(provider):
    http, server, _ = provider
    with pytest.raises(errors.ProviderError, match="HTTP 302"):
        await http.request_json("GET", str(server.make_url("/moved")), endpoint="/moved")


async def test_a_refused_connection_is_unavailable(unused_tcp_port):
    async with aiohttp.ClientSession() as session:
        http = ProviderHttp(
            "podero", session, timeout=2.0, max_body_bytes=4096, max_requests_per_second=100.0,
            max_concurrency=4, lean=Lean(None, {}),
        )  # fmt: skip
        with pytest.raises(errors.ProviderUnavailable, match="connection failed"):
            await http.request_json("GET", f"http://127.0.0.1:{unused_tcp_port}/x", endpoint="/x")


@pytest.mark.parametrize(
    ("answer", "error", "match"),
    [
        (b"hello\r\n\r\n", errors.ProviderUnavailable, "connection failed"),
        (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
         errors.ProviderUnavailable, "connection failed"),
        (b"HTTP/1.1 200 OK\r\nX-Pad: " + b"a" * 70_000, errors.ProviderUnavailable, "connection failed"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", errors.ProviderMalformed,
         "broken body"),
    ],
)  # fmt: skip
async def test_an_answer_that_breaks_http_is_unavailable_and_a_broken_body_malformed(answer, error, match):
    async def answer_once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(answer)
        await writer.drain()
        await reader.read()  # until the client gives up on the connection
        writer.close()

    server = await asyncio.start_server(answer_once, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with aiohttp.ClientSession() as session:
            http = ProviderHttp(
                "podero", session, timeout=2.0, max_body_bytes=4096, max_requests_per_second=100.0,
                max_concurrency=4, lean=Lean(None, {}),
            )  # fmt: skip
            try:
                with pytest.raises(error, match=match):
                    await http.request_json("GET", f"http://127.0.0.1:{port}/x", endpoint="/x")
            finally:
                await http.close()
    finally:
        server.close()
        await server.wait_closed()
