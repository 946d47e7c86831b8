"""The configuration file's schema (SPEC §3): strict pydantic models, durations, secrets.

Loading (TOML → env expansion → validation with FILE:LINE errors) lives in `config_loader.py`.
"""

from __future__ import annotations

import fnmatch
import os
import re
import socket
from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    IPvAnyNetwork,
    SecretStr,
    field_validator,
    model_validator,
)

from bridge.config.windows import TimeWindow

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(value: Any) -> timedelta:
    """`"500ms"`, `"30s"`, `"5m"`, `"2h"`, `"1d"` (or a number of seconds) → timedelta."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, bool):
        raise ValueError("expected a duration like '30s', '5m', '2h'")
    if isinstance(value, int | float):
        return timedelta(seconds=float(value))
    if isinstance(value, str):
        m = _DURATION.match(value)
        if m:
            return timedelta(seconds=float(m.group(1)) * _UNIT_SECONDS[m.group(2)])
    raise ValueError(
        f"invalid duration {value!r}: use a number with a unit, like '500ms', '30s', '5m', '2h', '1d'"
    )


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]


class Strict(BaseModel):
    """What users write: unknown keys are errors (a typo must not be silently ignored)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class StoreConfig(Strict):
    url: str = "sqlite:///wattbridge.db"
    # FULL survives power loss, NORMAL (WAL) only process crashes; see README "Operations: delivery".
    synchronous: Literal["FULL", "NORMAL"] = "FULL"

    @field_validator("url")
    @classmethod
    def _known_store(cls, v: str) -> str:
        from bridge.store.factory import unsupported_reason

        reason = unsupported_reason(v)
        if reason is not None:
            raise ValueError(reason)
        return v


def default_replica_id() -> str:
    """`HOST-PID`: unique per process on a host, and says where to look."""
    return f"{socket.gethostname()}-{os.getpid()}"


class ClusterConfig(Strict):
    """Several `wattbridge run` on one PostgreSQL database (README "Running several replicas")."""

    replica_id: str = Field(default_factory=default_replica_id, min_length=1, max_length=200)
    # How long a replica's lease on a watch group outlives its last heartbeat: a dead replica's
    # groups are polled by another within one lease period (plus that group's interval).
    lease_period: Duration = timedelta(seconds=30)

    @field_validator("lease_period")
    @classmethod
    def _lease_bounds(cls, v: timedelta) -> timedelta:
        if not timedelta(seconds=3) <= v <= timedelta(hours=1):
            raise ValueError("must be between 3s (heartbeats need room) and 1h (takeover waits that long)")
        return v


class ServerConfig(Strict):
    listen: str = "127.0.0.1:8080"
    admin_token: SecretStr | None = None
    drain_timeout: Duration = timedelta(seconds=10)
    # Sends in flight at once, every channel together (bench/README.md "Where it stands": 16 kept
    # the worker waiting on round trips, 3,500/s; 64 reaches ~5,000/s at 25 % less CPU each).
    delivery_concurrency: int = Field(default=64, ge=1, le=1024)
    # The HTTP surface's limits (README "Exposure and limits"). aiohttp starts the keep-alive timer
    # when a connection opens and only a complete request stops it, so `keepalive_timeout` also
    # bounds a client that trickles its request headers (slowloris); `request_timeout` bounds one
    # that trickles its body, or a handler stuck on the store.
    max_body_size: int = Field(default=1024 * 1024, ge=1024, le=64 * 1024 * 1024)
    max_header_size: int = Field(default=8190, ge=1024, le=65536)
    max_headers: int = Field(default=64, ge=8, le=1024)
    keepalive_timeout: Duration = timedelta(seconds=15)
    request_timeout: Duration = timedelta(seconds=30)

    @field_validator("keepalive_timeout", "request_timeout")
    @classmethod
    def _positive(cls, v: timedelta) -> timedelta:
        if v <= timedelta(0):
            raise ValueError("must be longer than 0s (an unbounded wait is what this limit prevents)")
        return v

    @field_validator("listen")
    @classmethod
    def _host_port(cls, v: str) -> str:
        host, sep, port = v.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ValueError(f"expected HOST:PORT, got {v!r}")
        return v

    @property
    def host(self) -> str:
        return self.listen.rpartition(":")[0].strip("[]")

    @property
    def port(self) -> int:
        return int(self.listen.rpartition(":")[2])


