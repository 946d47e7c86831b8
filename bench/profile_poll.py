"""Profile one bridge poll of N wallboxes with pyinstrument (a dev tool: `pip install pyinstrument`).

.venv/bin/python bench/profile_poll.py [--wallboxes 5000] [--change-every 0] [--html out.html]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aiohttp import web

from bench.common import Stopwatch, add_watches, bridge_config, quiet_logs, simulator


async def main_async(args: argparse.Namespace) -> None:
    from pyinstrument import Profiler

    from bridge.app import create_app
    from bridge.app_keys import POLLER, PROVIDERS
    from bridge.store.sqlite import SqliteStore

    quiet_logs()
    with (
        simulator(args.wallboxes, change_every=args.change_every) as sim,
        tempfile.TemporaryDirectory() as tmp,
    ):
        config = bridge_config(Path(tmp), sim, concurrency=args.concurrency)
        db = Path(tmp) / "bench.db"
        store = SqliteStore(db)
        await store.open()
        await store.close()
        add_watches(db, "podero", args.wallboxes)
        app = create_app(config, start_scheduler=False)
        runner = web.AppRunner(app, handle_signals=False)
        await runner.setup()
        try:
            poller, provider = app[POLLER], app[PROVIDERS]["podero"]
            await poller.poll(provider, "wallboxes")
            profiler = Profiler(interval=0.001, async_mode="disabled")
            profiler.start()
            watch = Stopwatch(sim).start()
            summary = await poller.poll(provider, "wallboxes")
            if args.drain:  # include delivering the events (claim, sign, POST, record)
                from bridge.app_keys import STORE

                while await app[STORE].outbox_depth() > 0:
                    await asyncio.sleep(0.02)
            m = watch.stop(summary.observed)
            profiler.stop()
            print(m.line(f"bridge (changed {summary.changed})"))
            if args.html:
                Path(args.html).write_text(profiler.output_html())
            print(profiler.output_text(unicode=False, show_all=args.all))
        finally:
            await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--wallboxes", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--change-every", type=int, default=0)
    parser.add_argument("--html")
    parser.add_argument("--all", action="store_true")
    parser.add_argument("--drain", action="store_true", help="also profile delivering the events")
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
