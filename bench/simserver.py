"""A lean HTTP front for the bundled Podero simulator, run as its own process by the benchmarks.

The bundled simulator (`bridge/simulator/podero/`) renders every read from Python objects and
validates path UUIDs with pydantic: faithful, but it costs more CPU per request than the client under
test, so on a 2-core machine it would be the bottleneck and every ratio would read 1.0. This server
serves the *same bytes*: each body is rendered once by `PoderoSimulator._render` (seed-002 shape and
key order) into a template; a read only splices in the wallbox id, the owner and the current time for
the volatile `*_last_updated_at` / `updated_at` fields, which therefore move on every read, as Podero's
do. Every `--change-every`-th read flips the wallbox between two meaningful states (plugged in and
charging at 7.2 kW, or idle), so that share of polls carries a real change.

A read with an `X-Bench-Ceiling` header (the raw ceiling client) never flips a wallbox.

It also answers the OAuth2 token endpoint, and any other POST with 204 (the webhook receiver of the
bridge and of Node-RED), counting them. `GET /_stats` returns the counters and this process's CPU time.

    python bench/simserver.py --port 0 --wallboxes 10000 [--change-every 10]

prints `READY <port>` on stdout once it listens.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
import time
from datetime import UTC, datetime

import orjson

from bridge.clock import ManualClock
from bridge.simulator.podero import PoderoSimulator

ORG = "00000000-0000-4000-8000-000000000001"
TOKEN = "bench-token-0123456789abcdefghijklmnopqrst"
API = "/api/partners/v2.0"
_PH_WALLBOX = "00000000-0000-4000-8000-ffffffffffff"
_PH_USER = "00000000-0000-4000-9000-ffffffffffff"
_PH_TIME = datetime(2026, 1, 1, 0, 0, 0, 111111, tzinfo=UTC)
_PH_TIME_TEXT = b"2026-01-01T00:00:00.111111Z"
USERS_PER_WALLBOX = 1


def wallbox_id(i: int) -> str:
    return f"00000000-0000-4000-8000-{i:012x}"


def user_id(i: int) -> str:
    return f"00000000-0000-4000-9000-{i:012x}"


def wallbox_path(i: int) -> str:
    return f"{API}/org/{ORG}/users/{user_id(i)}/wallboxes/{wallbox_id(i)}"


def _templates() -> tuple[list[bytes], list[bytes]]:
    """Two bodies (idle, charging) of one wallbox, rendered by the bundled simulator, split at the
    placeholders so a read is a `join` of the parts and this wallbox's ids and the current time."""
    clock = ManualClock(datetime(2025, 6, 1, tzinfo=UTC))
    sim = PoderoSimulator(clock=clock, org_id=ORG)
    sim.add_user(user_id=_PH_USER, email=f"owner-{_PH_USER}@example.com", first_name="Ada")
    sim.add_wallbox(_PH_USER, wallbox_id=_PH_WALLBOX)
    clock.set(_PH_TIME)
    box = sim._wallboxes[_PH_WALLBOX]
    idle = orjson.dumps(sim._render(box))
    sim.update_wallbox(_PH_WALLBOX, is_plugged_in=True, is_charging=True, charge_rate_w=7200)
    charging = orjson.dumps(sim._render(box))
    return _split(idle), _split(charging)


def _split(body: bytes) -> list[bytes]:
    # Marks: W = wallbox id, U = user id, T = time. Every placeholder becomes a separator.
    body = body.replace(_PH_WALLBOX.encode(), b"\x00W").replace(_PH_USER.encode(), b"\x00U")
    body = body.replace(_PH_TIME_TEXT, b"\x00T")
    return body.split(b"\x00")


class Sim:
    def __init__(self, wallboxes: int, change_every: int) -> None:
        self.wallboxes = wallboxes
        self.change_every = change_every
        self.templates = _templates()
        self.charging = bytearray(wallboxes)  # which template each wallbox shows now
        self.reads = [0] * wallboxes  # per-wallbox reads that count towards a change
        self.gets = 0
        self.posts = 0
        self.not_found = 0
        self.now = b""
        self._tick()

    def _tick(self) -> None:
        # The volatile timestamps move every millisecond (a fresh value per poll of one wallbox).
        self.now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ").encode()
        asyncio.get_event_loop().call_later(0.001, self._tick)

    def body(self, i: int, *, counts: bool = True) -> bytes:
        """Wallbox i as read now. A counting read flips every `change_every`-th read of each wallbox
        (offset by i), so each round over all wallboxes changes exactly that share of them; the
        ceiling client's reads do not count, so they never hide or add a change the bridge sees."""
        self.gets += 1
        if counts and self.change_every:
            self.reads[i] += 1
            if (self.reads[i] + i) % self.change_every == 0:
                self.charging[i] ^= 1
        parts = self.templates[self.charging[i]]
        wid, uid, now = wallbox_id(i).encode(), user_id(i).encode(), self.now
        out = [parts[0]]
        for part in parts[1:]:
            mark, rest = part[:1], part[1:]
            out.append(wid if mark == b"W" else uid if mark == b"U" else now)
            out.append(rest)
        return b"".join(out)

    def stats(self) -> bytes:
        cpu = time.process_time()
        return orjson.dumps({"gets": self.gets, "posts": self.posts, "not_found": self.not_found, "cpu": cpu})


