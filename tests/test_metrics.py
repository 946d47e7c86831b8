"""`/metrics`: real polls of the Podero simulator and real deliveries to the webhook sink, counted
exactly; the outbox gauges follow pending and dead rows; rule reloads are counted and timed."""

from __future__ import annotations

from datetime import timedelta

import pytest
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families

from bridge.app_keys import METRICS, RULEBOOK
from bridge.metrics import Metrics

WB = "00000000-0000-4000-8000-0000000000b1"

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def scrape(bridge) -> Samples:
    resp = await bridge.client.get("/metrics")
    assert resp.status == 200
    assert resp.headers["Content-Type"] == CONTENT_TYPE_LATEST
    samples: Samples = {}
    for family in text_string_to_metric_families(await resp.text()):
        for s in family.samples:
            samples[s.name, tuple(sorted(s.labels.items()))] = s.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


def health(samples: Samples, provider: str, status: str) -> float | None:
    """The provider's health state set: 1 for its current status, 0 for the others."""
    return value(samples, "wattbridge_provider_health", provider=provider, wattbridge_provider_health=status)


@pytest.fixture
async def bridge(make_config, make_bridge, podero):
    user = podero.add_user(email="ada@example.com")
    podero.add_wallbox(user, wallbox_id=WB, is_plugged_in=True, is_charging=False)
    config = make_config(wallboxes=[{"user_id": user, "wallbox_id": WB}])
    channels = dict(config.channels)  # two attempts, then dead: 0 s and 30 s (± 20 % jitter)
    channels["partner"] = channels["partner"].model_copy(
        update={"retry": [timedelta(0), timedelta(seconds=30)]}
    )
    return await make_bridge(config.model_copy(update={"channels": channels}))


async def test_polls_events_and_deliveries_are_counted_exactly(bridge, podero, sink):
    await bridge.poll()  # baseline
    podero.update_wallbox(WB, is_charging=True)
    bridge.clock.advance(timedelta(seconds=60))
    await bridge.poll()  # one event: charging-started → one webhook
    await bridge.deliver()
    podero.fail("wallbox", status=500)
    await bridge.poll()

    m = await scrape(bridge)
    assert len(sink.verified) == 1
    assert value(m, "wattbridge_polls_total", provider="podero", outcome="ok") == 2
    assert value(m, "wattbridge_polls_total", provider="podero", outcome="failed") == 1
    assert value(m, "wattbridge_polls_total", provider="podero", outcome="partial") is None
    assert value(m, "wattbridge_poll_duration_seconds_count", provider="podero") == 3
    assert value(m, "wattbridge_events_total", rule="charging-started") == 1
    assert value(m, "wattbridge_events_total", rule="wallbox-action-needed") is None
    assert value(m, "wattbridge_delivery_attempts_total", channel="partner", outcome="delivered") == 1
    assert value(m, "wattbridge_delivery_duration_seconds_count", channel="partner") == 1
    assert value(m, "wattbridge_outbox_pending", channel="partner") == 0
    assert value(m, "wattbridge_outbox_pending", channel="ops") == 0
    assert value(m, "wattbridge_dead_letters", channel="partner") == 0
    assert value(m, "wattbridge_outbox_oldest_pending_age_seconds") == 0
    # One failed poll: degraded, still up; its last success is the clock's time of the second poll.
    assert value(m, "wattbridge_provider_up", provider="podero") == 1
    assert (
        value(m, "wattbridge_provider_health", provider="podero", wattbridge_provider_health="degraded") == 1
    )
    assert value(m, "wattbridge_provider_health", provider="podero", wattbridge_provider_health="ok") == 0
    assert value(m, "wattbridge_provider_consecutive_failures", provider="podero") == 1
    assert (
        value(m, "wattbridge_provider_last_success_timestamp_seconds", provider="podero")
        == bridge.clock.now().timestamp()
    )
    assert value(m, "wattbridge_channel_state", channel="partner", wattbridge_channel_state="ok") == 1
    assert value(m, "wattbridge_rules_loaded") == 2
    build = [k for k in m if k[0] == "wattbridge_build_info"]
    assert len(build) == 1
    assert ("version", "0.1.0") in build[0][1]


async def test_three_failed_polls_in_a_row_set_the_provider_down(bridge, podero):
    await bridge.poll()
    podero.fail("wallbox", status=503, times=3)
    for _ in range(3):
        await bridge.poll()
    m = await scrape(bridge)
    assert value(m, "wattbridge_provider_up", provider="podero") == 0
    assert health(m, "podero", "down") == 1
    assert value(m, "wattbridge_polls_total", provider="podero", outcome="failed") == 3
    await bridge.poll()
    m = await scrape(bridge)
    assert value(m, "wattbridge_provider_up", provider="podero") == 1
    assert value(m, "wattbridge_provider_consecutive_failures", provider="podero") == 0


