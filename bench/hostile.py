"""The hostile provider of issue #18, against a real `wattbridge run`: does one bad home blind WattShift?

A WattShift simulator with two homes runs in this process; one home answers every status read with a
fault (`500` or `429`, each with `Retry-After: 99999`); the bridge is a child process polling every
`--interval` for `--seconds`. The script counts the simulator's status reads per home and reports how
many poll intervals passed, how often the healthy home was read, how often the bad one was asked (its
back-off), and whether the healthy home's change during the run was notified (a webhook sink verifies
it). Before the fix, the healthy home was read once in 20 s and nothing could be sent.

    .venv/bin/python bench/hostile.py [--fault 500|429|both] [--interval 2] [--seconds 20]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import sys
import tempfile
import textwrap
import time
from collections import Counter
from pathlib import Path

import orjson
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parent))

from crash import BridgeProcess, _free_port, served

from bridge.clock import SystemClock
from bridge.simulator.sinks import WebhookSink
from bridge.simulator.wattshift import WattShiftSimulator

GOOD = "ws_home_good0000000000000000000000000000"
BAD = "ws_home_bad00000000000000000000000000000"
SECRET = "whsec_" + base64.b64encode(b"wattbridge-hostile-run-secret-01").decode()


def counting(sim: WattShiftSimulator, reads: Counter[str]) -> web.Application:
    @web.middleware
    async def count(request: web.Request, handler):  # type: ignore[no-untyped-def]
        if request.path == "/v1/onboarding/status/get":
            try:
                reads[str(orjson.loads(await request.read()).get("homeId"))] += 1
            except orjson.JSONDecodeError:
                reads["?"] += 1
        return await handler(request)

    app = sim.app()
    app.middlewares.append(count)
    return app


async def run(fault: int, interval: float, seconds: float) -> dict[str, object]:
    sim = WattShiftSimulator(clock=SystemClock())
    sim.add_home(home_id=GOOD)
    sim.add_home(home_id=BAD)
    sim.fail("status", status=fault, times=None, headers={"Retry-After": "99999"}, resource=BAD)
    reads: Counter[str] = Counter()
    sink = WebhookSink(SECRET)
    port = _free_port()
    with tempfile.TemporaryDirectory(prefix="wattbridge-hostile-") as tmp:
        folder = Path(tmp)
        async with served(counting(sim, reads)) as ws_url, served(sink.app()) as sink_url:
            (folder / "rules.toml").write_text(
                textwrap.dedent("""
                [[rule]]
                id = "onboarding-started"
                source = "wattshift.onboarding"
                field = "status"
                to = "IN_PROGRESS"
                channels = ["partner"]
                """)
            )
            (folder / "config.toml").write_text(
                textwrap.dedent(f"""
                [store]
                url = "sqlite:///{folder / "bridge.db"}"
                [server]
                listen = "127.0.0.1:{port}"
                drain_timeout = "2s"
                [rules]
                paths = ["rules.toml"]
                [outbound]
                allow = ["127.0.0.0/8"]
                [providers.ws]
                kind = "wattshift"
                base_url = "{ws_url}"
                api_key = "{sim.api_key}"
                home_ids = ["{GOOD}", "{BAD}"]
                poll_interval = "{interval}s"
                timeout = "1s"
                [channels.partner]
                kind = "webhook"
                url = "{sink_url}/hooks/partner"
                secret = "{SECRET}"
                """)
            )
            with (folder / "bridge.log").open("wb") as log:
                bridge = BridgeProcess(folder / "config.toml", log, log_level="info")
                await bridge.start()
                await bridge.wait_ready(f"http://127.0.0.1:{port}", time.monotonic() + 30)
                started = time.monotonic()
                await asyncio.sleep(seconds / 2)
                sim.start(GOOD)  # a change of the healthy home mid-run: it must be notified
                changed_at = time.monotonic()
                await asyncio.sleep(seconds / 2)
                elapsed = time.monotonic() - started
                notified = len(sink.verified)
                await bridge.stop(10)
            deferred = sum(
                b'"poll.deferred"' in line for line in (folder / "bridge.log").read_bytes().splitlines()
            )
    return {
        "fault": f"{fault} + Retry-After: 99999 on {BAD[:12]}…",
        "seconds": round(elapsed, 1),
        "intervals": int(elapsed // interval),
        "healthy_reads": reads[GOOD],
        "bad_reads": reads[BAD],
        "change_notified": notified,
        "change_at_s": round(changed_at - started, 1),
        "whole_provider_deferrals_logged": deferred,
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--fault", choices=("500", "429", "both"), default="both")
    parser.add_argument("--interval", type=float, default=2.0)
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    faults = (500, 429) if args.fault == "both" else (int(args.fault),)
    for fault in faults:
        print(orjson.dumps(asyncio.run(run(fault, args.interval, args.seconds))).decode(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
