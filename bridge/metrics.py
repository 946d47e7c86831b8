"""Prometheus metrics: counters the pipeline bumps once per poll and per delivery attempt, and gauges
computed from the store and the components' state when `/metrics` is scraped.

Each app owns its own `CollectorRegistry` (not prometheus_client's global one), so two bridges in one
process, or two tests, never share a counter. The hot-path counters are plain ints and bucket lists
updated on the event loop thread (a dict lookup and an add, ~0.3 µs, where prometheus_client's
locked metric objects cost a few µs per call: bench/metrics.py); a collector renders them at scrape.
"""

from __future__ import annotations

import platform
from bisect import bisect_left
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
    StateSetMetricFamily,
)

from bridge import __version__
from bridge.model import DeliveryStatus, PollResult
from bridge.store.base import OutboxCounts

PROVIDER_STATUSES = ("ok", "degraded", "down")
CHANNEL_STATUSES = ("ok", "paused", "probing", "disabled")
# The attempt's outcome as a metric label: "pending" after an attempt means "will be retried".
_ATTEMPT_OUTCOME: dict[DeliveryStatus, str] = {"delivered": "delivered", "pending": "retry", "dead": "dead"}
# Polls are HTTP round trips (10 s timeout by default); deliveries likewise.
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


@dataclass(slots=True)
class _Histogram:
    counts: list[int] = field(default_factory=lambda: [0] * (len(BUCKETS) + 1))  # per bucket, then +Inf
    total: float = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(BUCKETS, value)] += 1  # the first bucket whose bound is >= value
        self.total += value

    def cumulative(self) -> list[tuple[str, float]]:
        out: list[tuple[str, float]] = []
        running = 0
        for bound, n in zip((*map(str, BUCKETS), "+Inf"), self.counts, strict=True):
            running += n
            out.append((bound, running))
        return out


@dataclass(frozen=True, slots=True, kw_only=True)
class ProviderView:
    status: str
    consecutive_failures: int
    last_success_at: datetime | None
    deferred_until: datetime | None = None  # the credential's requests wait until then
    deferred_kind: str | None = None  # rate_limited, unavailable, ... (a bounded label)
    resources_backing_off: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class BridgeState:
    """What the scrape-time gauges show, read from the store and the components just before a scrape."""

    now: datetime
    outbox: OutboxCounts | None  # None: the store did not answer
    providers: Mapping[str, ProviderView]
    channels: Mapping[str, str]  # name -> ok | paused | probing | disabled
    rules_loaded: int
    rule_reloads_ok: int
    rule_reloads_failed: int
    rules_loaded_at: datetime | None
    last_reload_ok: bool
    replica_id: str | None = None  # with [cluster] on a shared store
    leases_held: int = 0  # leases this replica holds now: the watch groups it polls, and `timers`
    flapping: Mapping[str, int] = field(default_factory=dict)  # rule (with `flap`) -> resources flapping


class Metrics:
    """The bridge's metrics. `poll`, `committed` and `delivery_attempt` are called from the hot paths
    (on the event loop thread only); `observe` sets the state that the next scrape renders."""

    def __init__(self) -> None:
        self.polls: dict[tuple[str, str], int] = {}  # (provider, outcome)
        self.poll_seconds: dict[str, _Histogram] = {}  # by provider
        self.events: dict[str, int] = {}  # by rule
        self.attempts: dict[tuple[str, str], int] = {}  # (channel, outcome)
        self.attempt_seconds: dict[str, _Histogram] = {}  # by channel
        self.state: BridgeState | None = None
        self.conflicts = 0  # results another writer (replica) committed first: left out, read again
        # Late writes of a replica whose claim or lease another one holds now, by kind (delivery,
        # timers): refused by their fencing token, the holder's record stands.
        self.fenced_refused: dict[str, int] = {}
        self.outbox_wakeups = 0  # another replica's commit woke the delivery worker (NOTIFY)
        self.registry = CollectorRegistry(auto_describe=True)
        self.registry.register(_Collector(self))

    def poll(self, provider: str, outcome: str, seconds: float) -> None:
        """One poll finished: `ok`, `partial` (some resources failed) or `failed` (nothing was read)."""
        key = (provider, outcome)
        self.polls[key] = self.polls.get(key, 0) + 1
        hist = self.poll_seconds.get(provider)
        if hist is None:
            hist = self.poll_seconds[provider] = _Histogram()
        hist.observe(seconds)

    def committed(self, results: Iterable[PollResult]) -> None:
        """Results were committed: count their events by rule."""
        events = self.events
        for result in results:
            for event in result.events:
                events[event.rule_id] = events.get(event.rule_id, 0) + 1

    def fenced(self, kind: str, n: int = 1) -> None:
        """`n` writes of kind `delivery` or `timers` were refused by their fencing token."""
        self.fenced_refused[kind] = self.fenced_refused.get(kind, 0) + n

    def conflicted(self, n: int) -> None:
        """`n` results lost a compare-and-swap to another writer (not an error: theirs stands)."""
        self.conflicts += n

    def delivery_attempt(self, channel: str, status: DeliveryStatus, latency_ms: float) -> None:
        """One attempt was made; `status` is where it left the delivery (delivered, pending, dead)."""
        key = (channel, _ATTEMPT_OUTCOME.get(status, status))
        self.attempts[key] = self.attempts.get(key, 0) + 1
        hist = self.attempt_seconds.get(channel)
        if hist is None:
            hist = self.attempt_seconds[channel] = _Histogram()
        hist.observe(latency_ms / 1000)

    def observe(self, state: BridgeState) -> None:
        """Set what the scrape-time gauges show (called by the /metrics handler before rendering)."""
        self.state = state


