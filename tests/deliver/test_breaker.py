"""Circuit breaking: a failing receiver is paused (nothing dropped, no attempts spent), probed one
delivery at a time, and closed again by a success; ops hear about it through `bridge.channel`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bridge.app_keys import DELIVERY
from bridge.deliver.breaker import BreakerPolicy, Breakers

T0 = datetime(2026, 11, 22, 21, 0, tzinfo=UTC)
WB = "00000000-0000-4000-8000-0000000000b1"


def test_the_circuit_opens_after_the_threshold_and_admits_one_probe_after_the_cooldown():
    b = Breakers(BreakerPolicy(threshold=3, cooldown=timedelta(seconds=30)))
    for i in range(2):
        assert b.allow("partner", T0)
        assert not b.record("partner", ok=False, counts=True, now=T0, error=f"HTTP 503 #{i}")
    assert b.record("partner", ok=False, counts=True, now=T0, error="HTTP 503")  # third: opens
    assert b.get("partner").state == "open"
    assert not b.allow("partner", T0 + timedelta(seconds=29))
    assert b.allow("partner", T0 + timedelta(seconds=30))  # the probe
    assert not b.allow("partner", T0 + timedelta(seconds=30))  # only one at a time
    b.record("partner", ok=False, counts=True, now=T0 + timedelta(seconds=31))
    circuit = b.get("partner")
    assert circuit.state == "open"
    assert circuit.open_until == T0 + timedelta(seconds=91)  # cooldown doubled to 60 s
    assert b.allow("partner", T0 + timedelta(seconds=91))
    assert b.record("partner", ok=True, counts=True, now=T0 + timedelta(seconds=92))
    assert b.get("partner").state == "closed"


def test_permanent_rejections_do_not_open_the_circuit():
    b = Breakers(BreakerPolicy(threshold=2))
    for _ in range(5):
        b.record("partner", ok=False, counts=False, now=T0)
    assert b.get("partner").state == "closed"
    assert b.allow("partner", T0)


def test_the_cooldown_is_capped():
    b = Breakers(BreakerPolicy(threshold=1, cooldown=timedelta(minutes=4), max_cooldown=timedelta(minutes=5)))
    now = T0
    for _ in range(4):
        b.record("partner", ok=False, counts=True, now=now)
        now = b.get("partner").open_until or now
        assert b.allow("partner", now)
    assert b.get("partner").cooldown == timedelta(minutes=5)


CHANNEL_RULES = """
[[rule]]
id = "wallbox-changed"
source = "podero.wallbox"
field = "charge_rate_w"
changed = true
channels = ["partner"]

[[rule]]
id = "channel-paused"
source = "bridge.channel"
field = "status"
to = ["paused", "disabled"]
type = "channel.unhealthy"
channels = ["ops"]
"""


async def test_a_receiver_that_keeps_failing_is_paused_without_losing_deliveries(
    make_config, make_bridge, podero, sink, mailbox
):
    user = podero.add_user(email="ada@example.com")
    podero.add_wallbox(user, wallbox_id=WB, charge_rate_w=1000)
    bridge = await make_bridge(
        make_config(rules=CHANNEL_RULES, wallboxes=[{"user_id": user, "wallbox_id": WB}])
    )
    await bridge.poll()
    sink.respond_with(*([503] * 50))
    for rate in range(2000, 9000, 1000):  # seven changes → seven deliveries
        podero.update_wallbox(WB, charge_rate_w=rate)
        bridge.clock.advance(timedelta(seconds=10))
        await bridge.poll()
        await bridge.deliver()
    worker = bridge.app[DELIVERY]
    assert worker.channel_state("partner")["status"] == "paused"
    # Five failures open the circuit at t=30 s (first sends plus 5 s retries); from then on only the
    # single probe at t=60 s (after the 30 s cooldown) reaches the receiver, and it fails too.
    assert len(sink.received) == 5 + 1
    pending = await bridge.store.list_deliveries(status="pending", channel="partner")
    assert len(pending) == 7  # nothing dropped
    events = await bridge.store.list_events()
    assert [e.type for e in events if e.key.source == "bridge.channel"] == ["channel.unhealthy"], [
        (e.type, e.key) for e in events
    ]
    await mailbox.wait_for(1)
    assert "channel.unhealthy" in str(mailbox.messages[0]["Subject"])

    sink.clear_script()  # the receiver recovers
    for _ in range(30):  # leases and retry backoffs run out; the probe succeeds; the rest follow
        bridge.clock.advance(timedelta(minutes=5))
        await bridge.deliver()
    assert worker.channel_state("partner")["status"] == "ok"
    assert await bridge.store.list_deliveries(status="pending", channel="partner") == []
    delivered = await bridge.store.list_deliveries(status="delivered", channel="partner")
    assert len(delivered) == 7
