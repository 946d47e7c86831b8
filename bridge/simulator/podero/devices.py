"""The Podero simulator's heat pumps, electric vehicles and solar inverters (providers-wave2.md §1.2-1.5).

Each family has a user list (`GET …/users/{user}/heat-pumps`, a plain array of detail objects) and a
detail route, both honouring `include_deleted`. Bodies carry the core block every family shares plus the
family's state and attributes. On every read the `*_last_updated_at` stamps move and the live readings
wobble (power, temperatures, range), as Podero's do: the noise a differ must ignore. A device created with
`legacy=True` is rendered with the older field names the docs still show (`dhw_actual_temperature`,
`pause_power_active`, `battery_connected`, `charge_limit_min/max`). The EV boost endpoint follows the
documented state machine: POST → `requested` (or armed for the next session when unplugged), 409 with a
reason when it cannot start; DELETE disarms.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from bridge.clock import Clock
from bridge.simulator import AdminAction, json_response
from bridge.simulator.podero.common import (
    API,
    User,
    include_deleted,
    jsonable,
    new_id,
    not_found,
    path_uuids,
)

Handler = Callable[[web.Request], Awaitable[web.Response]]
Route = Callable[[str, Handler], Callable[[web.Request], Awaitable[web.StreamResponse]]]


@dataclass(frozen=True, slots=True)
class Family:
    group: str  # heat_pumps
    path: str  # heat-pumps
    route: str  # fault route of the detail read; `user_<group>` is the list's
    short_name: str
    long_name: str
    manufacturer: str
    model: str


FAMILIES = {
    f.group: f
    for f in (
        Family(
            "heat_pumps", "heat-pumps", "heat_pump", "hp_atw", "Heat Pump (Air-to-Water)", "Daikin",
            "Altherma 3",
        ),
        Family(
            "electric_vehicles", "electric-vehicles", "electric_vehicle", "ev", "Electric Vehicle", "Tesla",
            "Model 3",
        ),
        Family("inverters", "inverters", "inverter", "iv", "Solar Inverter", "Fronius", "Symo GEN24"),
    )
}  # fmt: skip
DEVICE_ROUTES = tuple(r for f in FAMILIES.values() for r in (f.route, f"user_{f.group}"))

# Stamped with "now" on every read (when not null).
STAMPED = ("updated_at", "current_state_last_updated_at", "last_monitoring_executed_at")
# Live readings that wobble on every read (by a few units; 0 and None stay as they are).
WOBBLE: dict[str, tuple[str, ...]] = {
    "heat_pumps": (
        "current_power_consumption_w", "outdoor_temperature", "inlet_temperature", "outlet_temperature",
    ),
    "electric_vehicles": ("driving_range",),
    "inverters": ("current_solar_production_w", "household_consumption_w"),
}  # fmt: skip
LEGACY: dict[str, dict[str, str]] = {
    "heat_pumps": {
        "dhw_temperature": "dhw_actual_temperature",
        "is_pause_power_active": "pause_power_active",
    },
    "electric_vehicles": {
        "charge_target_min": "charge_limit_min",
        "charge_target_max": "charge_limit_max",
        "is_pause_power_active": "pause_power_active",
    },
    "inverters": {"is_battery_connected": "battery_connected", "is_pause_power_active": "pause_power_active"},
}
BOOST_STATES = ("available", "requested", "ongoing", "unavailable")
FIXED = frozenset(
    {"id", "owner", "created_at", "device_model", "action_needed", "has_notification", "actions"}
)


@dataclass(slots=True)
class _Device:
    id: str
    user_id: str
    family: Family
    fields: dict[str, Any]
    legacy: bool = False
    reads: int = 0
    actions: list[str] = field(default_factory=list)  # pending action codes (cue links: wallboxes only)


def _family_fields(group: str) -> dict[str, Any]:
    if group == "heat_pumps":
        return {
            "current_mode": "low", "optimization_level": "Mid", "current_power_consumption_w": 1450,
            "outdoor_temperature": 4.5, "indoor_actual_temperature": 21.0, "indoor_target_temperature": 21.5,
            "indoor_target_temperature_offset": 0.0, "inlet_temperature": 35.0, "outlet_temperature": 41.0,
            "dhw_temperature": 49.0, "dhw_standard_temperature": 50.0, "minimum_dhw_temperature_limit": 45.0,
            "is_heating_policy_enabled": True, "maximum_temperature_limit": 23.0,
            "minimum_temperature_limit": 19.0, "is_hot_water_heating_enabled": True,
            "is_space_heating_enabled": True, "is_pool_heating_enabled": False, "is_away_mode_enabled": False,
            "away_mode_start": None, "away_mode_end": None, "consumption_last_day_kwh": 18.4,
            "consumption_last_week_kwh": 121.0, "consumption_last_month_kwh": 502.3,
        }  # fmt: skip
    if group == "electric_vehicles":
        return {
            "is_plugged_in": False, "is_charging": False, "is_fully_charged": False,
            "boost_state": "unavailable", "boost_for_next_session": False, "battery_level": 54,
            "charge_rate_w": 0, "driving_range": 260, "battery_capacity_kwh": 60.0, "charge_target_min": 50,
            "charge_target_max": None, "is_charge_policy_enabled": True, "charge_deadline_at": "07:00",
            "minimum_charge_limit": 20, "is_over_charge_allowed": False,
            "charge_state_last_updated_at": None, "consumption_last_day_kwh": 7.1,
        }  # fmt: skip
    return {
        "current_solar_production_w": 3200, "household_consumption_w": 850, "current_power_to_grid_w": 2350,
        "solar_surplus_w": 2350, "battery_charge_level_percent": 64, "battery_charge_discharge_power_w": 0,
        "is_battery_connected": True, "battery_capacity_kwh": 10.0, "min_battery_charge": 10,
        "max_battery_charge": 95, "solar_power_rating_kw": 8.5,
    }  # fmt: skip


class DeviceMixin:
    """Heat pumps, EVs and inverters, mixed into PoderoSimulator (which owns the users and the clock)."""

    clock: Clock
    org_id: str
    _users: dict[str, User]
    _devices: dict[str, _Device]

    def _user(self, user_id: str) -> User:
        raise NotImplementedError  # PoderoSimulator's

    # ---------------------------------------------------------------- scenario API

    def add_device(
        self, group: str, user_id: str, *, device_id: str | None = None, legacy: bool = False, **fields: Any
    ) -> str:
        """Add a connected, authenticated device of `group` (heat_pumps, electric_vehicles, inverters)."""
        family = FAMILIES.get(group)
        if family is None:
            raise ValueError(f"unknown device family {group!r} (one of {', '.join(FAMILIES)})")
        user = self._user(user_id)
        did = new_id(device_id)
        if did in self._devices:
            raise ValueError(f"device {did!r} exists")
        now = self.clock.now()
        base: dict[str, Any] = {
            "connection_status": "ok", "monitoring_status": "ok", "steering_status": "ok",
            "price_zone": "AT", "id": did, "created_at": now, "updated_at": now, "deleted_at": None,
            "lifecycle_state": "authenticated", "lifecycle_error": None, "pause_power_until": None,
            "is_pause_power_active": False, "external_device_id": "", "is_authenticated": True,
            "is_smart_optimization_active": True, "optimization_score": 0.77, "comment": None,
            "current_state_last_updated_at": now, "last_monitoring_executed_at": now,
            "is_trading_enabled": False, "actual_steering_state": "unknown",
            "embeddable_url": None, "authorization_url": None,
        }  # fmt: skip
        base.update(_family_fields(group))
        self._devices[did] = _Device(did, user.id, family, base, legacy=legacy)
        try:
            self.update_device(did, **fields)
        except ValueError:
            del self._devices[did]
            raise
        return did

    def add_heat_pump(self, user_id: str, **kw: Any) -> str:
        return self.add_device("heat_pumps", user_id, **kw)

    def add_electric_vehicle(self, user_id: str, **kw: Any) -> str:
        return self.add_device("electric_vehicles", user_id, **kw)

    def add_inverter(self, user_id: str, **kw: Any) -> str:
        return self.add_device("inverters", user_id, **kw)

    def update_device(self, device_id: str, **fields: Any) -> None:
        """Change stored fields, e.g. `boost_state="ongoing", is_charging=True` (current names only)."""
        device = self._device(device_id)
        unknown = set(fields) - set(device.fields)
        if unknown:
            raise ValueError(f"unknown {device.family.group} field(s): {', '.join(sorted(unknown))}")
        fixed = set(fields) & FIXED
        if fixed:
            raise ValueError(f"fixed field(s) cannot be set: {', '.join(sorted(fixed))}")
        if "boost_state" in fields and fields["boost_state"] not in BOOST_STATES:
            raise ValueError(f"boost_state must be one of {', '.join(BOOST_STATES)}")
        device.fields.update(fields)

    def add_device_action(self, device_id: str, code: str = "reauthenticate") -> None:
        """A pending action on the device: `action_needed` turns true and `actions[]` lists it."""
        device = self._device(device_id)
        if code not in device.actions:
            device.actions.append(code)
        if code == "reauthenticate":
            device.fields["is_authenticated"] = False

    def resolve_device_action(self, device_id: str, code: str) -> None:
        device = self._device(device_id)
        device.actions = [c for c in device.actions if c != code]
        if code == "reauthenticate":
            device.fields["is_authenticated"] = True

    def soft_delete_device(self, device_id: str) -> None:
        self._device(device_id).fields["deleted_at"] = self.clock.now()

    def device(self, device_id: str) -> dict[str, Any]:
        """The body a GET would return now (a read: stamps move, live readings wobble)."""
        return self._render_device(self._device(device_id))

    # ---------------------------------------------------------------- helpers

    def _device(self, device_id: str) -> _Device:
        found = self._devices.get(new_id(device_id))
        if found is None:
            raise KeyError(f"unknown device {device_id!r}")
        return found

    def _render_device(self, device: _Device) -> dict[str, Any]:
        now = self.clock.now()
        device.reads += 1
        f = device.fields
        for key in STAMPED:
            if f.get(key) is not None:
                f[key] = now
        if f.get("charge_state_last_updated_at") is not None or device.family.group == "electric_vehicles":
            f["charge_state_last_updated_at"] = now
        user = self._users[device.user_id].data
        fam = device.family
        body: dict[str, Any] = {
            "id": device.id,
            "device_model": {
                "device_type": {"short_name": fam.short_name, "long_name": fam.long_name},
                "manufacturer": fam.manufacturer, "model": fam.model,
            },
            "owner": {
                "id": user["id"], "email": user["email"], "first_name": user["first_name"],
                "last_name": user["last_name"], "external_id": user["external_user_id"],
            },
        }  # fmt: skip
        wobble = WOBBLE[fam.group]
        for key, value in f.items():
            if key in body:
                continue
            if key in wobble and isinstance(value, int | float) and value:
                value = value + (device.reads % 5) * (1 if isinstance(value, int) else 0.1)
                value = round(value, 1) if isinstance(value, float) else value
            body[key] = jsonable(value)
        body.update(
            action_needed=bool(device.actions),
            has_notification=False,
            actions=[{"code": code, "resolution_link": None} for code in device.actions],
        )
        if device.legacy:
            renames = LEGACY[fam.group]
            body = {renames.get(k, k): v for k, v in body.items()}
        return body

    # ---------------------------------------------------------------- HTTP

    def _add_device_routes(self, app: web.Application, route: Route) -> None:
        users = f"{API}/org/{{org_id}}/users/{{user_id}}"
        for fam in FAMILIES.values():
            app.router.add_get(f"{users}/{fam.path}", route(f"user_{fam.group}", self._lister(fam)))
            app.router.add_get(f"{users}/{fam.path}/{{device_id}}", route(fam.route, self._reader(fam)))
        ev = f"{users}/electric-vehicles/{{device_id}}/boost"
        app.router.add_post(ev, route("electric_vehicle", self._boost))
        app.router.add_delete(ev, route("electric_vehicle", self._unboost))

    def _device_admin_routes(self) -> list[tuple[str, str, AdminAction]]:
        dev = "/_sim/devices/{device_id}"

        def update(m: dict[str, str], b: dict[str, Any]) -> dict[str, Any]:
            self.update_device(m["device_id"], **b)
            return self.device(m["device_id"])

        return [
            (
                "POST",
                "/_sim/users/{user_id}/devices/{group}",
                lambda m, b: {"id": self.add_device(m["group"], m["user_id"], **b)},
            ),
            ("GET", dev, lambda m, b: self.device(m["device_id"])),
            ("POST", dev, update),
            ("DELETE", dev, lambda m, b: self.soft_delete_device(m["device_id"])),
        ]

    def _lister(self, fam: Family) -> Handler:
        async def handler(request: web.Request) -> web.Response:
            org_id, user_id = path_uuids(request, "org_id", "user_id")
            deleted = include_deleted(request)
            if org_id != self.org_id or user_id not in self._users:
                return not_found()
            found = [
                d
                for d in self._devices.values()
                if d.family is fam and d.user_id == user_id and (deleted or d.fields["deleted_at"] is None)
            ]
            return json_response([self._render_device(d) for d in found])

        return handler

    def _reader(self, fam: Family) -> Handler:
        async def handler(request: web.Request) -> web.Response:
            found = self._addressed(request, fam)
            return not_found() if found is None else json_response(self._render_device(found))

        return handler

    def _addressed(self, request: web.Request, fam: Family) -> _Device | None:
        org_id, user_id, device_id = path_uuids(request, "org_id", "user_id", "device_id")
        found = self._devices.get(device_id)
        if org_id != self.org_id or found is None or found.family is not fam or found.user_id != user_id:
            return None
        if found.fields["deleted_at"] is not None and not include_deleted(request):
            return None
        return found

    async def _boost(self, request: web.Request) -> web.Response:
        ev = self._addressed(request, FAMILIES["electric_vehicles"])
        if ev is None:
            return not_found()
        f = ev.fields
        if not f["is_plugged_in"]:
            f["boost_for_next_session"] = True  # armed: starts at the next plug-in
            return web.Response(status=204)
        reason = (
            "fully_charged" if f["is_fully_charged"] else "already_charging" if f["is_charging"] else None
        )
        if reason is not None or f["boost_state"] not in ("available", "requested"):
            body = {"state": f["boost_state"], "reason": reason or "no_active_session"}
            return json_response(body, status=409)
        f["boost_state"] = "requested"
        return web.Response(status=204)

    async def _unboost(self, request: web.Request) -> web.Response:
        ev = self._addressed(request, FAMILIES["electric_vehicles"])
        if ev is None:
            return not_found()
        ev.fields["boost_for_next_session"] = False  # disarms only; a live boost goes on
        return web.Response(status=204)


def device_uuid(seed: str) -> str:
    """A stable id for a scripted device (`device_uuid("hp-1")`)."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"podero-sim/device/{seed}"))