class RulesConfig(Strict):
    paths: list[str] = Field(default_factory=lambda: ["rules/*.toml"])


class WallboxWatch(Strict):
    user_id: str
    wallbox_id: str


DEFAULT_RETRY_AFTER_CAP = timedelta(minutes=5)  # the floor of a provider's default retry_after_cap


class HeatPumpWatch(Strict):
    user_id: str
    heat_pump_id: str


class ElectricVehicleWatch(Strict):
    user_id: str
    electric_vehicle_id: str


class InverterWatch(Strict):
    user_id: str
    inverter_id: str


class ProviderBase(Strict):
    base_url: str
    poll_interval: Duration = timedelta(seconds=60)
    max_requests_per_second: float = Field(default=5.0, gt=0)
    max_concurrency: int = Field(default=4, ge=1)
    timeout: Duration = timedelta(seconds=10)
    max_body_bytes: int = Field(default=2 * 1024 * 1024, ge=1024)
    enabled: bool = True
    # Processes that fetch, check and digest this provider's by-id polls (0: in the main process).
    # The rate limit and concurrency are shared out among them; see README "How far one process goes".
    fetch_workers: int = Field(default=0, ge=0, le=32)
    # The longest back-off: a Retry-After (429/503) is honoured up to this, and a failing resource's
    # own exponential back-off stops growing here. Unset: max(5 min, 3 * poll_interval) (#18).
    retry_after_cap: Duration | None = None

    @field_validator("retry_after_cap")
    @classmethod
    def _positive_cap(cls, v: timedelta | None) -> timedelta | None:
        if v is not None and v <= timedelta(0):
            raise ValueError("retry_after_cap must be longer than 0s")
        return v

    @property
    def backoff_cap(self) -> timedelta:
        """`retry_after_cap`, or its documented default."""
        if self.retry_after_cap is not None:
            return self.retry_after_cap
        return max(DEFAULT_RETRY_AFTER_CAP, 3 * self.poll_interval)


class PoderoConfig(ProviderBase):
    kind: Literal["podero"]
    base_url: str = "https://app.podero.com"
    client_id: SecretStr | None = None
    client_secret: SecretStr | None = None
    username: SecretStr | None = None
    password: SecretStr | None = None
    token_url: str | None = None
    org_id: str
    discover: bool = False
    onboarding_sessions: list[str] = Field(default_factory=list)
    wallboxes: list[WallboxWatch] = Field(default_factory=list)
    heat_pumps: list[HeatPumpWatch] = Field(default_factory=list)
    electric_vehicles: list[ElectricVehicleWatch] = Field(default_factory=list)
    inverters: list[InverterWatch] = Field(default_factory=list)
    # Finished onboarding sessions start a watch on the device they created (kind from `skip_to`).
    watch_onboarded_devices: bool = True


class RealtoCommandWatch(Strict):
    entity_id: str
    command_id: str


class RealtoConfig(ProviderBase):
    kind: Literal["realto"]
    base_url: str = "https://platform.realto.io/api"
    client_id: SecretStr
    client_secret: SecretStr
    page_size: int = Field(default=25, ge=1, le=100)
    poll_interval: Duration = timedelta(minutes=5)
    commands: list[RealtoCommandWatch] = Field(default_factory=list)  # watched by id until terminal
    # Entities whose commands are listed over a sliding window (GET …/commands?start=now-window).
    command_entities: list[str] = Field(default_factory=list)
    command_window: Duration = timedelta(hours=24)
    guided_sessions: list[str] = Field(default_factory=list)  # watched by id until terminal
    list_guided_sessions: bool = True  # the complete paged listing of every guided session


class WattShiftConfig(ProviderBase):
    kind: Literal["wattshift"]
    base_url: str = "https://api.wattshift.com"
    api_key: SecretStr
    home_ids: list[str] = Field(default_factory=list)
    discover: bool = False
    poll_interval: Duration = timedelta(minutes=2)


ProviderConfig = Annotated[PoderoConfig | RealtoConfig | WattShiftConfig, Field(discriminator="kind")]


