"""Prometheus metrics: counters the pipeline bumps once per poll and per delivery attempt, and gauges
computed from the store and the components' state when `/metrics` is scraped.

Each app owns its own `CollectorRegistry` (not prometheus_client's global one), so two bridges in one
process, or two tests, never share a counter. Label children are cached: the hot paths pay a dict
lookup and an increment, never prometheus_client's locked `labels()` call.
"""

from __future__ import annotations

import platform
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    InfoMetricFamily,
    Metric,
    StateSetMetricFamily,
)

from bridge import __version__
from bridge.model import DeliveryStatus, PollResult

PROVIDER_STATUSES = ("ok", "degraded", "down")
CHANNEL_STATUSES = ("ok", "paused", "probing", "disabled")
# The attempt's outcome as a metric label: "pending" after an attempt means "will be retried".
_ATTEMPT_OUTCOME: dict[DeliveryStatus, str] = {"delivered": "delivered", "pending": "retry", "dead": "dead"}
# Polls are HTTP round trips (10 s timeout by default); deliveries likewise.
_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


@dataclass(frozen=True, slots=True, kw_only=True)
class ProviderView:
    status: str
    consecutive_failures: int
    last_success_at: datetime | None


@dataclass(frozen=True, slots=True, kw_only=True)
class BridgeState:
    """What the scrape-time gauges show, read from the store and the components just before a scrape."""

    now: datetime
    pending: Mapping[str, int]  # by channel
    dead: Mapping[str, int]  # by channel
    oldest_pending_at: datetime | None
    providers: Mapping[str, ProviderView]
    channels: Mapping[str, str]  # name -> ok | paused | probing | disabled
    rules_loaded: int
    rule_reloads_ok: int
    rule_reloads_failed: int
    rules_loaded_at: datetime | None
    last_reload_ok: bool


class Metrics:
    """The bridge's metrics. `poll`, `committed` and `delivery_attempt` are called from the hot paths;
    `observe` sets the state that the next scrape renders."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._polls = Counter(
            "wattbridge_polls",
            "Polls of a provider watch group, by outcome (ok, partial: some resources failed, failed).",
            ["provider", "outcome"],
            registry=self.registry,
        )
        self._poll_seconds = Histogram(
            "wattbridge_poll_duration_seconds",
            "Wall time of one poll: fetch, diff, rules and the store commit.",
            ["provider"],
            buckets=_BUCKETS,
            registry=self.registry,
        )
        self._events = Counter(
            "wattbridge_events",
            "Events committed (rule firings and resolutions), by rule.",
            ["rule"],
            registry=self.registry,
        )
        self._attempts = Counter(
            "wattbridge_delivery_attempts",
            "Delivery attempts by channel and outcome (delivered, retry: failed and rescheduled, dead).",
            ["channel", "outcome"],
            registry=self.registry,
        )
        self._attempt_seconds = Histogram(
            "wattbridge_delivery_duration_seconds",
            "Time one delivery attempt took (request to response or failure).",
            ["channel"],
            buckets=_BUCKETS,
            registry=self.registry,
        )
        self._state = _StateCollector()
        self.registry.register(self._state)
        # Cached label children: see the module docstring.
        self._poll_children: dict[tuple[str, str], Counter] = {}
        self._poll_hist_children: dict[str, Histogram] = {}
        self._event_children: dict[str, Counter] = {}
        self._attempt_children: dict[tuple[str, str], tuple[Counter, Histogram]] = {}

    def poll(self, provider: str, outcome: str, seconds: float) -> None:
        """One poll finished: `ok`, `partial` (some resources failed) or `failed` (nothing was read)."""
        counter = self._poll_children.get((provider, outcome))
        if counter is None:
            counter = self._poll_children[provider, outcome] = self._polls.labels(provider, outcome)
        hist = self._poll_hist_children.get(provider)
        if hist is None:
            hist = self._poll_hist_children[provider] = self._poll_seconds.labels(provider)
        counter.inc()
        hist.observe(seconds)

    def committed(self, results: Iterable[PollResult]) -> None:
        """Results were committed: count their events by rule."""
        for result in results:
            for event in result.events:
                counter = self._event_children.get(event.rule_id)
                if counter is None:
                    counter = self._event_children[event.rule_id] = self._events.labels(event.rule_id)
                counter.inc()

    def delivery_attempt(self, channel: str, status: DeliveryStatus, latency_ms: float) -> None:
        """One attempt was made; `status` is where it left the delivery (delivered, pending, dead)."""
        outcome = _ATTEMPT_OUTCOME.get(status, status)
        children = self._attempt_children.get((channel, outcome))
        if children is None:
            children = self._attempt_children[channel, outcome] = (
                self._attempts.labels(channel, outcome),
                self._attempt_seconds.labels(channel),
            )
        children[0].inc()
        children[1].observe(latency_ms / 1000)

    def observe(self, state: BridgeState) -> None:
        """Set what the scrape-time gauges show (called by the /metrics handler before rendering)."""
        self._state.state = state


class _StateCollector:
    """Gauges (and the rule-reload counters, owned by the RuleBook) rendered from the last BridgeState."""

    def __init__(self) -> None:
        self.state: BridgeState | None = None

    def describe(self) -> Iterator[Metric]:
        return self._families(None)

    def collect(self) -> Iterator[Metric]:
        return self._families(self.state)

    def _families(self, s: BridgeState | None) -> Iterator[Metric]:
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
        if s is not None:
            for name in sorted(s.pending.keys() | s.dead.keys() | s.channels.keys()):
                pending.add_metric([name], s.pending.get(name, 0))
                dead.add_metric([name], s.dead.get(name, 0))
            age = 0.0 if s.oldest_pending_at is None else (s.now - s.oldest_pending_at).total_seconds()
            oldest.add_metric([], max(0.0, age))
            for name, p in sorted(s.providers.items()):
                up.add_metric([name], 0 if p.status == "down" else 1)
                health.add_metric([name], {v: p.status == v for v in PROVIDER_STATUSES})
                failures.add_metric([name], p.consecutive_failures)
                if p.last_success_at is not None:
                    last_ok.add_metric([name], p.last_success_at.timestamp())
            for name, status in sorted(s.channels.items()):
                channel.add_metric([name], {v: status == v for v in CHANNEL_STATUSES})
            rules.add_metric([], s.rules_loaded)
            reloads.add_metric(["success"], s.rule_reloads_ok)
            reloads.add_metric(["failure"], s.rule_reloads_failed)
            if s.rules_loaded_at is not None:
                reloaded_at.add_metric([], s.rules_loaded_at.timestamp())
            last_reload.add_metric([], 1 if s.last_reload_ok else 0)
        yield from (pending, dead, oldest, up, health, failures, last_ok, channel)
        yield from (rules, reloads, reloaded_at, last_reload)
