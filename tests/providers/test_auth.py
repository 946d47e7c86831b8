"""OAuth2 middleware: one token for many concurrent polls, refreshed before expiry and once on a 401."""

from __future__ import annotations

import asyncio
import base64
import itertools
from datetime import timedelta

import aiohttp
import pytest
from aiohttp import web

from bridge import errors
from bridge.clock import ManualClock
from bridge.providers.auth import OAuth2Middleware, TokenRequest


class TokenServer:
    """A token endpoint plus one protected resource, counting what it is asked."""

    def __init__(self, *, lifetime: int = 36000) -> None:
        self.lifetime = lifetime
        self.token_requests = 0
        self.valid: set[str] = set()
        self.counter = itertools.count(1)
        self.token_bodies: list[dict[str, object]] = []
        self.token_auth: list[str | None] = []
        self.gate: asyncio.Event | None = None
        self.refuse_all = False

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/oauth2/token/", self.token)
        app.router.add_get("/thing", self.thing)
        return app

    async def token(self, request: web.Request) -> web.Response:
        self.token_requests += 1
        self.token_bodies.append(await request.json())
        self.token_auth.append(request.headers.get("Authorization"))
        if self.gate is not None:
            await self.gate.wait()
        if request.headers.get("Authorization") != "Basic " + base64.b64encode(b"cid:csecret").decode():
            return web.json_response({"error": "invalid_client"}, status=401)
        value = f"tok{next(self.counter)}"
        self.valid.add(value)
        return web.json_response({"access_token": value, "expires_in": self.lifetime, "token_type": "Bearer"})

    async def thing(self, request: web.Request) -> web.Response:
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        if self.refuse_all or token not in self.valid:
            return web.json_response({"detail": "Unauthorized"}, status=401)
        return web.json_response({"token": token})


@pytest.fixture
async def token_server(aiohttp_server):
    ts = TokenServer()
    server = await aiohttp_server(ts.app())
    ts.url = str(server.make_url(""))  # type: ignore[attr-defined]
    return ts


def middleware(ts: TokenServer, clock: ManualClock, secret: str = "csecret") -> OAuth2Middleware:
    req = TokenRequest(
        url=ts.url + "/oauth2/token/", grant="client_credentials", client_id="cid", client_secret=secret
    )  # type: ignore[attr-defined]
    return OAuth2Middleware("podero", req, session_timeout=5.0, clock=clock)


async def get(session: aiohttp.ClientSession, ts: TokenServer) -> tuple[int, dict[str, object]]:
    async with session.get(ts.url + "/thing") as resp:  # type: ignore[attr-defined]
        return resp.status, await resp.json()


async def test_client_credentials_are_sent_as_documented(token_server):
    clock = ManualClock()
    async with aiohttp.ClientSession(middlewares=(middleware(token_server, clock),)) as session:
        status, body = await get(session, token_server)
    assert status == 200
    assert body == {"token": "tok1"}
    assert token_server.token_bodies == [{"grant_type": "client_credentials"}]
    assert token_server.token_auth[0].startswith("Basic ")


async def test_concurrent_polls_fetch_a_single_token(token_server):
    clock = ManualClock()
    token_server.gate = asyncio.Event()
    async with aiohttp.ClientSession(middlewares=(middleware(token_server, clock),)) as session:
        polls = [asyncio.create_task(get(session, token_server)) for _ in range(20)]
        await asyncio.sleep(0.05)  # let all twenty reach the lock (not a time-logic wait)
        token_server.gate.set()
        results = await asyncio.gather(*polls)
    assert token_server.token_requests == 1
    assert {body["token"] for _, body in results} == {"tok1"}


async def test_the_token_is_reused_until_shortly_before_it_expires(token_server):
    clock = ManualClock()
    mw = middleware(token_server, clock)
    async with aiohttp.ClientSession(middlewares=(mw,)) as session:
        await get(session, token_server)
        clock.advance(timedelta(seconds=36000 - 120))
        await get(session, token_server)
        assert token_server.token_requests == 1
        clock.advance(timedelta(seconds=90))  # inside the refresh margin
        _, body = await get(session, token_server)
    assert token_server.token_requests == 2
    assert body["token"] == "tok2"


async def test_a_401_refreshes_once_and_retries(token_server):
    clock = ManualClock()
    async with aiohttp.ClientSession(middlewares=(middleware(token_server, clock),)) as session:
        await get(session, token_server)
        token_server.valid.clear()  # the provider revoked every token
        status, body = await get(session, token_server)
    assert status == 200
    assert body["token"] == "tok2"
    assert token_server.token_requests == 2


async def test_a_persistent_401_is_returned_after_one_refresh(token_server):
    clock = ManualClock()
    async with aiohttp.ClientSession(middlewares=(middleware(token_server, clock),)) as session:
        await get(session, token_server)
        token_server.refuse_all = True
        status, _ = await get(session, token_server)
    assert status == 401
    assert token_server.token_requests == 2


async def test_refused_credentials_raise_an_auth_error_without_the_secret(token_server):
    clock = ManualClock()
    async with aiohttp.ClientSession(
        middlewares=(middleware(token_server, clock, secret="s3cr3t-value"),)
    ) as session:
        with pytest.raises(errors.ProviderAuthError) as info:
            await get(session, token_server)
    assert "HTTP 401" in str(info.value)
    assert "s3cr3t-value" not in str(info.value)
