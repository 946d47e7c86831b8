"""Fake peers for tests, `wattbridge demo` and `wattbridge simulate`, plus what every fake server shares.

The shared part is fault injection (providers.md §4 "Common" 3): a per-route queue of scripted
failures, optionally for one resource of the route only (one home of two, #18), none of them
documented by a provider, so they are test knobs rather than fidelity claims; and the `/_sim/…`
admin routes that let a person drive a simulator with curl.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, get_args

import orjson
from aiohttp import web

FaultKind = Literal["status", "garbage", "truncated", "html", "slow", "endless"]
FAULT_KINDS: frozenset[str] = frozenset(get_args(FaultKind))

GARBAGE_BODY = b"\x00\x17 this is not JSON {{{ \xff"
HTML_BODY = (
    b"<!DOCTYPE html>\n<html><head><title>Scheduled maintenance</title></head>"
    b"<body><h1>We'll be back soon</h1></body></html>\n"
)


def iso_z(when: datetime) -> str:
    """UTC timestamp as pydantic/Django Ninja print it: `2026-11-22T21:00:00Z`, fraction only when set."""
    return when.astimezone(UTC).isoformat().replace("+00:00", "Z")


def json_response(data: Any, *, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    """A JSON response whose key order is exactly the dict's (orjson keeps insertion order)."""
    return web.Response(
        body=orjson.dumps(data), status=status, headers=headers, content_type="application/json"
    )


@dataclass(slots=True, kw_only=True)
class Fault:
    """One scripted failure, served `remaining` more times (None: until the plan is cleared)."""

    kind: FaultKind
    status: int
    remaining: int | None
    body: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 1.0


Handler = Callable[[], Awaitable[web.Response]]
# An admin action: (path parameters, JSON body) -> anything JSON-serialisable (None → 204).
AdminAction = Callable[[dict[str, str], dict[str, Any]], Any]
# An endless body stops after this much (a client without a body cap would otherwise read forever).
ENDLESS_LIMIT = 256 * 1024 * 1024
ENDLESS_CHUNK = b'{"padding": "' + b"x" * 65536


class FaultPlan:
    """Per-route queues of faults, consumed one per request, first in first out. A fault may be for
    one resource of the route (a home id, a wallbox id): it is served before the route's own."""

    def __init__(self, routes: Iterable[str]) -> None:
        self._names = tuple(routes)
        self._queues: dict[tuple[str, str | None], deque[Fault]] = {(n, None): deque() for n in self._names}

    @property
    def routes(self) -> tuple[str, ...]:
        return self._names

    def add(
        self,
        route: str,
        *,
        status: int = 500,
        times: int | None = 1,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        kind: FaultKind = "status",
        delay: float = 1.0,
        resource: str | None = None,
    ) -> None:
        if route not in self._names:
            raise ValueError(f"unknown route {route!r}; expected one of {', '.join(self._names)}")
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; expected one of {', '.join(sorted(FAULT_KINDS))}")
        if times is not None and times < 1:
            raise ValueError("times must be at least 1 (or null: until cleared)")
        self._queues.setdefault((route, resource), deque()).append(
            Fault(
                kind=kind, status=status, remaining=times, body=body, headers=dict(headers or {}), delay=delay
            )
        )

    def take(self, route: str, resource: str | None = None) -> Fault | None:
        """The fault to serve on this request, if any (counts it as served)."""
        queue = self._queues.get((route, resource)) if resource is not None else None
        if not queue:
            queue = self._queues[(route, None)]
        if not queue:
            return None
        fault = queue[0]
        if fault.remaining is not None:
            fault.remaining -= 1
            if fault.remaining <= 0:
                queue.popleft()
        return fault

    def pending(self, route: str, resource: str | None = None) -> int:
        """How many more requests on `route` (for `resource`) will be failed (-1: until cleared)."""
        faults = self._queues.get((route, resource), deque())
        if any(f.remaining is None for f in faults):
            return -1
        return sum(f.remaining or 0 for f in faults)

    def clear(self, route: str | None = None, resource: str | None = None) -> None:
        """Forget scripted faults: all of them, a route's, or one resource's of a route."""
        for (name, rid), queue in self._queues.items():
            if route is None or (name == route and (resource is None or rid == resource)):
                queue.clear()