# Digests (email channels, webhook channels when asked, rules): what a group key may name, and the
# default waits.
GroupField = Literal["rule", "source", "provider", "severity", "type", "status"]
DEFAULT_GROUP_WAIT = timedelta(seconds=30)
DEFAULT_GROUP_INTERVAL = timedelta(minutes=5)


_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*/\s*(s|m|h)\s*$")
_RATE_SECONDS = {"s": 1.0, "m": 60.0, "h": 3600.0}


def parse_rate(value: Any) -> float:
    """`"10/s"`, `"30/m"`, `"100/h"` → sends per second."""
    m = _RATE.match(value) if isinstance(value, str) else None
    if m is None or float(m.group(1)) <= 0:
        raise ValueError(
            f"invalid rate {value!r}: use a positive count per unit, like '10/s', '30/m', '100/h'"
        )
    return float(m.group(1)) / _RATE_SECONDS[m.group(2)]


Rate = Annotated[float, BeforeValidator(parse_rate)]


class ChannelBase(Strict):
    # Time windows (#14): notifications muted by a window are deferred to its end (one digest).
    mute: list[TimeWindow] = Field(default_factory=list)
    active: list[TimeWindow] = Field(default_factory=list)
    # Waits before each attempt (the first is normally "0s"); after the last, the delivery is dead.
    retry: list[Duration] | None = None
    retry_after_cap: Duration = timedelta(hours=1)  # a receiver's Retry-After is honoured up to this
    # At most this many sends ("10/s", "30/m"), with bursts of rate_limit_burst; the rest wait in the
    # outbox, due again when their turn comes (no attempt spent). Unset: as fast as the worker goes.
    rate_limit: Rate | None = None
    rate_limit_burst: int = Field(default=1, ge=1, le=10_000)
    # Only events whose type matches one of these globs ("wallbox.*") get a delivery on this channel;
    # unset: every event of the rules that name it.
    event_types: list[str] | None = None
    # Another channel that gets this channel's dead letters (and what a 410 disabled it for), #14.
    fallback: str | None = None

    @field_validator("event_types")
    @classmethod
    def _some_types(cls, v: list[str] | None) -> list[str] | None:
        if v is not None and (not v or any(not t.strip() for t in v)):
            raise ValueError("list at least one event type or glob, e.g. ['wallbox.*']")
        return v

    def accepts(self, event_type: str) -> bool:
        """Whether an event of this type gets a delivery on this channel."""
        return self.event_types is None or any(fnmatch.fnmatchcase(event_type, t) for t in self.event_types)

    @field_validator("retry")
    @classmethod
    def _schedule(cls, v: list[timedelta] | None) -> list[timedelta] | None:
        if v is not None and not v:
            raise ValueError("a retry schedule needs at least one entry (e.g. ['0s'])")
        return v


class WebhookChannelConfig(ChannelBase):
    kind: Literal["webhook"]
    url: str
    secret: SecretStr  # whsec_… (Standard Webhooks)
    # Rotation: the secret being replaced. Both sign each attempt (both signatures in
    # webhook-signature) until it is removed, so receivers can switch secrets in their own time.
    previous_secret: SecretStr | None = None
    timeout: Duration = timedelta(seconds=10)
    headers: dict[str, str] = Field(default_factory=dict)
    # Replaces the SPEC §6 envelope (Slack, Teams, …): a Jinja2 template over `type`, `timestamp`,
    # `data` (the envelope's data), `old` and `new`; `| tojson` quotes values safely.
    body_template: str | None = None
    content_type: str = "application/json"
    # Webhooks are one per event unless asked: with group_by, what fires together is one
    # `wattbridge.digest` webhook listing the events' envelopes (same keys as an email channel).
    group_by: list[GroupField] = Field(default_factory=list)
    group_wait: Duration = DEFAULT_GROUP_WAIT
    group_interval: Duration = DEFAULT_GROUP_INTERVAL

    @model_validator(mode="after")
    def _digest_needs_the_envelope(self) -> WebhookChannelConfig:
        if self.group_by and self.body_template is not None:
            raise ValueError(
                "group_by: a webhook digest is sent as the wattbridge.digest envelope, "
                "so it cannot be combined with body_template"
            )
        return self

    @field_validator("body_template")
    @classmethod
    def _template_compiles(cls, v: str | None) -> str | None:
        from bridge.rules.templates import compile_error

        problem = None if v is None else compile_error(v, expression=False)
        if problem is not None:
            raise ValueError(problem)
        return v

    @field_validator("secret", "previous_secret")
    @classmethod
    def _signing_secret(cls, v: SecretStr | None) -> SecretStr | None:
        from standardwebhooks import Webhook

        try:
            if v is not None:
                Webhook(v.get_secret_value())  # the library's own check; its message never has the value
        except Exception as exc:  # binascii.Error, EmptyWebhookSecretError
            raise ValueError(
                f"not a Standard Webhooks secret: expected whsec_ followed by base64 ({type(exc).__name__})"
            ) from None
        return v

    @field_validator("url")
    @classmethod
    def _http_url(cls, v: str) -> str:
        if not v.startswith(("http://", "https://")):
            raise ValueError(f"expected an http(s) URL, got {v!r}")
        return v


