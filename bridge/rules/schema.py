"""The rule file's schema (SPEC §5): what users may write, validated strictly."""

from __future__ import annotations

import itertools
from datetime import timedelta
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from bridge.config.models import Duration, GroupField, parse_duration
from bridge.config.windows import TimeWindow

Source = Literal[
    "podero.wallbox",
    "podero.heat_pump",
    "podero.electric_vehicle",
    "podero.inverter",
    "podero.onboarding_session",
    "realto.guided_onboarding_session",
    "realto.command",
    "wattshift.onboarding",
    "bridge.provider",
    "bridge.channel",
]
SOURCES: tuple[str, ...] = get_args(Source)
# The resources `stale_after` watches: devices, polled for as long as they exist (a session or a
# command is watched only until it ends, so its silence afterwards means nothing).
STALE_SOURCES = ("podero.wallbox", "podero.heat_pump", "podero.electric_vehicle", "podero.inverter")

Scalar = bool | int | float | str


def _one_match_error(value: Any) -> Any:
    """One clear error for a bad `from`/`to`/`not_*` value, instead of one per member of the union
    (`from.bool: …`, `from.int: …`, `from.list[union[bool,int,float,str]]: …`)."""
    items = value if isinstance(value, list) else [value]
    if not all(isinstance(v, bool | int | float | str) for v in items):
        raise ValueError("expected a value (true/false, a number, a string) or a list of them")
    return value


RulePattern = Annotated[str, Field(pattern=r"^[a-z0-9*?\[\]][a-z0-9_.*?\[\]-]*$", max_length=100)]
Match = Annotated[Scalar | list[Scalar], BeforeValidator(_one_match_error)]


def _repeat(value: Any) -> Any:
    """`repeat`: one interval (`"1h"`), escalating intervals (`["15m", "30m", "1h"]`, then every last
    one), or `"never"` (latch: one notification per firing, no reminders)."""
    if value == "never":
        return value
    items = value if isinstance(value, list) else [value]
    if not items:
        raise ValueError('expected an interval ("1h"), a list of intervals (["15m", "1h"]) or "never"')
    steps = tuple(parse_duration(v) for v in items)
    if any(s <= timedelta(0) for s in steps):
        raise ValueError("every repeat interval must be a positive duration")
    return steps


# What `repeat` holds once validated: the intervals in order (one for a plain `repeat = "1h"`).
Repeat = Annotated[tuple[timedelta, ...] | Literal["never"], BeforeValidator(_repeat)]