async def test_outbox_gauges_follow_pending_then_dead_rows_with_ages_on_the_injected_clock(
    bridge, podero, sink
):
    await bridge.poll()
    sink.respond_with(500, 500)
    podero.update_wallbox(WB, is_charging=True)
    await bridge.poll()  # the delivery is created now
    bridge.clock.advance(timedelta(seconds=7))
    m = await scrape(bridge)
    assert value(m, "wattbridge_outbox_pending", channel="partner") == 1
    assert value(m, "wattbridge_outbox_oldest_pending_age_seconds") == 7.0

    await bridge.deliver()  # HTTP 500: rescheduled
    bridge.clock.advance(timedelta(seconds=3))
    m = await scrape(bridge)
    assert value(m, "wattbridge_delivery_attempts_total", channel="partner", outcome="retry") == 1
    assert value(m, "wattbridge_outbox_pending", channel="partner") == 1
    assert value(m, "wattbridge_outbox_oldest_pending_age_seconds") == 10.0
    assert value(m, "wattbridge_dead_letters", channel="partner") == 0

    bridge.clock.advance(timedelta(seconds=40))
    await bridge.deliver()  # HTTP 500 again, schedule exhausted: dead
    m = await scrape(bridge)
    assert value(m, "wattbridge_delivery_attempts_total", channel="partner", outcome="dead") == 1
    assert value(m, "wattbridge_delivery_attempts_total", channel="partner", outcome="delivered") is None
    assert value(m, "wattbridge_outbox_pending", channel="partner") == 0
    assert value(m, "wattbridge_dead_letters", channel="partner") == 1
    assert value(m, "wattbridge_outbox_oldest_pending_age_seconds") == 0
    assert len(sink.received) == 2


async def test_rule_reloads_are_counted_and_a_refused_one_keeps_the_last_good_time(bridge, tmp_path):
    started = bridge.clock.now().timestamp()
    m = await scrape(bridge)
    assert value(m, "wattbridge_rule_reload_timestamp_seconds") == started
    assert value(m, "wattbridge_rule_last_reload_successful") == 1

    rule_file = tmp_path / "rules" / "test.toml"
    good = rule_file.read_text()
    rule_file.write_text(good + '\n[[rule]]\nid = "broken"\nsource = "podero.wallbox"\n')
    bridge.clock.advance(timedelta(minutes=1))
    assert bridge.app[RULEBOOK].reload() is not None
    m = await scrape(bridge)
    assert value(m, "wattbridge_rule_reloads_total", outcome="failure") == 1
    assert value(m, "wattbridge_rule_reloads_total", outcome="success") == 0
    assert value(m, "wattbridge_rule_last_reload_successful") == 0
    assert value(m, "wattbridge_rule_reload_timestamp_seconds") == started
    assert value(m, "wattbridge_rules_loaded") == 2

    rule_file.write_text(good.split('[[rule]]\nid = "wallbox-action-needed"')[0])
    bridge.clock.advance(timedelta(minutes=1))
    assert bridge.app[RULEBOOK].reload() is None
    m = await scrape(bridge)
    assert value(m, "wattbridge_rule_reloads_total", outcome="success") == 1
    assert value(m, "wattbridge_rule_last_reload_successful") == 1
    assert value(m, "wattbridge_rule_reload_timestamp_seconds") == bridge.clock.now().timestamp()
    assert value(m, "wattbridge_rules_loaded") == 1


async def test_each_app_counts_in_its_own_registry(bridge):
    await bridge.poll()
    other = Metrics()  # a second set of the same names must not collide with the first app's
    other.poll("podero", "ok", 0.1)
    m = await scrape(bridge)
    assert value(m, "wattbridge_polls_total", provider="podero", outcome="ok") == 1
    assert bridge.app[METRICS].registry is not other.registry
    assert (
        other.registry.get_sample_value("wattbridge_polls_total", {"provider": "podero", "outcome": "ok"})
        == 1
    )


async def test_a_scrape_without_the_store_keeps_counters_and_health_and_says_the_store_is_down(bridge):
    await bridge.poll()
    m = await scrape(bridge)
    assert value(m, "wattbridge_store_up") == 1
    await bridge.store.close()
    m = await scrape(bridge)
    assert value(m, "wattbridge_store_up") == 0
    assert value(m, "wattbridge_outbox_pending", channel="partner") is None
    assert value(m, "wattbridge_polls_total", provider="podero", outcome="ok") == 1
    assert value(m, "wattbridge_provider_up", provider="podero") == 1
