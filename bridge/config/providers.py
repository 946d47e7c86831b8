"""`[providers.NAME]`: where each partner API is, how fast it may be read, and what to watch."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator

from bridge.config.types import Duration, Strict


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
