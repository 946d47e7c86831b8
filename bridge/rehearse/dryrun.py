"""Dry runs: replay states through the real pipeline (diff → rules → timers → digests), send nothing.

`wattbridge rules test` feeds an old and a new state, or a recorded timeline, to a real `Poller` and
`Digester` on a throwaway SQLite store and a `ManualClock` moved to each timestamp, and reports what
would be notified, rendered exactly as the channels would send it. Nothing goes over the network and
nothing is written outside a temporary directory that is removed afterwards.

The input format is `bridge/rehearse/timeline.py`'s; the throwaway store and the replaying
provider are `bridge/rehearse/stand_ins.py`'s.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import aiohttp
import orjson

from bridge.channels.base import Channel
from bridge.channels.email import EmailChannel
from bridge.channels.registry import build_channels
from bridge.clock import ManualClock
from bridge.config.models import Config
from bridge.config.windows import channel_windows
from bridge.model import (
    CHANNEL_PROVIDER,
    CHANNEL_SOURCE,
    Delivery,
    Event,
    ResourceKey,
    RuleState,
)
from bridge.notify.batches import Digester, digest_configs
from bridge.notify.render import deferred_end
from bridge.notify.rulebook import RuleBook
from bridge.poll.cycle import Poller
from bridge.poll.diff import diff
from bridge.poll.health import HealthBoard
from bridge.rehearse.acks import ack_step, again
from bridge.rehearse.stand_ins import RecordingStore, ReplayProvider
from bridge.rehearse.timeline import Step, input_problem
from bridge.rules.engine import RuleSet

MAX_TIMER_RUNS = 100_000  # a timeline of a year with a 1-minute repeat stays well below


@dataclass(frozen=True, slots=True, kw_only=True)
class Sent:
    """One rendered delivery: what a channel would send."""

    channel: str
    kind: str
    status: str  # pending (would be sent now), held (waits for a digest), suppressed
    text: str  # the webhook body (pretty JSON) or the email (headers + text)
    fallback: str | None = None  # the channel a dead letter of it would go on to (#14)


@dataclass(frozen=True, slots=True, kw_only=True)
class Notice:
    """One line of the dry run's story."""

    at: datetime
    what: Literal["observed", "poll", "hold", "hold-broken", "cooldown", "event", "digest", "window", "ack"]
    text: str
    rule: str | None = None
    status: str | None = None
    resource: str | None = None
    deliveries: tuple[Sent, ...] = ()


# -- the pipeline, on a throwaway store --------------------------------------------------------------


def _provider_name(config: Config, kind: str) -> str:
    return next((name for name, p in config.providers.items() if p.kind == kind), kind)


def _render(channel: Channel | None, delivery: Delivery) -> str:
    if isinstance(channel, EmailChannel):
        msg = channel.message(delivery)
        head = [f"{h}: {msg[h]}" for h in ("From", "To", "Subject")]
        return "\n".join(head) + "\n\n" + str(msg.get_content()).rstrip("\n")
    try:
        return orjson.dumps(orjson.loads(delivery.body), option=orjson.OPT_INDENT_2).decode()
    except orjson.JSONDecodeError:
        return delivery.body.decode("utf-8", "replace")


def _fmt(when: datetime) -> str:
    return when.isoformat().replace("+00:00", "Z")


def _key(key: ResourceKey) -> str:
    return f"{key.source} {key.resource_id}"


