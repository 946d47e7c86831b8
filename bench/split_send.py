"""Experiment (#16): do webhook sends in a second process lift the burst past one core?

The burst of bench/delivery.py is bound by one core: rate × CPU per notification comes to 1.0 core
in every run, the event loop and SQLite's thread sharing one GIL. This measures the lever the issue
names first, deliveries in their own process, in the form that keeps every guarantee and every
decision where it is: the main process keeps the store, the DeliveryWorker (hand-over, claims,
retry decisions, breakers, attempt log); only `Channel.send` crosses to a child process, which signs
and POSTs with the real WebhookChannel and answers with the SendResult. Frames both ways are
length-prefixed orjson lists over a socketpair, everything put in one loop turn written at once.

Each repeat runs the burst and the paced load twice, first in one process (as `wattbridge run`
does), then split; CPU of the split run is the main process's plus the child's (from /proc).

    .venv/bin/python bench/split_send.py [--n 5000] [--paced-n 3000] [--rate 1000] [--repeat 3] [--no-logs]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import os
import socket
import struct
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiohttp
import delivery as bench
import orjson

from bridge import __version__, heap, logs
from bridge.channels.base import Channel, SendResult
from bridge.channels.webhook import WebhookChannel
from bridge.clock import SystemClock
from bridge.config.models import WebhookChannelConfig
from bridge.deliver.worker import DeliveryWorker
from bridge.model import Delivery
from bridge.store.sqlite import SqliteStore

LEN = struct.Struct("!I")
READY = 0  # the child's first answer: set up, the clock may start


class Framer(asyncio.Protocol):
    """Length-prefixed orjson lists on a connected socket; what is put in one loop turn is one write."""

    def __init__(self, on_item: Callable[[list[Any]], None], on_lost: Callable[[], None] | None = None):
        self._on_item, self._on_lost = on_item, on_lost
        self._out: list[list[Any]] = []
        self._buf = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        if self._on_lost is not None:
            self._on_lost()

    def put(self, item: list[Any]) -> None:
        if not self._out:
            asyncio.get_running_loop().call_soon(self._flush)
        self._out.append(item)

    def _flush(self) -> None:
        data, self._out = orjson.dumps(self._out), []
        assert self.transport is not None
        self.transport.write(LEN.pack(len(data)) + data)

    def data_received(self, data: bytes) -> None:
        self._buf += data
        while len(self._buf) >= LEN.size:
            (n,) = LEN.unpack_from(self._buf)
            if len(self._buf) < LEN.size + n:
                break
            items = orjson.loads(memoryview(self._buf)[LEN.size : LEN.size + n])
            del self._buf[: LEN.size + n]
            for item in items:
                self._on_item(item)


async def framed(
    sock: socket.socket, on_item: Callable[[list[Any]], None], on_lost: Callable[[], None] | None = None
) -> Framer:
    _, proto = await asyncio.get_running_loop().create_connection(lambda: Framer(on_item, on_lost), sock=sock)
    return proto


class RemoteChannel:
    """`Channel.send` answered by the child; rendering stays here (it belongs to the poller)."""

    kind = "webhook"

    def __init__(self, real: WebhookChannel, sock: socket.socket) -> None:
        self.name, self.render = real.name, real.render
        self._sock = sock
        self._waiting: dict[int, asyncio.Future[SendResult]] = {}
        self._seq = 0
        self._framer: Framer | None = None
        self._ready: asyncio.Future[None] | None = None

    async def start(self) -> None:
        self._ready = asyncio.get_running_loop().create_future()
        self._framer = await framed(self._sock, self._answer)
        await self._ready

    async def send(self, delivery: Delivery) -> SendResult:
        assert self._framer is not None
        self._seq += 1
        answer = self._waiting[self._seq] = asyncio.get_running_loop().create_future()
        self._framer.put([self._seq, delivery.id, delivery.body.decode()])
        return await answer

    def _answer(self, item: list[Any]) -> None:
        seq, ok, code, retry_after, permanent, error, ms, excerpt = item
        if seq == READY:
            assert self._ready is not None
            self._ready.set_result(None)
            return
        self._waiting.pop(seq).set_result(
            SendResult(ok=ok, status_code=code, retry_after=retry_after, permanent=permanent, error=error,
                       latency_ms=ms, response_excerpt=excerpt)
        )  # fmt: skip

    async def close(self) -> None:
        if self._framer is not None and self._framer.transport is not None:
            self._framer.transport.close()


async def child(fd: int, url: str) -> None:
    """The sender: one real WebhookChannel; a send per frame item, its result framed back."""
    now = datetime.now(UTC)
    gone = asyncio.Event()
    tasks: set[asyncio.Task[None]] = set()
    async with aiohttp.ClientSession(headers={"User-Agent": f"Wattbridge/{__version__}"}) as session:
        cfg = WebhookChannelConfig.model_validate({"kind": "webhook", "url": url, "secret": bench.SECRET})
        channel = WebhookChannel("partner", cfg, session=session, clock=SystemClock())

        async def one(seq: int, delivery_id: str, body: str) -> None:
            delivery = Delivery(id=delivery_id, event_id="-", channel="partner", body=body.encode(),
                                next_attempt_at=now, created_at=now)  # fmt: skip
            r = await channel.send(delivery)
            framer.put([seq, r.ok, r.status_code, r.retry_after, r.permanent, r.error, r.latency_ms,
                        r.response_excerpt])  # fmt: skip

        def on_item(item: list[Any]) -> None:
            task = asyncio.create_task(one(*item))
            tasks.add(task)
            task.add_done_callback(tasks.discard)

        framer = await framed(socket.socket(fileno=fd), on_item, gone.set)
        framer.put([READY, True, None, None, False, None, 0.0, None])
        await gone.wait()
        await channel.close()


@contextlib.asynccontextmanager
async def _bridge(
    receiver: bench.Receiver, *, split: bool, concurrency: int
) -> AsyncIterator[tuple[SqliteStore, DeliveryWorker, Callable[[], float]]]:
    """bench/delivery.py's bridge, with the channel in this process or behind a child; yields the
    store, the worker and the CPU clock (this process, plus the child's)."""
    with bench.tempfile.TemporaryDirectory(prefix="wb-split-") as tmp:
        store = SqliteStore(Path(tmp) / "bench.db", synchronous="FULL")
        await store.open()
        try:
            async with aiohttp.ClientSession(headers={"User-Agent": f"Wattbridge/{__version__}"}) as session:
                cfg = WebhookChannelConfig.model_validate(
                    {"kind": "webhook", "url": receiver.url, "secret": bench.SECRET}
                )
                real = WebhookChannel("partner", cfg, session=session, clock=SystemClock())
                channel: Channel = real
                proc = None
                if split:
                    ours, theirs = socket.socketpair()
                    proc = subprocess.Popen(
                        [sys.executable, __file__, "--child", str(theirs.fileno()), receiver.url],
                        pass_fds=[theirs.fileno()],
                    )
                    theirs.close()
                    channel = remote = RemoteChannel(real, ours)
                    await remote.start()

                def cpu() -> float:
                    return time.process_time() + (bench._proc_cpu(proc.pid) if proc is not None else 0.0)

                worker = DeliveryWorker(store, {"partner": channel}, clock=SystemClock(), concurrency=concurrency,
                                        lease=timedelta(seconds=20))  # fmt: skip
                heap.settle()
                try:
                    yield store, worker, cpu
                finally:
                    heap.release()
                    await channel.close()
                    await real.close()
                    if proc is not None:
                        await asyncio.to_thread(proc.wait, 10)
        finally:
            await store.close()


async def run(
    receiver: bench.Receiver,
    http: aiohttp.ClientSession,
    *,
    split: bool,
    n: int,
    rate: float | None,
    run_id: str,
) -> bench.Figures:
    async with _bridge(receiver, split=split, concurrency=64) as (store, worker, cpu):
        results = bench._results(worker._channels["partner"], n, run_id)  # type: ignore[arg-type]
        await receiver.arrivals(http)
        stop = asyncio.Event()
        loop = asyncio.create_task(worker.run(stop))
        try:
            cpu0, rx0 = cpu(), receiver.cpu()
            t0, sent_at = await bench._handover(results, rate, bench._committer(store, worker), lambda: None)
            t_end = await bench._until_done(worker, store, n, within_s=60 + n / 200)
            used, rx = cpu() - cpu0, receiver.cpu() - rx0
        finally:
            stop.set()
            await loop
        arrived = await receiver.arrivals(http)
    who = "split: sends in a child" if split else "one process"
    load = "burst" if rate is None else f"paced {rate:g}/s"
    return bench._stats(who, load, n, t0, t_end, sent_at, arrived, used, rx)


async def compare(args: argparse.Namespace) -> list[bench.Figures]:
    receiver = bench.Receiver()
    rows: list[bench.Figures] = []
    try:
        async with aiohttp.ClientSession() as http:
            for rep in range(args.repeat):
                for split in (False, True):
                    tag = f"r{rep}{'s' if split else 'o'}"
                    rows.append(await run(receiver, http, split=split, n=args.n, rate=None, run_id=tag + "b"))
                    rows.append(
                        await run(
                            receiver, http, split=split, n=args.paced_n, rate=args.rate, run_id=tag + "p"
                        )
                    )
    finally:
        receiver.close()
    print(bench._table(rows))
    for i in range(0, len(rows), 4):
        one_b, one_p, split_b, split_p = rows[i : i + 4]
        print(
            f"repeat {i // 4 + 1}: burst rate {split_b.rate / one_b.rate:.2f}x, CPU {split_b.cpu_us / one_b.cpu_us:.2f}x;"
            f" paced p99 {one_p.p99_ms:.1f} -> {split_p.p99_ms:.1f} ms, CPU {split_p.cpu_us / one_p.cpu_us:.2f}x"
        )
    print(f"split / one process; {os.cpu_count()} cores; loadavg {os.getloadavg()}")
    return rows


def main(argv: list[str] | None = None) -> list[bench.Figures]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=5000, help="notifications in the burst")
    p.add_argument("--paced-n", type=int, default=3000, help="notifications in the paced run")
    p.add_argument("--rate", type=float, default=1000.0)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--no-logs", dest="logs", action="store_false", help="leave logging as it is")
    args = p.parse_args(argv)
    if args.logs:
        _log_to_devnull()
    return asyncio.run(compare(args))


def _log_to_devnull() -> None:
    """As `wattbridge run` logs (info, JSON), into /dev/null: both processes pay for their lines."""
    logs.configure(level="info", fmt="json", stream=io.TextIOWrapper(open(os.devnull, "wb")))  # noqa: SIM115


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        _log_to_devnull()
        asyncio.run(child(int(sys.argv[2]), sys.argv[3]))
    else:
        main()