class EmailChannelConfig(ChannelBase):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    kind: Literal["email"]
    to: list[str] = Field(min_length=1)
    from_: str = Field(alias="from")
    subject_prefix: str = "[wattbridge] "
    # Digest: what fires together (same values of these fields) within group_wait goes out as one
    # email; later ones wait group_interval after the previous digest of that group.
    group_by: list[GroupField] = Field(default_factory=list)
    group_wait: Duration = DEFAULT_GROUP_WAIT
    group_interval: Duration = DEFAULT_GROUP_INTERVAL


# --- Channels where people and systems already are (issue #15): MQTT, Apprise, Alertmanager ---

DEFAULT_MQTT_TOPIC = "wattbridge/{{ event.source }}/{{ event.resource_id }}/{{ event.rule }}"


class MqttChannelConfig(ChannelBase):
    """One MQTT broker. The topic is a template over the event (a rule's `[rule.mqtt] topic` wins)."""

    kind: Literal["mqtt"]
    host: str
    port: int = Field(default=1883, ge=1, le=65535)
    topic: str = DEFAULT_MQTT_TOPIC
    qos: Literal[0, 1, 2] = 1
    # Retained: the broker keeps the last message per topic for new subscribers (Home Assistant
    # dashboards show the current state at once instead of waiting for the next change).
    retain: bool = False
    username: str | None = None
    password: SecretStr | None = None
    tls: bool = False
    ca_file: str | None = None  # PEM bundle to trust instead of the system's (a private broker's CA)
    cert_file: str | None = None  # client certificate (mutual TLS), with key_file
    key_file: str | None = None
    client_id: str | None = None
    keepalive: int = Field(default=60, ge=5)
    timeout: Duration = timedelta(seconds=10)

    @field_validator("topic")
    @classmethod
    def _topic_compiles(cls, v: str) -> str:
        from bridge.rules.templates import compile_error

        problem = compile_error(v, expression=False)
        if problem is not None:
            raise ValueError(problem)
        return v

    @model_validator(mode="after")
    def _tls_coherent(self) -> MqttChannelConfig:
        if (self.ca_file or self.cert_file or self.key_file) and not self.tls:
            raise ValueError("ca_file / cert_file / key_file need tls = true")
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together (mutual TLS)")
        if self.password is not None and self.username is None:
            raise ValueError("password needs a username")
        return self


class AppriseChannelConfig(ChannelBase):
    """One Apprise service URL (`tgram://…`, `slack://…`, `ntfy://…`): one URL per channel, so each
    service is retried and dead-lettered on its own. The URL usually holds a token: it is a secret."""

    kind: Literal["apprise"]
    url: SecretStr
    timeout: Duration = timedelta(seconds=30)

    @field_validator("url")
    @classmethod
    def _apprise_url(cls, v: SecretStr) -> SecretStr:
        from bridge.channels.apprise import url_problem

        problem = url_problem(v.get_secret_value())
        if problem is not None:
            raise ValueError(problem)
        return v


