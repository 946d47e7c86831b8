"""Costs of issue #15's per-delivery additions: signing with two secrets during a rotation, the
outbound guard's check of a resolved address, and building one event type's JSON Schema.

    .venv/bin/python bench/contracts.py [--n N]

Prints µs per operation (median of 5 runs). A schema is built once per (type, sources) and cached,
so its cost is paid by the first request of `/api/schemas/{type}` after a start or reload.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import ipaddress
import json
import statistics
import time
from datetime import UTC, datetime

import aiohttp

from bridge.channels.base import RenderContext
from bridge.channels.outbound import OutboundGuard
from bridge.channels.webhook import WebhookChannel
from bridge.clock import ManualClock
from bridge.config.models import WebhookChannelConfig
from bridge.contracts.envelope import envelope_model
from bridge.contracts.samples import sample_event
from bridge.contracts.schemas import schema_document
from bridge.model import Delivery

NEW = "whsec_" + base64.b64encode(b"bench-new-secret-0123456789abcd").decode()
OLD = "whsec_" + base64.b64encode(b"bench-old-secret-0123456789abcd").decode()


def per_op_us(fn, n: int) -> float:  # type: ignore[no-untyped-def]
    runs = []
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(n):
            fn()
        runs.append((time.perf_counter() - start) / n * 1e6)
    return round(statistics.median(runs), 3)


async def signing(n: int) -> dict[str, float]:
    event = sample_event("podero.wallbox")
    out = {}
    when = datetime(2026, 11, 22, tzinfo=UTC)
    async with aiohttp.ClientSession() as session:
        for label, extra in (("sign_1_secret_us", {}), ("sign_2_secrets_us", {"previous_secret": OLD})):
            cfg = WebhookChannelConfig(kind="webhook", url="https://x.example/h", secret=NEW, **extra)
            channel = WebhookChannel("bench", cfg, session=session, clock=ManualClock())
            body = channel.render(event, RenderContext(old=None))
            d = Delivery(id="msg_b", event_id="evt_b", channel="bench", body=body,
                         next_attempt_at=event.occurred_at, created_at=event.occurred_at)  # fmt: skip
            out[label] = per_op_us(lambda c=channel, d=d: c.headers(d, when), n)
        out["body_bytes"] = len(body)
    return out


def main(argv: list[str] | None = None) -> dict[str, float]:
    p = argparse.ArgumentParser()
    p.add_argument("--n", type=int, default=20000)
    args = p.parse_args(argv)
    figures = asyncio.run(signing(args.n))
    guard = OutboundGuard([ipaddress.ip_network("127.0.0.0/8")])
    addr = ipaddress.ip_address("93.184.216.34")
    figures["guard_check_us"] = per_op_us(lambda: guard.refusal(addr), args.n)

    def build() -> None:
        envelope_model.cache_clear()
        schema_document.cache_clear()
        schema_document("wallbox.action_needed", ("podero.wallbox", "bridge.provider"))

    figures["schema_build_us"] = per_op_us(build, max(1, args.n // 200))
    print(json.dumps(figures, indent=2))
    return figures


if __name__ == "__main__":
    main()
