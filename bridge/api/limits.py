"""Limits of the whole HTTP surface (status page, health, metrics and admin API alike).

Sizes (body, header lines, header count) and the keep-alive timer are aiohttp's own settings, passed
by `serve.started`; this module adds what aiohttp has not: a bound on one request's whole handling,
so a client trickling its body, or a handler stuck on the store, cannot hold a connection forever.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from bridge.config.models import ServerConfig


def server_settings(server: ServerConfig) -> dict[str, Any]:
    """The keyword arguments of `web.AppRunner` (they reach aiohttp's RequestHandler)."""
    return {
        "keepalive_timeout": server.keepalive_timeout.total_seconds(),
        "max_line_size": server.max_header_size,
        "max_field_size": server.max_header_size,
        "max_headers": server.max_headers,
        # After an early answer (413, 408) aiohttp reads and drops what is left of the body for this
        # long, so the client sees the answer rather than a reset: 2 s instead of 10 s per client.
        "lingering_time": 2.0,
    }


def request_timeout(seconds: float) -> Middleware:
    @web.middleware
    async def bounded(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            async with asyncio.timeout(seconds):
                return await handler(request)
        except TimeoutError:
            # The connection is closed after this answer: what was left of the body is not read.
            raise web.HTTPRequestTimeout(
                text=f"request not handled within {seconds:g}s ([server] request_timeout)",
                headers={"Connection": "close"},
            ) from None

    return bounded