class AlertmanagerChannelConfig(ChannelBase):
    """An existing Prometheus Alertmanager: events become alerts on its v2 API (/api/v2/alerts)."""

    kind: Literal["alertmanager"]
    url: str  # the Alertmanager base URL, e.g. http://alertmanager:9093
    # A firing alert that is not resolved by its rule ends after this (Alertmanager needs an end).
    resolve_timeout: Duration = timedelta(hours=24)
    # Where an alert links back to (its generatorURL): a template over the event; by default the
    # bridge's status page at [server] listen.
    generator_url: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)  # added to every alert (e.g. team = "ops")
    username: str | None = None  # basic auth, when Alertmanager sits behind a proxy that asks
    password: SecretStr | None = None
    bearer_token: SecretStr | None = None
    timeout: Duration = timedelta(seconds=10)

    @field_validator("url")
    @classmethod
    def _http_url(cls, v: str) -> str:
        if not v.startswith(("http://", "https://")):
            raise ValueError(f"expected an http(s) URL, got {v!r}")
        return v.rstrip("/")

    @field_validator("generator_url")
    @classmethod
    def _template_compiles(cls, v: str | None) -> str | None:
        from bridge.rules.templates import compile_error

        problem = None if v is None else compile_error(v, expression=False)
        if problem is not None:
            raise ValueError(problem)
        return v

    @model_validator(mode="after")
    def _one_auth(self) -> AlertmanagerChannelConfig:
        if self.bearer_token is not None and self.username is not None:
            raise ValueError("use either username/password or bearer_token, not both")
        if (self.username is None) != (self.password is None):
            raise ValueError("username and password go together")
        return self


ChannelConfig = Annotated[
    WebhookChannelConfig
    | EmailChannelConfig
    | MqttChannelConfig
    | AppriseChannelConfig
    | AlertmanagerChannelConfig,
    Field(discriminator="kind"),
]


class SmtpConfig(Strict):
    host: str = "localhost"
    port: int = 587
    starttls: bool = False
    use_tls: bool = False
    ca_file: str | None = None  # PEM bundle to trust instead of the system's (a private relay's CA)
    username: str | None = None
    password: SecretStr | None = None
    timeout: Duration = timedelta(seconds=30)


class OutboundConfig(Strict):
    """Where channels may send (issue #15). Webhook targets in loopback, private, link-local,
    shared (100.64/10), multicast, reserved or metadata ranges are refused, at load for literal IPs
    and after DNS resolution at send time, unless a network listed here contains the address."""

    allow: list[IPvAnyNetwork] = Field(default_factory=list)


class RetentionConfig(Strict):
    """How long history is kept (#14): older rows are deleted in small batches, between polls.
    Deliveries still owed (pending, held) and their events are never deleted."""

    events: Duration = timedelta(days=30)
    deliveries: Duration = timedelta(days=30)  # finished deliveries and their attempts
    traces: Duration = timedelta(days=7)  # "why (not)?" evaluations (`wattbridge explain`)
    batch: int = Field(default=1000, ge=1, le=100_000)  # rows per delete (one short transaction)
    every: Duration = timedelta(minutes=10)

    @field_validator("events", "deliveries", "traces", "every")
    @classmethod
    def _positive(cls, v: timedelta) -> timedelta:
        if v <= timedelta(0):
            raise ValueError("must be a positive duration")
        return v


class Config(Strict):
    store: StoreConfig = Field(default_factory=StoreConfig)
    server: ServerConfig = Field(default_factory=ServerConfig)
    rules: RulesConfig = Field(default_factory=RulesConfig)
    providers: dict[str, ProviderConfig] = Field(default_factory=dict)
    channels: dict[str, ChannelConfig] = Field(default_factory=dict)
    smtp: SmtpConfig = Field(default_factory=SmtpConfig)
    outbound: OutboundConfig = Field(default_factory=OutboundConfig)
    retention: RetentionConfig = Field(default_factory=RetentionConfig)
    cluster: ClusterConfig = Field(default_factory=ClusterConfig)
    # Where relative paths (rule globs, template files) resolve from: the config file's folder.
    base_dir: str = Field(default=".", exclude=True)

    def secret_values(self) -> list[str]:
        """Every secret the file holds, for the log scrubber (never printed)."""
        values: list[str] = []
        for model in [self.server, self.smtp, *self.providers.values(), *self.channels.values()]:
            for name in type(model).model_fields:
                value = getattr(model, name)
                if isinstance(value, SecretStr):
                    values.append(value.get_secret_value())
        return values
