"""The webhook envelope (SPEC §6) as pydantic models, specialised per source and per event type.

These models are the contract: the JSON Schemas served at `/api/schemas` and in the OpenAPI
document are generated from them, never written by hand. `channels.webhook.envelope()` still builds
the dict directly (it runs once per delivery, and a model instance per body would cost the hot path);
tests validate the bodies a real receiver got against the generated schemas, so the two cannot drift.
A state model is the provider's own payload model (the same one a poll validates with).
"""

from __future__ import annotations

import functools
import operator
import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

from bridge.poll.health import HealthStatus
from bridge.rules.flap import FLAPPING_TYPE as FLAPPING

Severity = Literal["info", "warning", "critical"]
DIGEST_TYPE = "wattbridge.digest"
TEST_TYPE = "wattbridge.test"
FLAPPING_TYPE = FLAPPING  # a rule's flapping notice (#14, bridge/rules/flap.py)


class Contract(BaseModel):
    """A payload we emit: every key is documented, so an extra key is a contract break."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class EnvelopeChange(Contract):
    """One changed field, by dotted path (`device_model.model`, `actions[reauthenticate]`)."""

    field: str
    old: Any = Field(description="the value before (null when absent)")
    new: Any = Field(description="the value after (null when absent)")


class EventLinks(Contract):
    """Signed acknowledge and snooze links of a repeating or escalating rule's firing (#14): each
    opens a confirmation page on the bridge (`[server] public_url`); the action is its button."""

    acknowledge: str = Field(description="stops reminders and escalation until the firing resolves")
    snooze: dict[str, str] = Field(description="length (`1h`, `4h`, `1d`) → link pausing them that long")
    expires_at: datetime = Field(description="the links stop working then (`[server] link_ttl`)")


class EventData(Contract):
    """`data` of an event envelope; `state` is the resource's current state (null once it is gone)."""

    event_id: str
    rule: str
    status: Literal["firing", "resolved"]
    severity: Severity
    source: str
    provider: str = Field(description="the provider instance name from the config")
    resource_id: str
    sequence: int = Field(ge=0, description="increases per resource: order events by it")
    changes: list[EnvelopeChange]
    state: dict[str, Any] | None
    links: EventLinks | None = Field(
        default=None, description="present on firings of rules that repeat or escalate (#14)"
    )
    escalation: int | None = Field(
        default=None, ge=1, description="present on an escalation step's notification: its number (#14)"
    )


class Envelope(Contract):
    """Any event envelope (a digest lists these)."""

    type: str
    timestamp: datetime
    data: EventData


class FlapSummary(Contract):
    """`data.flap` of a `wattbridge.flapping` notice (#14): status `firing` when the resource starts
    flapping, `resolved` when it has settled. `changes` of the envelope is `field`: first → last."""

    field: str = Field(description="the rule's field whose changes are counted")
    changes: int = Field(
        ge=1, description="changes since the flapping began (those that started it included)"
    )
    threshold: int = Field(
        ge=1, description="the rule's `flap.changes`: more than this within `within` is flapping"
    )
    within: str = Field(description="the rule's `flap.within`, e.g. '10m'")
    settle: str = Field(description="the rule's `flap.settle`: settled after this long without a change")
    since: datetime = Field(description="the first change of the spell")
    last_change_at: datetime
    first: Any = Field(description="the field's value before the spell")
    last: Any = Field(description="the field's value now")
    muted: int = Field(ge=0, description="the rule's notifications held back so far (kept as suppressed)")
    settled_at: datetime | None = Field(description="when it settled; null on the flapping notice")
    condition_now: bool | None = Field(description="whether the rule's condition holds of the current state")


class FlappingData(EventData):
    """`data` of a `wattbridge.flapping` notice: an event of the flapping rule, with its summary."""

    flap: FlapSummary


class ProviderState(Contract):
    """The state of a `bridge.provider` resource (`ProviderHealth.as_state()`)."""

    provider: str
    status: HealthStatus
    consecutive_failures: int = Field(ge=0)
    last_error: str | None
    last_success_at: datetime | None
    deferred_until: datetime | None = Field(
        description="every request of the provider waits until then (a 429); null: none (#18)"
    )
    deferred_cause: str | None = Field(description="why, e.g. 'HTTP 429, Retry-After 30s'")
    resources_backing_off: int = Field(ge=0, description="resources skipped by their own back-off")
    retry_after_capped: bool = Field(
        description="a Retry-After asked for longer than retry_after_cap (true once per episode)"
    )


