"""The admin API's wire models: what requests may say and what responses promise (pydantic, SPEC §7).

Handlers validate with these and the OpenAPI document is generated from these, nothing else.
Requests forbid unknown keys (a typo must not be silently ignored); times must carry a timezone.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal, TypeVar

import orjson
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    WithJsonSchema,
)

from bridge.config.models import parse_duration

DeliveryStatus = Literal["pending", "delivered", "dead", "suppressed", "held", "digested"]
HealthStatus = Literal["ok", "degraded", "down"]
JSONValue = Any
MIN_YEAR, MAX_YEAR = 1970, 9998


def _utc(value: datetime) -> datetime:
    try:
        utc = value.astimezone(UTC)
    except OverflowError as exc:  # e.g. 9999-12-31T23:59:59-23:59 has no UTC equivalent
        raise ValueError("time out of range") from exc
    # The store writes fixed-width times (text order = time order); years before 1000 would not be.
    if not MIN_YEAR <= utc.year <= MAX_YEAR:
        raise ValueError(f"time out of range: the year must be between {MIN_YEAR} and {MAX_YEAR}")
    return utc


def _duration(value: Any) -> timedelta:
    try:
        return parse_duration(value)
    except OverflowError as exc:
        raise ValueError(f"duration {value!r} is too long") from exc


UtcTime = Annotated[AwareDatetime, AfterValidator(_utc)]
DURATION_PATTERN = r"^\s*\d+(\.\d+)?\s*(ms|s|m|h|d)\s*$"
DurationText = Annotated[
    timedelta,
    BeforeValidator(_duration),
    WithJsonSchema({"type": "string", "pattern": DURATION_PATTERN, "examples": ["2h", "30m", "1d"]}),
]
Name = Annotated[str, Field(min_length=1, max_length=200)]
Limit = Annotated[int, Field(ge=1, le=500, description="page size")]


class Request(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Response(BaseModel):
    model_config = ConfigDict(frozen=True)


class ErrorBody(Response):
    """Every 4xx/5xx under /api/."""

    error: str = Field(description="what went wrong, short")
    detail: JSONValue = Field(default=None, description="what to fix: text, or pydantic's error list")


T = TypeVar("T")

# -- paging ----------------------------------------------------------------------------------------


def encode_cursor(at: datetime, row_id: str) -> str:
    """Opaque to clients: the keyset position (time, id) of a page's last row."""
    raw = orjson.dumps([at.astimezone(UTC).isoformat(), row_id])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(text: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        at, row_id = orjson.loads(raw)
        when = datetime.fromisoformat(at)
        if when.tzinfo is None or not isinstance(row_id, str):
            raise ValueError("bad cursor")
        return _utc(when), row_id
    except (ValueError, TypeError, binascii.Error, orjson.JSONDecodeError) as exc:
        raise ValueError("invalid cursor: pass `next_cursor` from the previous page unchanged") from exc


def split_page(
    found: Sequence[T], limit: int, position: Callable[[T], tuple[datetime, str]]
) -> tuple[Sequence[T], str | None]:
    """A page from `limit + 1` rows read: the first `limit`, and the cursor after them when the extra
    row shows there is more."""
    page = found[:limit]
    return page, encode_cursor(*position(page[-1])) if len(found) > limit else None


def _checked_cursor(text: str) -> str:
    decode_cursor(text)
    return text


Cursor = Annotated[str, Field(max_length=500), AfterValidator(_checked_cursor)]


# -- events ----------------------------------------------------------------------------------------


class EventListQuery(Request):
    rule: Name | None = Field(default=None, description="rule id")
    source: Name | None = Field(default=None, description="e.g. podero.wallbox")
    provider: Name | None = Field(default=None, description="provider instance name")
    resource_id: Name | None = None
    since: UtcTime | None = Field(default=None, description="occurred at or after (inclusive)")
    until: UtcTime | None = Field(default=None, description="occurred before (exclusive)")
    limit: Limit = 50
    cursor: Cursor | None = Field(default=None, description="`next_cursor` of the previous page")


class ChangeOut(Response):
    field: str
    old: JSONValue = None
    new: JSONValue = None


class EventOut(Response):
    id: str
    rule: str
    type: str
    status: Literal["firing", "resolved"]
    severity: str
    source: str
    provider: str
    resource_id: str
    sequence: int
    changes: list[ChangeOut]
    state: dict[str, JSONValue] | None
    occurred_at: datetime


class EventPage(Response):
    items: list[EventOut]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page; null on the last")


# -- deliveries ------------------------------------------------------------------------------------


class DeliveryListQuery(Request):
    status: DeliveryStatus | None = None
    channel: Name | None = None
    event_id: Name | None = None
    limit: Limit = 50
    cursor: Cursor | None = None


class IdPath(Request):
    id: Annotated[str, Field(min_length=1, max_length=200)]


class AttemptOut(Response):
    number: int
    at: datetime
    ok: bool
    status_code: int | None
    latency_ms: float
    error: str | None
    response_excerpt: str | None


class DeliveryOut(Response):
    id: str = Field(description="also the webhook-id / Message-ID seed: the same on every retry and replay")
    event_id: str
    channel: str
    status: DeliveryStatus
    attempts: int = Field(description="attempts since the delivery was created or last replayed")
    next_attempt_at: datetime
    created_at: datetime
    last_error: str | None


class DeliveryPage(Response):
    items: list[DeliveryOut]
    next_cursor: str | None


class DeliveryDetail(DeliveryOut):
    body: str = Field(description="the exact bytes every attempt sends (UTF-8)")
    event: EventOut | None
    attempt_log: list[AttemptOut] = Field(
        description="every attempt ever made, replays included, oldest first"
    )


class ReplayResult(Response):
    delivery: DeliveryOut


class ChannelPath(Request):
    name: Annotated[str, Field(min_length=1, max_length=200)]


class ChannelEnabled(Response):
    channel: str
    status: str = Field(description="the channel's status now: ok")
    was_disabled: bool = Field(description="false: it was not disabled, nothing changed")
    detail: str


# -- silences --------------------------------------------------------------------------------------


class SilenceListQuery(Request):
    include_expired: bool = Field(default=False, description="also list silences that have ended")


class SilenceCreate(Request):
    """At least one matcher (exact or glob); `ends_at` or `duration`; a comment saying why."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        json_schema_extra={
            "examples": [{"source": "podero.*", "duration": "2h", "comment": "Podero maintenance window"}]
        },
    )

    rule: Name | None = None
    source: Name | None = None
    resource: Name | None = Field(default=None, description="resource id, exact or glob (wb-*)")
    starts_at: UtcTime | None = Field(default=None, description="default: now")
    ends_at: UtcTime | None = None
    duration: DurationText | None = None
    comment: Annotated[str, Field(min_length=1, max_length=2000)]
    created_by: Annotated[str, Field(max_length=200)] = "api"


class SilenceOut(Response):
    id: str
    rule: str | None
    source: str | None
    resource: str | None
    starts_at: datetime
    ends_at: datetime
    comment: str
    created_by: str
    created_at: datetime
    active: bool


class SilenceList(Response):
    items: list[SilenceOut]


# -- rules -----------------------------------------------------------------------------------------


class RuleOut(Response):
    id: str
    description: str
    source: str
    event: Literal["changed", "appeared", "disappeared"]
    field: str | None
    severity: str
    type: str
    channels: list[str]
    file: str
    line: int | None
    hold_s: float | None = Field(description="`for`: how long the condition must hold before firing")
    repeat_s: float | None
    cooldown_s: float | None
    resolve: bool
    last_fired_at: datetime | None
    repeat_steps_s: list[float] = Field(
        default_factory=list, description="`repeat` intervals in turn, then every last one (#14)"
    )
    repeat_never: bool = Field(default=False, description='`repeat = "never"`: one notification per firing')
    stale_after_s: float | None = Field(default=None, description="`stale_after`: quiet this long fires")
    escalate: list[EscalationOut] = Field(
        default_factory=list, description="the escalation chain (#14): unacknowledged after_s, tell channels"
    )


class EscalationOut(Response):
    after_s: float
    channels: list[str]


class RuleList(Response):
    items: list[RuleOut]
    reloads_ok: int
    reloads_failed: int


class ReloadResult(Response):
    rules: int
    added: list[str]
    removed: list[str]


# -- providers -------------------------------------------------------------------------------------

BACKOFF_SHOWN = 50


class BackoffOut(Response):
    resource_id: str
    until: datetime
    cause: str = Field(description="e.g. 'HTTP 500', or 'HTTP 503, Retry-After 99999s capped to 300s'")
    failures: int = Field(description="failed reads in a row")


class ProviderHealthOut(Response):
    status: HealthStatus
    consecutive_failures: int
    last_error: str | None
    last_success_at: datetime | None
    last_poll_at: datetime | None
    deferred_until: datetime | None = Field(
        default=None, description="every request of the provider waits until then (a 429); null: none"
    )
    deferred_cause: str | None = None
    deferred: str | None = Field(default=None, description="'deferred until T (cause)', for people")
    retry_after_capped: bool = Field(
        default=False, description="a Retry-After asked for longer than retry_after_cap (it was cut)"
    )
    resources_backing_off: int = 0
    backing_off: list[BackoffOut] = Field(
        default_factory=list,
        description=f"resources skipped by their own back-off, soonest back first (at most {BACKOFF_SHOWN})",
    )


class ProviderOut(Response):
    name: str
    kind: str
    enabled: bool
    poll_interval_s: float
    health: ProviderHealthOut | None = Field(description="null when the provider is disabled")
    active_watches: int
    resources: dict[str, int] = Field(description="resources present now, by source")


class ProviderList(Response):
    items: list[ProviderOut]