_PREFIX = f"{API}/org/{ORG}/users/".encode()
_HEAD_OK = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
_NO_CONTENT = b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n"
_NOT_FOUND = b'HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: 22\r\n\r\n{"detail":"Not Found"}'
_UNAUTHORIZED = (
    b"HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\nContent-Length: 25\r\n\r\n"
    b'{"detail":"Unauthorized"}'
)
_NO_CHANGE = b"\r\nx-bench-ceiling:"
_AUTH = b"authorization: bearer " + TOKEN.encode()


def _ok(body: bytes) -> bytes:
    return b"%s%d\r\n\r\n%s" % (_HEAD_OK, len(body), body)


class Http(asyncio.Protocol):
    """HTTP/1.1 keep-alive, one request at a time per connection (what aiohttp and Node send)."""

    def __init__(self, sim: Sim) -> None:
        self.sim = sim
        self.buf = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        buf = self.buf + data
        out = []
        close = False
        while True:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                break
            head = buf[:end]
            lower = head.lower()
            length = 0
            at = lower.find(b"\r\ncontent-length:")
            if at >= 0:
                stop = lower.find(b"\r\n", at + 2)
                length = int(lower[at + 17 : stop if stop >= 0 else len(lower)].strip() or b"0")
            if b"\r\ntransfer-encoding: chunked" in lower:
                last = buf.find(b"\r\n0\r\n\r\n", end)  # the terminating chunk (bodies are never read)
                if last < 0 and buf[end + 4 : end + 9] != b"0\r\n\r\n":
                    break
                length = (last + 7 if last >= 0 else end + 9) - (end + 4)
            if len(buf) < end + 4 + length:
                break
            buf = buf[end + 4 + length :]
            close = close or b"\r\nconnection: close" in lower
            out.append(self.respond(head, lower))
        self.buf = buf
        if out and self.transport is not None:
            self.transport.write(b"".join(out))
            if close:
                self.transport.close()

    def respond(self, head: bytes, lower: bytes) -> bytes:
        line = head[: head.find(b"\r\n")]
        method, _, rest = line.partition(b" ")
        target = rest.rpartition(b" ")[0]
        path = target.partition(b"?")[0]
        if method == b"GET" and path.startswith(_PREFIX):
            if _AUTH not in lower:
                return _UNAUTHORIZED
            # users/{uid}/wallboxes/{wid}
            parts = path[len(_PREFIX) :].split(b"/")
            if len(parts) == 3 and parts[1] == b"wallboxes":
                try:
                    i = int(parts[2][-12:], 16)
                except ValueError:
                    i = -1
                known = 0 <= i < self.sim.wallboxes and parts[2].decode() == wallbox_id(i)
                if known and parts[0].decode() == user_id(i):
                    return _ok(self.sim.body(i, counts=_NO_CHANGE not in lower))
            self.sim.not_found += 1
            return _NOT_FOUND
        if method == b"POST" and path in (b"/oauth2/token/", f"{API}/auth/token".encode()):
            token = {
                "access_token": TOKEN,
                "expires_in": 36000,
                "token_type": "Bearer",
                "scope": "read write",
            }
            return _ok(orjson.dumps(token))
        if method == b"GET" and path == b"/_stats":
            return _ok(self.sim.stats())
        if method == b"POST":
            self.sim.posts += 1
            return _NO_CONTENT
        return _NOT_FOUND


async def serve(port: int, wallboxes: int, change_every: int) -> None:
    sim = Sim(wallboxes, change_every)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: Http(sim), "127.0.0.1", port, backlog=1024)
    bound = server.sockets[0].getsockname()[1]
    print(f"READY {bound}", flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--wallboxes", type=int, default=10_000)
    parser.add_argument(
        "--change-every", type=int, default=0, help="flip a wallbox every Nth read (0: never)"
    )
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.port, args.wallboxes, args.change_every))
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