class DryRun:
    """Drives a Poller and a Digester through steps on a ManualClock; collects Notices."""

    def __init__(
        self,
        config: Config,
        rules: RuleSet,
        store: RecordingStore,
        channels: dict[str, Channel],
        clock: ManualClock,
    ) -> None:
        self.clock = clock
        self.config = config
        self.rules = rules
        self._store = store
        self._channels = channels
        self.poller = Poller(
            store=store,
            rulebook=RuleBook(config, rules),
            channels=channels,
            clock=self.clock,
            health=HealthBoard(),
            digest_groups={n: tuple(c.group_by) for n, c in digest_configs(config.channels).items()},
            windows=channel_windows(config.channels),
        )
        self.digester = Digester(
            store, digest_configs(config.channels), clock=self.clock, rules=lambda: rules
        )
        self.providers: dict[str, ReplayProvider] = {}
        self.notices: list[Notice] = []
        self._states: dict[tuple[str, ResourceKey], RuleState] = {}
        self._seen: dict[ResourceKey, dict[str, Any] | None] = {}

    def _provider(self, name: str | None, kind: str, step: Step) -> ReplayProvider:
        name = name or _provider_name(self.config, kind)
        provider = self.providers.get(name)
        if provider is None:
            configured = self.config.providers.get(name)
            if configured is not None and configured.kind != kind:
                raise input_problem(
                    step.file, step.line, f"provider {name!r} is a {configured.kind} provider, not {kind}"
                )
            provider = self.providers[name] = ReplayProvider(name=name, kind=kind, clock=self.clock)
        return provider

    async def run(self, steps: Sequence[Step]) -> list[Notice]:
        # A source whose resource starts absent is a listing: later arrivals have appeared.
        first: dict[tuple[str | None, str | None], Step] = {}
        for step in steps:
            if step.kind == "state":
                first.setdefault((step.source, step.resource_id), step)
        listed = {s.source for s in first.values() if s.state is None and s.source is not None}
        i = 0
        while i < len(steps):
            at = steps[i].at
            group = []
            while i < len(steps) and steps[i].at == at:
                group.append(steps[i])
                i += 1
            await self._until(at, steps[i - 1])
            await self._apply(group, listed)
            await self._timers()
        return self.notices

    async def _until(self, at: datetime, step: Step) -> None:
        """Run every hold, reminder and digest due before `at`, each at its own time."""
        for _ in range(MAX_TIMER_RUNS):
            due = [d for d in (self.poller.next_due(), await self.digester.next_due()) if d is not None]
            if not due or min(due) > at:
                self.clock.set(at)
                return
            self.clock.set(min(due))
            await self._timers()
        raise input_problem(
            step.file, step.line, f"over {MAX_TIMER_RUNS} timer runs before this line: a repeat too short?"
        )

    async def _timers(self) -> None:
        await self.poller.tick()
        await self.digester.tick()
        self._collect()

    async def _apply(self, group: Sequence[Step], listed: set[str]) -> None:
        polled: dict[str, ReplayProvider] = {}
        internal: list[Step] = []
        for step in group:
            if step.kind == "wait":
                continue
            if step.kind == "poll":
                provider = self._poll_target(step)
                provider.failure = None if step.ok else step.error
                polled[provider.name] = provider
                continue
            source, rid = step.source or "", step.resource_id or ""
            if source == CHANNEL_SOURCE or step.kind == "ack":  # an ack (#14): after this time's polls
                internal.append(step)
                continue
            provider = self._provider(step.provider, source.split(".", 1)[0], step)
            if source in listed:
                provider.listed.add(source)
            provider.states[(source, rid)] = step.state
            polled[provider.name] = provider
            self._observed(ResourceKey(source=source, provider=provider.name, resource_id=rid), step)
        for provider in polled.values():
            await self.poller.poll(provider, "replay")
            if provider.failure is not None:
                self.notices.append(
                    Notice(
                        at=self.clock.now(),
                        what="poll",
                        text=f"poll of {provider.name} failed: {provider.failure}",
                    )
                )
            provider.failure = None
            self._collect()
        for step in internal:
            if step.kind == "ack":
                self.notices.append(Notice(at=step.at, what="ack", text=await ack_step(self.poller, step)))
                self._collect()
                continue
            key = ResourceKey(
                source=CHANNEL_SOURCE, provider=CHANNEL_PROVIDER, resource_id=step.resource_id or ""
            )
            self._observed(key, step)
            if step.state is None:
                raise input_problem(step.file, step.line, "a bridge.channel state cannot be null")
            await self.poller.observe_internal(key, step.state)
            self._collect()

    def _poll_target(self, step: Step) -> ReplayProvider:
        if step.provider is not None:
            provider = self.providers.get(step.provider)
            if provider is None:
                configured = self.config.providers.get(step.provider)
                kind = configured.kind if configured is not None else step.provider
                provider = self._provider(step.provider, kind, step)
            return provider
        if len(self.providers) == 1:
            return next(iter(self.providers.values()))
        raise input_problem(step.file, step.line, "say which `provider` this poll is of")

    def _observed(self, key: ResourceKey, step: Step) -> None:
        before = self._seen.get(key, ...)
        self._seen[key] = step.state
        where = _key(key)
        if before is ...:
            text = f"{where}: baseline" if step.state is not None else f"{where}: absent"
        elif before is None and step.state is None:
            text = f"{where}: still absent"
        elif before is None:
            text = f"{where}: appeared"
        elif step.state is None:
            text = f"{where}: gone"
        else:
            moved = diff(before, step.state, source=key.source, keep=self.rules.keep_fields(key.source))
            shown = ", ".join(f"{c.field} {_show(c.old)} → {_show(c.new)}" for c in moved[:6])
            more = f" (+{len(moved) - 6} more)" if len(moved) > 6 else ""
            text = f"{where}: {shown}{more}" if moved else f"{where}: no meaningful change"
        self.notices.append(Notice(at=step.at, what="observed", text=text, resource=where))

    def _collect(self) -> None:
        """Turn what the pipeline committed since the last call into notices."""
        now = self.clock.now()
        results, self._store.results = self._store.results, []
        for result in results:
            fired = {(e.rule_id, e.key) for e in result.events}
            for st in result.rule_states:
                self._state_notice(st, now, fired=(st.rule_id, st.key) in fired)
            by_event: dict[str, list[Delivery]] = {}
            for d in result.deliveries:
                by_event.setdefault(d.event_id, []).append(d)
            for event in result.events:
                sent = tuple(self._sent(d) for d in by_event.get(event.id, []))
                repeat = (
                    ""
                    if event.flap is not None
                    else again(self.rules, event, by_event.get(event.id, []), self._states)
                )
                status, tail = _flap_line(event) if event.flap is not None else (event.status, "")
                head = f"{status.upper()}{repeat} {event.rule_id} [{event.severity}]"
                self.notices.append(
                    Notice(
                        at=event.occurred_at,
                        what="event",
                        text=f"{head} {_key(event.key)}{tail}",
                        rule=event.rule_id,
                        status=status,
                        resource=_key(event.key),
                        deliveries=sent,
                    )
                )
        digests, self._store.digests = self._store.digests, []
        for event, digest, members in digests:
            self.notices.append(
                Notice(
                    at=event.occurred_at,
                    what="digest",
                    text=f"DIGEST of {len(members)} to {digest.channel} ({digest.group_key})",
                    deliveries=(self._sent(digest),),
                )
            )
        settled, self._store.settled = self._store.settled, []
        for released, left_out in settled:
            parts = [f"{len(released)} deferred notification(s) sent on their own"] if released else []
            parts += (
                [f"{len(left_out)} deferred notification(s) left out (resolved meanwhile)"]
                if left_out
                else []
            )
            self.notices.append(Notice(at=now, what="window", text=f"WINDOW ENDED: {', '.join(parts)}"))

    def _state_notice(self, st: RuleState, now: datetime, *, fired: bool) -> None:
        prior = self._states.get((st.rule_id, st.key))
        self._states[(st.rule_id, st.key)] = st
        where = _key(st.key)
        rule = self.rules.by_id.get(st.rule_id)
        until = None
        if rule is not None and rule.cooldown is not None and st.last_fired_at is not None:
            until = st.last_fired_at + rule.cooldown
        cooling = until is not None and now < until and not fired

        def note(what: Literal["cooldown", "hold", "hold-broken"], text: str) -> None:
            self.notices.append(Notice(at=now, what=what, text=text, rule=st.rule_id, resource=where))

        if (
            st.phase == "idle"
            and cooling
            and until is not None
            and (prior is None or prior.phase != "firing")
        ):
            note(
                "cooldown",
                f"COOLDOWN {st.rule_id} {where}: fired recently, nothing sent until {_fmt(until)}",
            )
        elif rule is not None and rule.stale_after is not None:
            if st.phase == "pending" and prior is not None and prior.phase == "firing" and st.due_at:
                note("hold", f"REARMED {st.rule_id} {where}: stale again at {_fmt(st.due_at)} if quiet")
        elif st.phase == "pending" and (prior is None or prior.phase != "pending") and st.due_at is not None:
            note("hold", f"HOLD {st.rule_id} {where}: fires at {_fmt(st.due_at)} if it still holds")
        elif st.phase == "idle" and prior is not None and prior.phase == "pending":
            note("hold-broken", f"HOLD BROKEN {st.rule_id} {where}: stopped holding, nothing sent")

    def _sent(self, delivery: Delivery) -> Sent:
        channel = self._channels.get(delivery.channel)
        kind = channel.kind if channel is not None else "?"
        status: str = delivery.status
        end = deferred_end(delivery.group_key or "")
        if delivery.status == "held" and end is not None:
            status = f"deferred by a time window until {_fmt(end)}"
        elif delivery.status == "suppressed" and (delivery.last_error or "").startswith(FLAP_MUTED):
            status = FLAP_MUTED  # held back: its resource flaps (#14)
        elif delivery.status == "suppressed" and (delivery.last_error or "").startswith("inhibited by "):
            status = f"suppressed: {delivery.last_error}"  # muted by a firing rule (#14)
        configured = self.config.channels.get(delivery.channel)
        return Sent(
            channel=delivery.channel,
            kind=kind,
            status=status,
            text=_render(channel, delivery),
            fallback=configured.fallback if configured is not None else None,
        )


