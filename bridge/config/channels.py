"""`[channels.NAME]`: where notifications go (webhook, email, mqtt, apprise, alertmanager)."""

from __future__ import annotations

import fnmatch
from datetime import timedelta
from typing import Annotated, Literal

from pydantic import ConfigDict, Field, SecretStr, field_validator, model_validator

from bridge.config.types import Duration, Rate, Strict
from bridge.config.windows import TimeWindow

# Digests (email channels, webhook channels when asked, rules): what a group key may name, and the
# default waits.
GroupField = Literal["rule", "source", "provider", "severity", "type", "status"]
DEFAULT_GROUP_WAIT = timedelta(seconds=30)
DEFAULT_GROUP_INTERVAL = timedelta(minutes=5)


def template_compiles(v: str | None) -> str | None:
    """A Jinja template a channel renders (a body, a link): refused at load when it does not compile."""
    from bridge.rules.templates import compile_error

    problem = None if v is None else compile_error(v, expression=False)
    if problem is not None:
        raise ValueError(problem)
    return v


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
        return template_compiles(v)

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
        return template_compiles(v)

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
