"""Podero Partner API v2.0 payload models, and the four device families they describe.

Wallbox models follow seed 002 (WallboxDetailOutput) and tolerate seed 001. Heat pumps, electric vehicles
and inverters follow providers-wave2.md §1.2-1.5: the same core block as a wallbox, plus each family's
state and attributes. Every model is a gate only (`extra="allow"`, all but the core optional): what is
stored and diffed is the body as sent, after `normalise` has renamed the older field names the docs still
show (`dhw_actual_temperature`, `pause_power_active`, `battery_connected`, …) to the current ones, so a
rule on `dhw_temperature` works whichever rendering a tenant's API returns.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field

Status = Literal["ok", "warning", "error", "unknown"]
STATUS_VALUES = ("ok", "warning", "error", "unknown")


class _Payload(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)


class DeviceType(_Payload):
    short_name: str
    long_name: str


class DeviceModel(_Payload):
    device_type: DeviceType | None = None
    manufacturer: str | None = None
    model: str | None = None


class Owner(_Payload):
    id: str
    email: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    external_id: str | None = None


class ResolutionLink(_Payload):
    url: str
    required_parameters: list[str] = []


class Action(_Payload):
    """Any action item; unknown future codes are kept (only `code` is required)."""

    code: str
    resolution_link: ResolutionLink | None = None


class WallboxDetail(_Payload):
    """WallboxDetailOutput (seed 002), lenient towards seed 001 and additions."""

    id: str | None = None
    connection_status: Status | str
    monitoring_status: Status | str
    steering_status: Status | str
    device_model: DeviceModel | None = None
    owner: Owner
    created_at: datetime
    updated_at: datetime
    deleted_at: datetime | None = None
    mode: str | None = None
    connection: str | None = None
    is_authenticated: bool | None = False
    is_plugged_in: bool | None = False
    is_charging: bool | None = False
    is_fully_charged: bool | None = False
    charge_rate_w: float | None = None
    charge_time_remaining: int | None = None
    action_needed: bool = False
    has_notification: bool = False
    actions: list[Action] = []


class OnboardingSession(_Payload):
    """DeviceOnboardingSessionOutput (seed 000). No status field: `object_id` set = finished."""

    id: str
    user: str
    authentication_url: str
    success_url: str
    cancel_url: str
    expiration_date: str | None = None
    object_id: str | None = None
    skip_to: str | None = None


def _either(name: str, old: str) -> Any:
    """A field read under its current name or the older one (the docs show both)."""
    return Field(default=None, validation_alias=AliasChoices(name, old))


class DeviceDetail(_Payload):
    """The core block every device family shares (wave 2 §1.2). `owner` and the timestamps are optional:
    the older list renderings leave some of them out."""

    id: str = Field(min_length=1)
    connection_status: Status | str
    monitoring_status: Status | str
    steering_status: Status | str
    device_model: DeviceModel | None = None
    owner: Owner | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    deleted_at: datetime | None = None
    lifecycle_state: str | None = None
    lifecycle_error: str | None = None
    is_authenticated: bool | None = None
    is_smart_optimization_active: bool | None = None
    is_pause_power_active: bool | None = _either("is_pause_power_active", "pause_power_active")
    pause_power_until: datetime | None = None
    action_needed: bool = False
    has_notification: bool = False
    actions: list[Action] = []


class HeatPumpDetail(DeviceDetail):
    """Heat-pump detail (wave 2 §1.3)."""

    current_mode: Literal["min", "low", "mid", "max"] | None = None
    optimization_level: Literal["Low", "Mid", "Max"] | None = None
    operational_mode: str | None = None  # old docs only: Hot Water, Heating, Pool Heating, Standby, Off
    current_power_consumption_w: float | None = None
    outdoor_temperature: float | None = None
    indoor_actual_temperature: float | None = None
    indoor_target_temperature: float | None = None
    indoor_target_temperature_offset: float | None = None
    inlet_temperature: float | None = None
    outlet_temperature: float | None = None
    dhw_temperature: float | None = _either("dhw_temperature", "dhw_actual_temperature")
    minimum_dhw_temperature_limit: float | None = None
    is_away_mode_enabled: bool | None = None


class ElectricVehicleDetail(DeviceDetail):
    """Electric-vehicle detail (wave 2 §1.4); `boost_state` is the boost machine."""

    is_plugged_in: bool | None = None
    is_charging: bool | None = None
    is_fully_charged: bool | None = None
    boost_state: Literal["available", "requested", "ongoing", "unavailable"] | None = None
    boost_for_next_session: bool | None = None
    battery_level: float | None = Field(default=None, ge=0, le=100)
    charge_rate_w: float | None = None
    charge_time_remaining: int | None = None
    driving_range: float | None = None
    battery_capacity_kwh: float | None = None
    charge_target_min: int | None = _either("charge_target_min", "charge_limit_min")
    charge_target_max: int | None = _either("charge_target_max", "charge_limit_max")


class InverterDetail(DeviceDetail):
    """Solar-inverter detail, with its optional home battery (wave 2 §1.5)."""

    current_solar_production_w: float | None = None
    household_consumption_w: float | None = None
    current_power_to_grid_w: float | None = None
    solar_surplus_w: float | None = None
    battery_charge_level_percent: float | None = None
    battery_charge_discharge_power_w: float | None = None
    is_battery_connected: bool | None = _either("is_battery_connected", "battery_connected")
    battery_capacity_kwh: float | None = None
    min_battery_charge: float | None = None
    max_battery_charge: float | None = None
    solar_power_rating_kw: float | None = None


# Older name → current name, per source: `normalise` stores the current one (when both are sent, the
# current value wins and the old key is dropped). Renames only; fields whose meaning changed
# (`operational_mode` vs `current_mode`, `building_id` vs `building`) are kept as they are.
_COMMON_LEGACY = {"pause_power_active": "is_pause_power_active", "pause_power_until_utc": "pause_power_until"}
LEGACY_NAMES: Mapping[str, Mapping[str, str]] = {
    "podero.heat_pump": {**_COMMON_LEGACY, "dhw_actual_temperature": "dhw_temperature"},
    "podero.electric_vehicle": {
        **_COMMON_LEGACY,
        "charge_limit_min": "charge_target_min",
        "charge_limit_max": "charge_target_max",
        "consumption_last_updated_utc": "consumption_last_updated_at",
    },
    "podero.inverter": {
        **_COMMON_LEGACY,
        "battery_connected": "is_battery_connected",
        "charge_state_last_updated": "current_state_last_updated_at",
    },
}


def normalise(body: dict[str, Any], source: str) -> dict[str, Any]:
    """The body with older field names renamed to the current ones (key order kept)."""
    renames = LEGACY_NAMES.get(source)
    if not renames or not any(old in body for old in renames):
        return body
    out: dict[str, Any] = {}
    for key, value in body.items():
        new = renames.get(key)
        if new is None:
            out[key] = value
        elif new not in body:
            out[new] = value
    return out


@dataclass(frozen=True, slots=True, kw_only=True)
class DeviceKind:
    """One device family: its source, watch group, list path, id parameter and `skip_to` code."""

    source: str
    group: str  # watch group name, and the config key of its by-id watches
    path: str  # `/org/{org}/users/{user}/<path>`
    id_param: str  # the config/API key of a device id (`heat_pump_id`)
    skip_to: str  # the onboarding session's `skip_to` code for this family
    model: type[_Payload]

    @property
    def noun(self) -> str:
        """`heat pump`, for messages."""
        return self.source.partition(".")[2].replace("_", " ")


WALLBOX = DeviceKind(
    source="podero.wallbox", group="wallboxes", path="wallboxes", id_param="wallbox_id", skip_to="wb",
    model=WallboxDetail,
)  # fmt: skip
HEAT_PUMP = DeviceKind(
    source="podero.heat_pump", group="heat_pumps", path="heat-pumps", id_param="heat_pump_id", skip_to="hp",
    model=HeatPumpDetail,
)  # fmt: skip
ELECTRIC_VEHICLE = DeviceKind(
    source="podero.electric_vehicle", group="electric_vehicles", path="electric-vehicles",
    id_param="electric_vehicle_id", skip_to="ev", model=ElectricVehicleDetail,
)  # fmt: skip
INVERTER = DeviceKind(
    source="podero.inverter", group="inverters", path="inverters", id_param="inverter_id", skip_to="iv",
    model=InverterDetail,
)  # fmt: skip
KINDS: tuple[DeviceKind, ...] = (WALLBOX, HEAT_PUMP, ELECTRIC_VEHICLE, INVERTER)
KIND_BY_SOURCE = {k.source: k for k in KINDS}
KIND_BY_GROUP = {k.group: k for k in KINDS}
KIND_BY_SKIP_TO = {k.skip_to: k for k in KINDS}
SKIP_TO_VALUES = tuple(k.skip_to for k in KINDS)
