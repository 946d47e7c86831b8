"""What a provider limit kept as one token bucket in PostgreSQL would cost (the alternative to the
per-replica shares of bridge/poll/membership.py): every provider request first takes a token with
one atomic UPDATE on the bucket's row.

`--replicas` processes (one asyncpg connection pool each, as replicas would have) take tokens as
fast as they can from one bucket whose rate never binds, for `--seconds`: the takes/s is what the
database sustains for the whole fleet, the latency is what each provider request would wait more,
and the CPU per take is what each replica would spend more per request (a poll of one wallbox costs
~260 µs of CPU today, bench/README.md §11).

    WATTBRIDGE_TEST_PG=postgresql://postgres@127.0.0.1:5432/test \\
        .venv/bin/python bench/shared_bucket.py [--replicas 2] [--concurrency 16] [--seconds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import statistics
import sys
import time
import uuid

import asyncpg

TAKE = """
UPDATE bucket SET
    tokens = LEAST(capacity, tokens + EXTRACT(EPOCH FROM clock_timestamp() - at) * rate) - 1,
    at = clock_timestamp()
WHERE name = $1 AND LEAST(capacity, tokens + EXTRACT(EPOCH FROM clock_timestamp() - at) * rate) >= 1
RETURNING tokens"""


async def _take_loop(
    url: str, schema: str, concurrency: int, seconds: float
) -> tuple[int, list[float], float]:
    pool = await asyncpg.create_pool(
        url, min_size=concurrency, max_size=concurrency, server_settings={"search_path": schema}
    )
    latencies: list[float] = []
    refused = 0
    stop = time.monotonic() + seconds
    cpu0 = time.process_time()

    async def worker() -> None:
        nonlocal refused
        async with pool.acquire() as conn:
            while time.monotonic() < stop:
                t = time.perf_counter()
                if await conn.fetchval(TAKE, "podero") is None:
                    refused += 1
                latencies.append(time.perf_counter() - t)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    cpu = time.process_time() - cpu0
    await pool.close()
    return refused, latencies, cpu


def _replica(url: str, schema: str, concurrency: int, seconds: float, out: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    out.put(asyncio.run(_take_loop(url, schema, concurrency, seconds)))


async def _setup(url: str) -> str:
    schema = f"wb_bucket_{uuid.uuid4().hex[:10]}"
    conn = await asyncpg.connect(url)
    await conn.execute(f'CREATE SCHEMA "{schema}"')
    await conn.execute(
        f'CREATE TABLE "{schema}".bucket (name text PRIMARY KEY, tokens float8, capacity float8, '
        "rate float8, at timestamptz)"
    )
    await conn.execute(
        f"""INSERT INTO "{schema}".bucket VALUES ('podero', 1e9, 1e9, 1e9, clock_timestamp())"""  # noqa: S608 (our uuid name)
    )
    await conn.close()
    return schema


async def _drop(url: str, schema: str) -> None:
    conn = await asyncpg.connect(url)
    await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    await conn.close()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=16, help="requests in flight per replica")
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    url = os.environ.get("WATTBRIDGE_TEST_PG")
    if not url:
        print("WATTBRIDGE_TEST_PG is unset (e.g. postgresql://postgres@127.0.0.1:5432/test)", file=sys.stderr)
        return 2
    schema = asyncio.run(_setup(url))
    try:
        out: multiprocessing.Queue = multiprocessing.Queue()  # type: ignore[type-arg]
        procs = [
            multiprocessing.Process(target=_replica, args=(url, schema, args.concurrency, args.seconds, out))
            for _ in range(args.replicas)
        ]
        for p in procs:
            p.start()
        results = [out.get() for _ in procs]
        for p in procs:
            p.join()
    finally:
        asyncio.run(_drop(url, schema))
    takes = sum(len(lat) for _, lat, _ in results)
    refused = sum(r for r, _, _ in results)
    lat = sorted(x for _, each, _ in results for x in each)
    cpu = sum(c for _, _, c in results)
    print(
        f"{args.replicas} replicas x {args.concurrency} in flight: {takes / args.seconds:,.0f} takes/s from one "
        f"bucket row ({refused} refused), latency p50 {statistics.median(lat) * 1e3:.2f} ms, "
        f"p99 {lat[int(len(lat) * 0.99)] * 1e3:.2f} ms; {cpu / max(1, takes) * 1e6:.0f} µs of replica CPU per take"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