class ChannelState(Contract):
    """The state of a `bridge.channel` resource (`DeliveryWorker.channel_state()`)."""

    channel: str
    status: Literal["ok", "paused", "probing", "disabled"]
    consecutive_failures: int = Field(ge=0)
    last_error: str | None
    paused_until: datetime | None
    fallback_to: str | None = Field(
        default=None,
        description="the channel its dead letters go to since its last successful send (#14); null: none",
    )


class TestState(Contract):
    """The state `wattbridge channels test` sends."""

    __test__ = False  # not a pytest class, despite the name
    channel: str
    message: str


class DigestData(Contract):
    """`data` of a `wattbridge.digest` webhook: what fired together, in firing order."""

    group: dict[str, str] = Field(description="the group_by fields and their values")
    count: int = Field(ge=1)
    events: list[Envelope]


def _state_models() -> dict[str, type[BaseModel]]:
    from bridge.providers import podero, realto_models, wattshift

    return {
        "podero.wallbox": podero.WallboxDetail,
        podero.SOURCE_HEAT_PUMP: podero.HeatPumpDetail,
        podero.SOURCE_ELECTRIC_VEHICLE: podero.ElectricVehicleDetail,
        podero.SOURCE_INVERTER: podero.InverterDetail,
        "podero.onboarding_session": podero.OnboardingSession,
        "realto.guided_onboarding_session": realto_models.GuidedOnboardingSession,
        "realto.command": realto_models.Command,
        "wattshift.onboarding": wattshift.OnboardingStatus,
        "bridge.provider": ProviderState,
        "bridge.channel": ChannelState,
    }


@functools.cache
def state_model(source: str) -> type[BaseModel]:
    """The model of a source's state; KeyError for an unknown source."""
    return _state_models()[source]


def _camel(text: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in re.split(r"[^A-Za-z0-9]+", text) if part)


@functools.cache
def data_model(
    source: str, *, state: type[BaseModel] | None = None, base: type[EventData] = EventData
) -> type[EventData]:
    """`data` of an event from `source`: the source is a constant and the state is its model."""
    st = state or state_model(source)
    # Types made at run time are values to mypy: they go in as Any.
    source_type: Any = Literal[source]
    state_type: Any = st | None
    prefix = "" if base is EventData else base.__name__.removesuffix("Data")
    return create_model(
        f"{prefix}{_camel(source)}{'' if state is None else _camel(st.__name__)}EventData",
        __base__=base,
        __doc__=f"`data` of an event from {source}",
        source=(source_type, ...),
        state=(state_type, ...),
    )


def schema_name(event_type: str) -> str:
    """A model (and schema component) name for an event type: `wallbox.action_needed` →
    `WallboxActionNeededEvent` (pydantic cuts a dotted name at its last dot)."""
    return _camel(event_type) + "Event"


@functools.cache
def envelope_model(event_type: str, sources: tuple[str, ...]) -> type[BaseModel]:
    """The envelope of `event_type` as sent for rules on `sources` (one `data` variant per source)."""
    if event_type == DIGEST_TYPE:
        data: Any = DigestData
    elif event_type == TEST_TYPE:
        data = data_model("bridge.channel", state=TestState)
    else:
        base = FlappingData if event_type == FLAPPING_TYPE else EventData
        variants = tuple(data_model(s, base=base) for s in sources)
        if not variants:
            raise ValueError(f"event type {event_type!r}: no source emits it")
        # A union built at run time (`A | B | …`), keyed by `data.source` in the schema.
        union: Any = functools.reduce(operator.or_, variants)
        data = variants[0] if len(variants) == 1 else Annotated[union, Field(discriminator="source")]
    type_type: Any = Literal[event_type]
    return create_model(
        schema_name(event_type),
        __base__=Contract,
        __doc__=f"The webhook body of a {event_type!r} event (SPEC §6).",
        type=(type_type, ...),
        timestamp=(datetime, Field(description="when it happened, RFC 3339 in UTC")),
        data=(data, ...),
    )
