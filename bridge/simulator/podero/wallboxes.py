"""The Podero simulator's wallboxes: seed-002 `WallboxDetailOutput` bodies in stable key order, their
pending actions (cues) with per-read re-signed resolution links, and the wallbox and cue routes.

Only `updated_at`-type fields move between reads. Derived fields (`mode`, `connection`, `action_needed`,
`has_notification`) follow the ASSUME truth tables of providers.md §1.3.
"""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel, ValidationError

from bridge.clock import Clock
from bridge.simulator import iso_z, json_response
from bridge.simulator.podero.common import (
    API,
    Unprocessable,
    User,
    include_deleted,
    jsonable,
    new_id,
    ninja_items,
    not_found,
    path_uuids,
    unauthorized,
)

CUE_SECRET_LIFETIME = timedelta(hours=1)  # "expires 1 hour after issuance" (seed 002)

# Seed-002 property order; the body is always emitted in this order.
_SEED_002_ORDER = """
connection_status monitoring_status steering_status device_model owner price_zone id created_at
updated_at deleted_at lifecycle_state lifecycle_error pause_power_until is_pause_power_active
external_device_id is_authenticated is_smart_optimization_active optimization_score current_mode comment
current_state_last_updated_at last_monitoring_executed_at is_inverter_forced_mode_enabled
is_inverter_forced_mode_active inverter_forced_mode_since is_trading_enabled actual_steering_state
charge_target_min charge_target_max charge_power_max_w supports_current_modulation
supports_phase_switching phases min_amps max_amps capabilities_last_refreshed_at
hems_min_export_to_start_w hems_max_import_before_stopping_w firmware_version is_ocpp_connected
ocpp_connected_last_updated_at total_energy_delivered_wh is_charge_policy_enabled
charge_policy_last_updated_at minimum_charge_limit charge_deadline_at is_over_charge_allowed
charge_time_remaining charge_rate_w is_fully_charged is_plugged_in is_charging
charge_state_last_updated_at consumption_last_day_kwh consumption_last_week_kwh
consumption_last_month_kwh consumption_last_updated_at needs_gateway embeddable_url authorization_url
action_needed has_notification mode connection actions
"""
WALLBOX_KEYS = tuple(_SEED_002_ORDER.split())
# Stamped with "now" on every read (when not null): the noise a differ must ignore.
VOLATILE = frozenset(
    {
        "updated_at",
        "current_state_last_updated_at",
        "last_monitoring_executed_at",
        "ocpp_connected_last_updated_at",
        "charge_policy_last_updated_at",
        "charge_state_last_updated_at",
        "consumption_last_updated_at",
    }
)
# Computed at render time (or fixed at creation), so they can never disagree with their inputs.
NOT_SETTABLE = frozenset(
    {"owner", "id", "created_at", "action_needed", "has_notification", "mode", "connection", "actions"}
)
_FLOATS = frozenset({"optimization_score", "charge_rate_w"})  # `number` in the schema: pydantic emits 7200.0


class _CueStateInput(BaseModel):
    state: Literal["success", "fail"]
    payload: dict[str, Any] | None = None
    location: dict[str, Any] | None = None
    client_info: dict[str, Any] | None = None


@dataclass(slots=True)
class _Action:
    cue_id: str
    code: str
    sent_at: datetime
    metadata: dict[str, Any]
    issued: dict[str, datetime] = field(default_factory=dict)  # secret → issued at


@dataclass(slots=True)
class _Wallbox:
    id: str
    user_id: str
    fields: dict[str, Any]
    actions: list[_Action] = field(default_factory=list)
    quiet: bool = False  # the device stopped reporting: Podero serves its last state, timestamps frozen