async def serve_fault(
    fault: Fault, normal: Handler, request: web.Request | None = None
) -> web.StreamResponse:
    """Answer one request according to `fault`; `normal` produces the unfaulted answer when needed."""
    headers = dict(fault.headers)
    if fault.kind == "endless" and request is not None:
        return await _endless(request, fault.status, headers)
    if fault.kind == "slow":
        # Real time on purpose: this exercises the client's own timeout, which runs on the event loop.
        await asyncio.sleep(fault.delay)
        return await normal()
    if fault.kind == "garbage":
        return _raw(200, fault.body if fault.body is not None else GARBAGE_BODY, "application/json", headers)
    if fault.kind == "html":
        return _raw(200, fault.body if fault.body is not None else HTML_BODY, "text/html", headers)
    if fault.kind == "truncated":
        whole = fault.body if fault.body is not None else _body_of(await normal())
        return _raw(200, whole[: max(1, len(whole) // 2)], "application/json", headers)
    if fault.body is not None:
        ctype = next((v for k, v in headers.items() if k.lower() == "content-type"), "application/json")
        return _raw(fault.status, fault.body, ctype, headers)
    reason = web.Response(status=fault.status).reason
    return json_response({"detail": reason}, status=fault.status, headers=headers)


async def _endless(request: web.Request, status: int, headers: dict[str, str]) -> web.StreamResponse:
    """A chunked body that never ends (up to ENDLESS_LIMIT, or until the client hangs up)."""
    resp = web.StreamResponse(status=status if status < 300 else 200, headers=headers)
    resp.content_type = "application/json"
    await resp.prepare(request)
    sent = 0
    try:
        while sent < ENDLESS_LIMIT:
            await resp.write(ENDLESS_CHUNK)
            sent += len(ENDLESS_CHUNK)
    except (ConnectionResetError, ConnectionError):
        return resp  # the client stopped reading: what a capped client does
    return resp


class FaultScript:
    """`fail(route, …)` for a simulator whose faults are one FaultPlan (routes, or one resource)."""

    faults: FaultPlan

    def fail(
        self,
        route_name: str,
        *,
        status: int = 500,
        times: int | None = 1,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        kind: FaultKind = "status",
        delay: float = 1.0,
        resource: str | None = None,
    ) -> None:
        """Fail the next `times` requests on a route (see the simulator's ROUTES; None: until
        `faults.clear()`), or only those for one resource (a home, device or session id); `delay` is
        for `kind="slow"`."""
        self.faults.add(
            route_name, status=status, times=times, body=body, headers=headers, kind=kind, delay=delay,
            resource=resource,
        )  # fmt: skip


def _raw(status: int, body: bytes, content_type: str, headers: dict[str, str]) -> web.Response:
    headers = {k: v for k, v in headers.items() if k.lower() != "content-type"}
    headers["Content-Type"] = content_type
    return web.Response(status=status, body=body, headers=headers)


def _body_of(resp: web.Response) -> bytes:
    body = resp.body
    return bytes(body) if isinstance(body, bytes | bytearray) else b"{}"


def add_admin_routes(app: web.Application, routes: Iterable[tuple[str, str, AdminAction]]) -> None:
    """Serve scenario methods as JSON endpoints; bad input → 400, unknown id → 404, with the reason."""
    for method, path, action in routes:
        app.router.add_route(method, path, _admin_handler(action))


def _admin_handler(action: AdminAction) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handle(request: web.Request) -> web.Response:
        raw = await request.read()
        try:
            body = orjson.loads(raw) if raw.strip() else {}
        except orjson.JSONDecodeError:
            return json_response({"error": "body is not JSON"}, status=400)
        if not isinstance(body, dict):
            return json_response({"error": "body must be a JSON object"}, status=400)
        try:
            result = action(dict(request.match_info), body)
        except KeyError as exc:
            return json_response({"error": str(exc.args[0]) if exc.args else "not found"}, status=404)
        except (ValueError, TypeError) as exc:
            return json_response({"error": str(exc)}, status=400)
        return web.Response(status=204) if result is None else json_response(result)

    return handle
