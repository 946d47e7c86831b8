"""Per-channel rate limits (#15): over the limit a delivery waits in the outbox for its turn, spends
no attempt, and goes out when the (injected) clock reaches that turn. No sleeping."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bridge.config.models import WebhookChannelConfig
from bridge.deliver.ratelimit import RateLimit
from tests.conftest import WEBHOOK_SECRET

T0 = datetime(2026, 11, 22, 21, 0, tzinfo=UTC)


def test_gcra_allows_a_burst_then_one_per_interval():
    limit = RateLimit(per_second=2, burst=3)
    assert [limit.try_take(T0) for _ in range(4)] == [True, True, True, False]
    assert not limit.try_take(T0 + timedelta(seconds=0.4))
    assert limit.try_take(T0 + timedelta(seconds=0.5))
    assert not limit.try_take(T0 + timedelta(seconds=0.5))


def test_refused_sends_are_handed_successive_turns():
    limit = RateLimit(per_second=1)
    assert limit.try_take(T0)
    turns = [limit.defer_until(T0) for _ in range(3)]
    assert turns == [T0 + timedelta(seconds=s) for s in (1, 2, 3)]
    # Each comes back at its turn and is allowed then.
    for turn in turns:
        assert limit.try_take(turn)


@pytest.mark.parametrize(
    ("text", "per_second"), [("10/s", 10.0), ("30/m", 0.5), ("360/h", 0.1), (" 1.5 / s ", 1.5)]
)
def test_rates_are_written_per_unit(text, per_second):
    cfg = WebhookChannelConfig(
        kind="webhook", url="https://x.example/h", secret=WEBHOOK_SECRET, rate_limit=text
    )
    assert cfg.rate_limit == per_second


@pytest.mark.parametrize("text", ["10", "0/s", "5/d", "fast", 3])
def test_a_bad_rate_is_refused_with_the_accepted_forms(text):
    with pytest.raises(ValueError, match=r"use a positive count per unit, like '10/s', '30/m', '100/h'"):
        WebhookChannelConfig(
            kind="webhook", url="https://x.example/h", secret=WEBHOOK_SECRET, rate_limit=text
        )


async def test_a_backlog_goes_out_at_the_channels_rate_with_no_attempt_spent_waiting(
    make_config, make_bridge, podero, sink
):
    user = podero.add_user(email="ada@example.com")
    boxes = [podero.add_wallbox(user, is_plugged_in=True) for _ in range(4)]
    channels = {
        "partner": {"kind": "webhook", "url": sink.url, "secret": WEBHOOK_SECRET, "rate_limit": "30/m"},
        "ops": {"kind": "email", "to": ["ops@example.com"], "from": "wattbridge@example.com"},
    }
    bridge = await make_bridge(
        make_config(wallboxes=[{"user_id": user, "wallbox_id": b} for b in boxes], channels=channels)
    )
    await bridge.poll()
    for b in boxes:
        podero.update_wallbox(b, is_charging=True)
    bridge.clock.advance(timedelta(seconds=60))
    await bridge.poll()
    start = bridge.clock.now()

    await bridge.deliver()
    assert len(sink.verified) == 1
    waiting = [
        d for d in await bridge.store.list_deliveries(channel="partner", limit=10) if d.status == "pending"
    ]
    assert sorted(d.next_attempt_at for d in waiting) == [start + timedelta(seconds=s) for s in (2, 4, 6)]
    assert all(d.attempts == 0 for d in waiting)

    bridge.clock.advance(timedelta(seconds=1))
    await bridge.deliver()
    assert len(sink.verified) == 1  # not its turn yet
    for n in (2, 3, 4):
        bridge.clock.advance(timedelta(seconds=1 if n == 2 else 2))
        await bridge.deliver()
        assert len(sink.verified) == n
    delivered = await bridge.store.list_deliveries(channel="partner", limit=10)
    assert {d.status for d in delivered} == {"delivered"}
    assert all(d.attempts == 1 for d in delivered)  # one attempt each: waiting cost none
