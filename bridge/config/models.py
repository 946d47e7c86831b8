"""The configuration file's schema (SPEC §3): strict pydantic models, durations and secrets.

The provider and channel sections live in `providers.py` and `channels.py`; this module holds the
rest of the file and re-exports every model, so `bridge.config.models` stays the one import.
Loading (TOML → env expansion → validation with FILE:LINE errors) lives in `loader.py`.
"""

from __future__ import annotations

import os
import socket
from datetime import timedelta
from typing import Literal

from pydantic import Field, IPvAnyNetwork, SecretStr, field_validator

from bridge.config.channels import *  # noqa: F403  (re-exported: the one import for config models)
from bridge.config.channels import ChannelConfig
from bridge.config.providers import *  # noqa: F403
from bridge.config.providers import ProviderConfig
from bridge.config.types import *  # noqa: F403
from bridge.config.types import Duration, Strict

MAX_GROUP_COMMIT_WINDOW = timedelta(milliseconds=100)


class StoreConfig(Strict):
    url: str = "sqlite:///wattbridge.db"
    # FULL survives power loss, NORMAL (WAL) only process crashes; see README "Operations: delivery".
    synchronous: Literal["FULL", "NORMAL"] = "FULL"
    # SQLite group commit: how long after a commit began the next waits to share its transaction
    # and fsync (None: 3 ms under FULL, 0 under NORMAL; "0ms" trades that CPU for ~2 ms of latency).
    group_commit_window: Duration | None = None

    @field_validator("group_commit_window")
    @classmethod
    def _short_window(cls, v: timedelta | None) -> timedelta | None:
        if v is not None and v > MAX_GROUP_COMMIT_WINDOW:
            raise ValueError("at most 100ms: every commit may wait this long (the default is 3ms under FULL)")
        return v

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
    # A by-id watch group is polled in this many shards, one lease each (bridge/shards.py), so
    # replicas share one provider's fleet: at least the number of replicas, a multiple of it for an
    # even split. Every replica must use the same number (a shard of 4 is not a shard of 8).
    shards: int = 8

    @field_validator("shards")
    @classmethod
    def _shard_bounds(cls, v: int) -> int:
        if not 1 <= v <= 256:
            raise ValueError("must be between 1 and 256 (each shard of a by-id group is one lease)")
        return v

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
    # Acknowledge / snooze links (#14): the address people reach this bridge at (the links' base),
    # the HMAC key that signs them (default: one derived from admin_token), how long a link lives
    # at most, and the snooze lengths each notification offers.
    public_url: str | None = Field(default=None, pattern=r"^https?://[^\s/?#]+(/[^\s?#]*)?$")
    link_secret: SecretStr | None = None
    link_ttl: Duration = timedelta(days=7)
    snooze_durations: list[Duration] = Field(
        default_factory=lambda: [timedelta(hours=1), timedelta(hours=4), timedelta(days=1)], max_length=6
    )

    @field_validator("link_ttl")
    @classmethod
    def _ttl(cls, v: timedelta) -> timedelta:
        if not timedelta(minutes=5) <= v <= timedelta(days=90):
            raise ValueError("must be between 5m and 90d")
        return v

    @field_validator("snooze_durations")
    @classmethod
    def _snoozes(cls, v: list[timedelta]) -> list[timedelta]:
        if any(d <= timedelta(0) or d > timedelta(days=30) for d in v):
            raise ValueError("each snooze must be longer than 0s and at most 30d")
        return v

    @field_validator("link_secret")
    @classmethod
    def _secret_length(cls, v: SecretStr | None) -> SecretStr | None:
        if v is not None and len(v.get_secret_value()) < 16:
            raise ValueError("must be at least 16 characters (it signs acknowledge links)")
        return v

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