FLAP_MUTED = "suppressed: flapping"


def _flap_line(event: Event) -> tuple[str, str]:
    """A flapping notice's status word and what follows its resource on its line (#14)."""
    f = event.flap or {}
    if event.status == "firing":
        return "flapping", f": {f.get('field')} changed {f.get('changes')} times within {f.get('within')}"
    span = f"{_show(f.get('first'))} → {_show(f.get('last'))}"
    return "settled", f": {f.get('changes')} changes of {f.get('field')}, {span}; {f.get('muted')} held back"


def _show(value: Any, limit: int = 48) -> str:
    text = orjson.dumps(value).decode() if not isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


@contextlib.asynccontextmanager
async def _pipeline(config: Config, rules: RuleSet, start: datetime) -> AsyncIterator[DryRun]:
    with tempfile.TemporaryDirectory(prefix="wattbridge-dryrun-") as tmp:
        store = RecordingStore(Path(tmp) / "dryrun.db")
        await store.open()
        try:
            # Channels render only; the session is never used (nothing is sent).
            async with aiohttp.ClientSession() as session:
                clock = ManualClock(start)
                channels = build_channels(config, session=session, clock=clock)
                run = DryRun(config, rules, store, channels, clock)
                yield run
        finally:
            await store.close()


async def replay(config: Config, rules: RuleSet, steps: Sequence[Step]) -> list[Notice]:
    """What `steps` would notify under `rules`: the whole story, in order."""
    async with _pipeline(config, rules, steps[0].at) as run:
        return await run.run(steps)
