"""The process: AppRunner + TCPSite; SIGTERM/SIGINT drain and exit 0, SIGHUP reloads rules, a crash exits 2.

`run_app` is not used because we need SIGHUP, the crash → exit 2 path, and the same code in `demo`.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator

import structlog
from aiohttp import web

from bridge import heap
from bridge.api.limits import server_settings
from bridge.app import create_app
from bridge.app_keys import RULEBOOK
from bridge.clock import Clock
from bridge.config.models import Config

log = structlog.get_logger(__name__)

EXIT_OK, EXIT_RUNTIME = 0, 2


class Running:
    """A started bridge: its app, its listening address, and how to stop it."""

    def __init__(self, app: web.Application, runner: web.AppRunner, stop: asyncio.Event) -> None:
        self.app = app
        self.runner = runner
        self.stop = stop
        self.crashed: dict[str, BaseException] = {}

    @property
    def port(self) -> int:
        for addr in self.runner.addresses:
            return int(addr[1])
        raise RuntimeError("bridge is not listening")


@contextlib.asynccontextmanager
async def started(config: Config, *, clock: Clock | None = None) -> AsyncIterator[Running]:
    """Start the bridge (HTTP + components), yield it, and shut it down in order on exit."""
    stop = asyncio.Event()
    crashed: dict[str, BaseException] = {}

    def on_crash(name: str, exc: BaseException) -> None:
        crashed[name] = exc
        stop.set()

    app = create_app(config, clock=clock, on_crash=on_crash)
    runner = web.AppRunner(
        app, handle_signals=False, access_log=None, shutdown_timeout=5.0, **server_settings(config.server)
    )
    await runner.setup()
    running = Running(app, runner, stop)
    running.crashed = crashed
    try:
        site = web.TCPSite(runner, config.server.host, config.server.port)
        await site.start()
        log.info("bridge.started", listen=f"{config.server.host}:{running.port}")
        yield running
    finally:
        log.info("bridge.stopping")
        await runner.cleanup()
        log.info("bridge.stopped")


async def serve(config: Config) -> int:
    """Run until SIGTERM/SIGINT; returns the process exit code."""
    async with started(config) as running:
        heap.settle()  # what start-up built lives as long as the process (bridge/heap.py)
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, running.stop.set)
        loop.add_signal_handler(signal.SIGINT, running.stop.set)
        loop.add_signal_handler(signal.SIGHUP, lambda: running.app[RULEBOOK].reload() and None)
        try:
            await running.stop.wait()
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(sig)
            heap.release()
    return EXIT_RUNTIME if running.crashed else EXIT_OK