class EmailTemplate(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    subject: str | None = None
    body: str | None = None  # inline text, or a path to a template file (relative to the config file)
    html: str | None = None  # optional HTML alternative: inline, or a template file path like `body`


class MqttTemplate(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    topic: str | None = None  # this rule's MQTT topic template (instead of the channel's `topic`)


class EscalationStep(BaseModel):
    """One step of an escalation chain (#14): when nobody acknowledged a firing within `after` of
    it, its notification goes to `channels` too."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    after: Duration
    channels: list[str] = Field(min_length=1)

    @field_validator("after")
    @classmethod
    def _positive(cls, v: timedelta) -> timedelta:
        if v <= timedelta(0):
            raise ValueError("must be a positive duration")
        return v


class FlapModel(BaseModel):
    """`flap = { changes = 6, within = "10m", settle = "15m" }` (#14): more than `changes` changes
    of the rule's field within `within` is flapping; it settles after `settle` without a change."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    changes: int = Field(ge=1, le=1000)
    within: Duration
    settle: Duration

    @field_validator("within", "settle")
    @classmethod
    def _positive(cls, v: timedelta) -> timedelta:
        if v <= timedelta(0):
            raise ValueError("must be a positive duration")
        return v


def _increasing(steps: list[EscalationStep]) -> list[EscalationStep]:
    for before, step in itertools.pairwise(steps):
        if step.after <= before.after:
            raise ValueError(
                "each step's `after` must be longer than the one before (they count from the firing)"
            )
    return steps


class RuleModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]*$", max_length=100)
    description: str = ""
    source: Source
    field: str | None = Field(
        default=None, pattern=r"^[A-Za-z0-9_]+(\[[^\]]+\])?(\.[A-Za-z0-9_]+(\[[^\]]+\])?)*$"
    )
    event: Literal["changed", "appeared", "disappeared"] = "changed"
    from_: Match | None = Field(default=None, alias="from")
    to: Match | None = None
    not_from: Match | None = None
    not_to: Match | None = None
    changed: bool = False
    above: float | None = None
    below: float | None = None
    hysteresis: float | None = Field(default=None, gt=0)
    if_: str | None = Field(default=None, alias="if")
    for_: Duration | None = Field(default=None, alias="for")
    repeat: Repeat | None = None
    repeat_max: int | None = Field(default=None, ge=1)
    cooldown: Duration | None = None
    # Fires once when the resource goes quiet this long: its `field` timestamp (or, without a
    # field, its last successful read) is older than this (#14).
    stale_after: Duration | None = None
    resolve: bool = False
    severity: Literal["info", "warning", "critical"] = "info"
    type: str | None = Field(default=None, max_length=200)
    channels: list[str] = Field(min_length=1)
    email: EmailTemplate | None = None
    mqtt: MqttTemplate | None = None
    # Digest of this rule's emails (overrides its email channels' grouping for its notifications).
    group_by: list[GroupField] | None = None
    group_wait: Duration | None = None
    group_interval: Duration | None = None
    # Time windows (#14): a notification muted by one is deferred; one digest when the window ends.
    mute: list[TimeWindow] = Field(default_factory=list)
    active: list[TimeWindow] = Field(default_factory=list)
    # Inhibition (#14): while this rule fires on a resource, these rules (ids or globs) are muted on
    # the same resource, or on every resource of the same provider.
    inhibits: list[Annotated[str, Field(pattern=r"^[a-z0-9*?\[\]][a-z0-9_.*?\[\]-]*$", max_length=100)]] = (
        Field(default_factory=list)
    )
    inhibit_scope: Literal["resource", "provider"] | None = None
    # Escalation chain (#14): unacknowledged after each step's `after`, its channels are notified.
    escalate: Annotated[list[EscalationStep], AfterValidator(_increasing)] = Field(default_factory=list)
    # Flap detection (#14): a field that changes too often is one notice, not a storm.
    flap: FlapModel | None = None

    @field_validator("for_", "cooldown", "group_interval", "stale_after")
    @classmethod
    def _positive(cls, v: timedelta | None) -> timedelta | None:
        if v is not None and v <= timedelta(0):
            raise ValueError("must be a positive duration")
        return v

    @model_validator(mode="after")
    def _coherent(self) -> RuleModel:
        if self.stale_after is not None:
            if self.flap is not None:
                raise ValueError("`flap` watches a field's changes; a `stale_after` rule fires on silence")
            return self._stale_coherent()
        if self.flap is not None and (self.field is None or self.event != "changed"):
            raise ValueError(
                '`flap` counts the changes of the rule\'s `field`: it needs a `field` (and event = "changed")'
            )
        conditions = [self.from_, self.to, self.not_from, self.not_to, self.above, self.below]
        if self.event == "changed" and self.field is None and self.if_ is None and not self.changed:
            raise ValueError(
                "a `changed` rule needs a `field` (or an `if` expression) to say what it watches"
            )
        if self.field is None and any(c is not None for c in conditions):
            raise ValueError("from / to / not_from / not_to / above / below need a `field`")
        if self.above is not None and self.below is not None:
            raise ValueError("use either `above` or `below`, not both")
        if self.hysteresis is not None and self.above is None and self.below is None:
            raise ValueError("`hysteresis` needs `above` or `below`")
        if self.group_by is None and (self.group_wait is not None or self.group_interval is not None):
            raise ValueError('`group_wait` / `group_interval` need `group_by` (e.g. group_by = ["rule"])')
        if self.repeat_max is not None and (self.repeat is None or self.repeat == "never"):
            raise ValueError("`repeat_max` needs `repeat` intervals")
        if self.inhibit_scope is not None and not self.inhibits:
            raise ValueError("`inhibit_scope` needs `inhibits` (the rule ids this rule mutes)")
        latches = self.for_ or self.repeat or self.resolve or self.hysteresis
        if self.escalate and not latches:
            raise ValueError(
                "`escalate` goes on only while the firing lasts: the rule must know when it stops "
                "(add `resolve = true`, or `for` / `repeat`)"
            )
        if self.inhibits and not latches:
            raise ValueError(
                "`inhibits` mutes others only while this rule fires: it must know when it stops "
                "(add `resolve = true`, or `for` / `repeat`)"
            )
        held = [k for k, v in (("for", self.for_), ("repeat", self.repeat)) if v is not None]
        held += ["resolve"] if self.resolve else []
        if held:
            if self.event != "changed":
                raise ValueError(f"{' / '.join(held)}: only `changed` rules hold a condition over time")
            level = [self.to, self.not_to, self.above, self.below, self.if_]
            if all(c is None for c in level):
                raise ValueError(
                    f"{' / '.join(held)} need a condition on the current state to hold: "
                    "`to`, `not_to`, `above`, `below` or `if`"
                )
        return self

    def _stale_coherent(self) -> RuleModel:
        if self.source not in STALE_SOURCES:
            raise ValueError(f"`stale_after` watches devices: {', '.join(STALE_SOURCES)}")
        given = {
            "event": self.event != "changed",
            "from": self.from_ is not None,
            "to": self.to is not None,
            "not_from": self.not_from is not None,
            "not_to": self.not_to is not None,
            "changed": self.changed,
            "above": self.above is not None,
            "below": self.below is not None,
            "hysteresis": self.hysteresis is not None,
            "if": self.if_ is not None,
            "for": self.for_ is not None,
        }
        extra = [k for k, v in given.items() if v]
        if extra:
            raise ValueError(
                f"`stale_after` fires when a device goes quiet; it takes no {' / '.join(extra)} "
                "(only `field`, a timestamp, or none: the last successful read)"
            )
        if self.repeat_max is not None and not isinstance(self.repeat, tuple):
            raise ValueError("`repeat_max` needs `repeat` intervals")
        return self


class RuleFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    rule: list[RuleModel] = Field(default_factory=list)


def as_tuple(value: Any) -> tuple[Any, ...] | None:
    """A `from`/`to` value as the tuple of accepted values (a list means any of)."""
    if value is None:
        return None
    return tuple(value) if isinstance(value, list) else (value,)
