"""The admin API's watch models: what `POST /api/watches` accepts, by source, and what a watch looks like.

Apart from `models.py` because each kind carries its own id rules and a worked example (the OpenAPI
document shows it, and schemathesis starts from it).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import ConfigDict, Field, RootModel

from bridge.api.models import JSONValue, Name, Request, Response

ProviderName = Annotated[str, Field(min_length=1, max_length=100)]
# WattShift home ids are opaque (`ws_home_<32 hex>` today): anything URL- and log-safe is accepted.
HomeId = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")]


class PoderoOnboardingWatch(Request):
    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        json_schema_extra={
            "examples": [
                {
                    "source": "podero.onboarding_session",
                    "provider": "podero",
                    "session_id": "3f0c6a51-7d2e-4c5b-9a61-2b8e1f4d7c90",
                }
            ]
        },
    )

    source: Literal["podero.onboarding_session"]
    provider: ProviderName
    session_id: uuid.UUID


class PoderoWallboxWatch(Request):
    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        json_schema_extra={
            "examples": [
                {
                    "source": "podero.wallbox",
                    "provider": "podero",
                    "user_id": "8a1d2c3b-4e5f-4a6b-8c7d-9e0f1a2b3c4d",
                    "wallbox_id": "00000000-0000-4000-8000-0000000000b1",
                }
            ]
        },
    )

    source: Literal["podero.wallbox"]
    provider: ProviderName
    user_id: uuid.UUID
    wallbox_id: uuid.UUID


def _device_example(source: str, id_param: str) -> ConfigDict:
    example: dict[str, JSONValue] = {
        "source": source,
        "provider": "podero",
        "user_id": "8a1d2c3b-4e5f-4a6b-8c7d-9e0f1a2b3c4d",
        id_param: "00000000-0000-4000-8000-0000000000c1",
    }
    return ConfigDict(extra="forbid", frozen=True, json_schema_extra={"examples": [example]})


class PoderoHeatPumpWatch(Request):
    model_config = _device_example("podero.heat_pump", "heat_pump_id")

    source: Literal["podero.heat_pump"]
    provider: ProviderName
    user_id: uuid.UUID
    heat_pump_id: uuid.UUID


class PoderoElectricVehicleWatch(Request):
    model_config = _device_example("podero.electric_vehicle", "electric_vehicle_id")

    source: Literal["podero.electric_vehicle"]
    provider: ProviderName
    user_id: uuid.UUID
    electric_vehicle_id: uuid.UUID


class PoderoInverterWatch(Request):
    model_config = _device_example("podero.inverter", "inverter_id")

    source: Literal["podero.inverter"]
    provider: ProviderName
    user_id: uuid.UUID
    inverter_id: uuid.UUID


PoderoDeviceWatch = (
    PoderoWallboxWatch | PoderoHeatPumpWatch | PoderoElectricVehicleWatch | PoderoInverterWatch
)


class WattShiftHomeWatch(Request):
    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        json_schema_extra={
            "examples": [
                {
                    "source": "wattshift.onboarding",
                    "provider": "wattshift",
                    "home_id": "ws_home_0c89c0cf7fe04ae6a1364edf6b6621e6",
                }
            ]
        },
    )

    source: Literal["wattshift.onboarding"]
    provider: ProviderName
    home_id: HomeId


class RealtoCommandWatch(Request):
    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        json_schema_extra={
            "examples": [
                {
                    "source": "realto.command",
                    "provider": "realto",
                    "entity_id": "4b1f6c2e-9d7a-4e3b-8f10-2c5d6e7f8a9b",
                    "command_id": "7e2d1c0b-3a4f-4b5c-9d8e-1f2a3b4c5d6e",
                }
            ]
        },
    )

    source: Literal["realto.command"]
    provider: ProviderName
    entity_id: uuid.UUID
    command_id: uuid.UUID


class RealtoGuidedSessionWatch(Request):
    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        json_schema_extra={
            "examples": [
                {
                    "source": "realto.guided_onboarding_session",
                    "provider": "realto",
                    "session_id": "00000000-0000-4000-8000-0000000000c1",
                }
            ]
        },
    )

    source: Literal["realto.guided_onboarding_session"]
    provider: ProviderName
    session_id: uuid.UUID


class WatchCreate(
    RootModel[
        Annotated[
            PoderoOnboardingWatch
            | PoderoWallboxWatch
            | PoderoHeatPumpWatch
            | PoderoElectricVehicleWatch
            | PoderoInverterWatch
            | RealtoCommandWatch
            | RealtoGuidedSessionWatch
            | WattShiftHomeWatch,
            Field(discriminator="source"),
        ]
    ]
):
    """What to watch, by `source`: a Podero onboarding session or device (wallbox, heat pump, electric
    vehicle, inverter), a Realto command or guided onboarding session, or a WattShift home."""

    model_config = ConfigDict(frozen=True)


class WatchListQuery(Request):
    provider: ProviderName | None = None
    source: Name | None = None
    state: Literal["active", "ended", "all"] = "all"


class WatchOut(Response):
    id: str
    provider: str
    source: str
    resource_id: str
    params: dict[str, JSONValue]
    created_at: datetime
    ended_at: datetime | None
    end_reason: str | None = Field(description="why it ended: finished, expired, completed, error, not_found")
    active: bool


class WatchList(Response):
    items: list[WatchOut]