class _Collector:
    """Renders a Metrics object: its counters, and the gauges of its last BridgeState."""

    def __init__(self, metrics: Metrics) -> None:
        self._m = metrics

    def describe(self) -> Iterator[Metric]:
        return self._families(empty=True)

    def collect(self) -> Iterator[Metric]:
        return self._families(empty=False)

    def _families(self, *, empty: bool) -> Iterator[Metric]:
        m = self._m
        polls = CounterMetricFamily(
            "wattbridge_polls",
            "Polls of a provider watch group, by outcome (ok, partial: some resources failed, failed).",
            labels=["provider", "outcome"],
        )
        poll_seconds = HistogramMetricFamily(
            "wattbridge_poll_duration_seconds",
            "Wall time of one poll: fetch, diff, rules and the store commit.",
            labels=["provider"],
        )
        events = CounterMetricFamily(
            "wattbridge_events", "Events committed (rule firings and resolutions), by rule.", labels=["rule"]
        )
        attempts = CounterMetricFamily(
            "wattbridge_delivery_attempts",
            "Delivery attempts by channel and outcome (delivered, retry: failed and rescheduled, dead).",
            labels=["channel", "outcome"],
        )
        attempt_seconds = HistogramMetricFamily(
            "wattbridge_delivery_duration_seconds",
            "Time one delivery attempt took (request to response or failure).",
            labels=["channel"],
        )
        conflicts = CounterMetricFamily(
            "wattbridge_commit_conflicts",
            "Poll results left out because another replica committed the same resource first.",
        )
        fenced = CounterMetricFamily(
            "wattbridge_fenced_writes_refused",
            "Late writes refused by a fencing token: a delivery attempt recorded after another replica "
            "claimed the delivery again (kind=delivery), or a timer commit after another replica took "
            "the timers lease (kind=timers).",
            labels=["kind"],
        )
        wakeups = CounterMetricFamily(
            "wattbridge_outbox_wakeups",
            "Times another replica's commit woke this replica's delivery worker (PostgreSQL NOTIFY).",
        )
        if not empty:
            conflicts.add_metric([], m.conflicts)
            wakeups.add_metric([], m.outbox_wakeups)
            for kind in ("delivery", "timers"):
                fenced.add_metric([kind], m.fenced_refused.get(kind, 0))
            for (provider, outcome), n in sorted(m.polls.items()):
                polls.add_metric([provider, outcome], n)
            for provider, hist in sorted(m.poll_seconds.items()):
                poll_seconds.add_metric([provider], hist.cumulative(), hist.total)
            for rule, n in sorted(m.events.items()):
                events.add_metric([rule], n)
            for (ch, outcome), n in sorted(m.attempts.items()):
                attempts.add_metric([ch, outcome], n)
            for ch, hist in sorted(m.attempt_seconds.items()):
                attempt_seconds.add_metric([ch], hist.cumulative(), hist.total)
        yield from (polls, poll_seconds, events, attempts, attempt_seconds, conflicts, fenced, wakeups)
        s = None if empty else m.state
        yield InfoMetricFamily(
            "wattbridge_build",
            "Version of the running bridge.",
            value={"version": __version__, "python": platform.python_version()},
        )
        pending = GaugeMetricFamily(
            "wattbridge_outbox_pending", "Deliveries waiting to be sent or retried.", labels=["channel"]
        )
        dead = GaugeMetricFamily(
            "wattbridge_dead_letters",
            "Dead deliveries (retries exhausted or rejected): replay or inspect them.",
            labels=["channel"],
        )
        oldest = GaugeMetricFamily(
            "wattbridge_outbox_oldest_pending_age_seconds",
            "Age of the oldest pending delivery (0 when the outbox is empty): how far behind sending is.",
        )
        up = GaugeMetricFamily(
            "wattbridge_provider_up",
            "1 unless the provider is down (failed polls in a row).",
            labels=["provider"],
        )
        health = StateSetMetricFamily(
            "wattbridge_provider_health", "Provider health: ok, degraded or down.", labels=["provider"]
        )
        failures = GaugeMetricFamily(
            "wattbridge_provider_consecutive_failures", "Failed polls in a row.", labels=["provider"]
        )
        last_ok = GaugeMetricFamily(
            "wattbridge_provider_last_success_timestamp_seconds",
            "When the provider was last read successfully (Unix time; absent before the first success).",
            labels=["provider"],
        )
        deferred = GaugeMetricFamily(
            "wattbridge_provider_deferred_until_timestamp_seconds",
            "Until when the provider's requests wait (a 429, or a 503 with Retry-After; Unix time), "
            "labelled with the cause; absent while nothing is deferred.",
            labels=["provider", "cause"],
        )
        backing_off = GaugeMetricFamily(
            "wattbridge_provider_resources_backing_off",
            "Resources of the provider skipped by their own back-off after failed reads.",
            labels=["provider"],
        )
        channel = StateSetMetricFamily(
            "wattbridge_channel_state",
            "Channel circuit: ok, paused, probing or disabled.",
            labels=["channel"],
        )
        rules = GaugeMetricFamily("wattbridge_rules_loaded", "Rules in the running rule set.")
        reloads = CounterMetricFamily(
            "wattbridge_rule_reloads", "Rule reloads by outcome (success, failure).", labels=["outcome"]
        )
        reloaded_at = GaugeMetricFamily(
            "wattbridge_rule_reload_timestamp_seconds",
            "When the running rule set was loaded (at start or by the last successful reload).",
        )
        last_reload = GaugeMetricFamily(
            "wattbridge_rule_last_reload_successful", "1 if the last rule load or reload succeeded, else 0."
        )
        leases = GaugeMetricFamily(
            "wattbridge_replica_leases",
            "Leases this replica holds (the watch groups it polls, and `timers` when it ticks the rule "
            "timers), labelled by replica id.",
            labels=["replica"],
        )
        store_up = GaugeMetricFamily("wattbridge_store_up", "1 if the store answered this scrape, else 0.")
        flapping = GaugeMetricFamily(
            "wattbridge_flapping_resources",
            "Resources flapping now (#14 flap detection), by rule with `flap`: their notifications are held "
            "back until they settle.",
            labels=["rule"],
        )
        if s is not None:
            for rule, n in sorted(s.flapping.items()):
                flapping.add_metric([rule], n)
            store_up.add_metric([], 0 if s.outbox is None else 1)
            box = s.outbox
            if box is not None:  # without the store: no outbox figures rather than made-up zeros
                for name in sorted(box.pending.keys() | box.dead.keys() | s.channels.keys()):
                    pending.add_metric([name], box.pending.get(name, 0))
                    dead.add_metric([name], box.dead.get(name, 0))
                age = (
                    0.0 if box.oldest_pending_at is None else (s.now - box.oldest_pending_at).total_seconds()
                )
                oldest.add_metric([], max(0.0, age))
            for name, p in sorted(s.providers.items()):
                up.add_metric([name], 0 if p.status == "down" else 1)
                health.add_metric([name], {v: p.status == v for v in PROVIDER_STATUSES})
                failures.add_metric([name], p.consecutive_failures)
                if p.last_success_at is not None:
                    last_ok.add_metric([name], p.last_success_at.timestamp())
                if p.deferred_until is not None:
                    deferred.add_metric([name, p.deferred_kind or "unknown"], p.deferred_until.timestamp())
                backing_off.add_metric([name], p.resources_backing_off)
            for name, status in sorted(s.channels.items()):
                channel.add_metric([name], {v: status == v for v in CHANNEL_STATUSES})
            rules.add_metric([], s.rules_loaded)
            reloads.add_metric(["success"], s.rule_reloads_ok)
            reloads.add_metric(["failure"], s.rule_reloads_failed)
            if s.rules_loaded_at is not None:
                reloaded_at.add_metric([], s.rules_loaded_at.timestamp())
            last_reload.add_metric([], 1 if s.last_reload_ok else 0)
            if s.replica_id is not None:
                leases.add_metric([s.replica_id], s.leases_held)
        yield leases
        yield from (store_up, pending, dead, oldest, up, health, failures, last_ok, deferred, backing_off)
        yield channel
        yield from (rules, reloads, reloaded_at, last_reload, flapping)