class WallboxMixin:
    """Wallboxes and their cues, mixed into PoderoSimulator (which owns the users and the clock)."""

    clock: Clock
    org_id: str
    _users: dict[str, User]
    _wallboxes: dict[str, _Wallbox]

    def _user(self, user_id: str) -> User:
        raise NotImplementedError  # PoderoSimulator's

    def add_wallbox(self, user_id: str, *, wallbox_id: str | None = None, **fields: Any) -> str:
        """Add a connected, authenticated wallbox for `user_id`; `fields` override the defaults."""
        user = self._user(user_id)
        wid = new_id(wallbox_id)
        if wid in self._wallboxes:
            raise ValueError(f"wallbox {wid!r} exists")
        now = self.clock.now()
        cloud = str(uuid.uuid5(uuid.NAMESPACE_URL, "podero-sim/cloud/easee"))
        defaults: dict[str, Any] = {
            "connection_status": "ok", "monitoring_status": "ok", "steering_status": "ok",
            "device_model": {
                "device_type": {"short_name": "wallbox", "long_name": "Wallbox"},
                "manufacturer": "Easee", "model": "Charge Lite",
                "cloud_service_instructions": None, "cloud_service_signup_link": None,
                "year": 2023, "cloud_service": cloud,
            },
            "price_zone": "AT", "id": wid, "created_at": now, "updated_at": now, "deleted_at": None,
            "lifecycle_state": "authenticated", "lifecycle_error": None, "pause_power_until": None,
            "is_pause_power_active": False, "external_device_id": "", "is_authenticated": True,
            "is_smart_optimization_active": True, "optimization_score": 0.82, "current_mode": None,
            "comment": None, "current_state_last_updated_at": now, "last_monitoring_executed_at": now,
            "is_inverter_forced_mode_enabled": False, "is_inverter_forced_mode_active": False,
            "inverter_forced_mode_since": "0001-01-01T00:00:00Z", "is_trading_enabled": False,
            "actual_steering_state": "unknown", "charge_target_min": 50, "charge_target_max": 80,
            "charge_power_max_w": 11000, "supports_current_modulation": True,
            "supports_phase_switching": False, "phases": 3, "min_amps": 6, "max_amps": 16,
            "capabilities_last_refreshed_at": now, "hems_min_export_to_start_w": 2000,
            "hems_max_import_before_stopping_w": 4000, "firmware_version": "4.12.1",
            "is_ocpp_connected": True, "ocpp_connected_last_updated_at": now,
            "total_energy_delivered_wh": 1843200, "is_charge_policy_enabled": False,
            "charge_policy_last_updated_at": None, "minimum_charge_limit": 80, "charge_deadline_at": None,
            "is_over_charge_allowed": False, "charge_time_remaining": None, "charge_rate_w": 0.0,
            "is_fully_charged": False, "is_plugged_in": False, "is_charging": False,
            "charge_state_last_updated_at": now,
            # Decimal fields: Ninja prints Decimal as a JSON string, so clients must accept both.
            "consumption_last_day_kwh": "4.210", "consumption_last_week_kwh": 29.87,
            "consumption_last_month_kwh": "128.500", "consumption_last_updated_at": now,
            "needs_gateway": False, "embeddable_url": None, "authorization_url": None,
        }  # fmt: skip
        box = _Wallbox(wid, user.id, defaults)
        self._wallboxes[wid] = box
        try:
            self.update_wallbox(wid, **fields)
        except (ValueError, KeyError):
            del self._wallboxes[wid]
            raise
        return wid

    def update_wallbox(self, wallbox_id: str, **fields: Any) -> None:
        """Change stored fields, e.g. `is_plugged_in=True, is_charging=True, charge_rate_w=7200`."""
        box = self._wallbox(wallbox_id)
        unknown = set(fields) - set(WALLBOX_KEYS)
        if unknown:
            raise ValueError(f"unknown wallbox field(s): {', '.join(sorted(unknown))}")
        derived = set(fields) & NOT_SETTABLE
        if derived:
            raise ValueError(f"derived or fixed field(s) cannot be set: {', '.join(sorted(derived))}")
        merged = {**box.fields, **fields}
        if "lifecycle_state" in fields and "lifecycle_error" not in fields:
            merged["lifecycle_error"] = None if merged["lifecycle_state"] != "error" else "error"
        if merged["lifecycle_error"] is not None and merged["lifecycle_state"] != "error":
            raise ValueError("lifecycle_error is only set when lifecycle_state == 'error'")
        if fields.get("is_ocpp_connected") and merged["ocpp_connected_last_updated_at"] is None:
            merged["ocpp_connected_last_updated_at"] = self.clock.now()
        for key in _FLOATS & fields.keys():
            merged[key] = None if merged[key] is None else float(merged[key])
        box.fields = merged

    def go_quiet(self, wallbox_id: str, quiet: bool = True) -> None:
        """The device stops reporting to Podero (`quiet=False`: it reports again): Podero still
        answers for it, with its `current_state_last_updated_at` and the other stamps frozen."""
        self._wallbox(wallbox_id).quiet = quiet

    def add_action(
        self, wallbox_id: str, code: str = "reauthenticate", *, message: str | None = None, **metadata: Any
    ) -> str:
        """Add a pending action (cue); returns the cue id. `reauthenticate` also unauthenticates the box."""
        box = self._wallbox(wallbox_id)
        if code == "information":
            metadata = {"message": message or "Your wallbox has a new message.", **metadata}
        cue = _Action(new_id(), code, self.clock.now(), metadata)
        box.actions.append(cue)
        if code == "reauthenticate":
            box.fields["is_authenticated"] = False
        return cue.cue_id

    def resolve_action(self, wallbox_id: str, code: str) -> list[str]:
        """Remove every pending action with `code` (as a `success` outcome would); returns their cue ids."""
        box = self._wallbox(wallbox_id)
        gone = [a for a in box.actions if a.code == code]
        if not gone:
            raise KeyError(f"wallbox {wallbox_id!r} has no pending {code!r} action")
        for action in gone:
            self._remove_action(box, action)
        return [a.cue_id for a in gone]

    def soft_delete_wallbox(self, wallbox_id: str) -> None:
        self._wallbox(wallbox_id).fields["deleted_at"] = self.clock.now()

    def wallbox(self, wallbox_id: str) -> dict[str, Any]:
        """The body a GET would return now (a read: volatile fields move, URLs are re-signed)."""
        return self._render(self._wallbox(wallbox_id))

    def _wallbox(self, wallbox_id: str) -> _Wallbox:
        box = self._wallboxes.get(new_id(wallbox_id))
        if box is None:
            raise KeyError(f"unknown wallbox {wallbox_id!r}")
        return box

    def _remove_action(self, box: _Wallbox, action: _Action) -> None:
        box.actions.remove(action)
        if action.code == "reauthenticate" and not any(a.code == "reauthenticate" for a in box.actions):
            box.fields["is_authenticated"] = True

    def _find_cue(self, cue_id: str) -> tuple[_Wallbox, _Action] | None:
        for box in self._wallboxes.values():
            for action in box.actions:
                if action.cue_id == cue_id:
                    return box, action
        return None

    def _render(self, box: _Wallbox) -> dict[str, Any]:
        now = self.clock.now()
        f = box.fields
        for key in VOLATILE if not box.quiet else ():
            if f[key] is not None:
                f[key] = now
        user = self._users[box.user_id].data
        auth, plugged, charging = f["is_authenticated"], f["is_plugged_in"], f["is_charging"]
        if auth is False:
            mode = "UNAVAILABLE"
        elif None in (auth, plugged, charging):
            mode = "UNKNOWN"
        else:
            mode = "CHARGING" if charging else "PLUGGED_IN" if plugged else "READY"
        if not auth or f["ocpp_connected_last_updated_at"] is None:
            connection = "never_connected"
        else:
            connection = "online" if f["is_ocpp_connected"] else "offline"
        computed: dict[str, Any] = {
            "owner": {
                "id": user["id"], "email": user["email"], "first_name": user["first_name"],
                "last_name": user["last_name"], "external_id": user["external_user_id"],
            },
            "action_needed": bool(box.actions),
            "has_notification": any(a.code == "information" for a in box.actions),
            "mode": mode,
            "connection": connection,
            "actions": [self._render_action(a, now) for a in box.actions],
        }  # fmt: skip
        return {k: computed[k] if k in computed else jsonable(f[k]) for k in WALLBOX_KEYS}

    def _render_action(self, action: _Action, now: datetime) -> dict[str, Any]:
        # A fresh signed secret per read, like Podero's re-issued links; old ones stay valid for an hour.
        action.issued = {s: t for s, t in action.issued.items() if now - t < CUE_SECRET_LIFETIME}
        secret = secrets.token_urlsafe(24)
        action.issued[secret] = now
        link = f"{API}/cues/{action.cue_id}/resolve?secret={secret}"
        if action.code == "reauthenticate":
            return {
                "code": "reauthenticate",
                "resolution_link": {"url": link, "required_parameters": ["successUrl", "cancelUrl"]},
            }
        item: dict[str, Any] = {
            "code": action.code,
            "resolution_link": {"url": link, "required_parameters": []},
        }
        if action.code == "information":
            item["metadata"] = dict(action.metadata)
            item["sent_at"] = iso_z(action.sent_at)
        elif action.metadata:
            item["metadata"] = dict(action.metadata)
        return item

    async def _list_wallboxes(self, request: web.Request) -> web.Response:
        org_id, user_id = path_uuids(request, "org_id", "user_id")
        deleted = include_deleted(request)
        if org_id != self.org_id or user_id not in self._users:
            return not_found()
        boxes = [
            b
            for b in self._wallboxes.values()
            if b.user_id == user_id and (deleted or b.fields["deleted_at"] is None)
        ]
        return json_response([self._render(b) for b in boxes])

    async def _get_wallbox(self, request: web.Request) -> web.Response:
        org_id, user_id, wallbox_id = path_uuids(request, "org_id", "user_id", "wallbox_id")
        deleted = include_deleted(request)
        box = self._wallboxes.get(wallbox_id)
        if org_id != self.org_id or box is None or box.user_id != user_id:
            return not_found()
        if box.fields["deleted_at"] is not None and not deleted:
            return not_found()
        return json_response(self._render(box))

    def _active_cue(self, request: web.Request) -> tuple[_Wallbox, _Action] | web.Response:
        (cue_id,) = path_uuids(request, "cue_id")
        found = self._find_cue(cue_id)
        if found is None:
            return not_found()
        issued = found[1].issued.get(request.query.get("secret", ""))
        if issued is None or self.clock.now() - issued >= CUE_SECRET_LIFETIME:
            return unauthorized()
        return found

    async def _cue_state(self, request: web.Request) -> web.Response:
        found = self._active_cue(request)
        if isinstance(found, web.Response):
            return found
        try:
            outcome = _CueStateInput.model_validate_json(await request.read())
        except ValidationError as exc:
            raise Unprocessable(ninja_items(exc, ("body", "data"))) from exc
        box, action = found
        if outcome.state == "success":
            self._remove_action(box, action)
        return json_response({"action_id": action.cue_id})

    async def _cue_resolve(self, request: web.Request) -> web.Response:
        found = self._active_cue(request)
        if isinstance(found, web.Response):
            return found
        _, action = found
        return json_response({"redirect_url": f"https://podero-simulator.invalid/cues/{action.cue_id}/start"})
