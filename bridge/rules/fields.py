"""The fields each source's state has, so `wattbridge check` can catch a misspelt `field` path.

Built from the providers' payload models plus the documented fields those (deliberately lenient)
models do not name (providers.md §1.3 for the wallbox), and the bridge's own health states. A typo
in a rule's `field` would otherwise never match and never say so.
"""

from __future__ import annotations

import difflib
import functools
import types
import typing
from collections.abc import Mapping
from typing import Any, Union

from jinja2 import nodes
from pydantic import BaseModel

from bridge.poll.diff import parse_path

# A shape: a mapping of known keys (with the shape under each), VALUE (a scalar: no fields under it)
# or OPEN (an object whose keys are not documented: any path under it is accepted). A list of items
# is a mapping with the single key ITEMS, reached by `name[code]` (diff's action-list paths).
VALUE = "value"
OPEN = "open"
ITEMS = "[]"
Shape = Mapping[str, "Shape"] | str

# WallboxDetailOutput (seed 002) keys the lenient model leaves to `extra="allow"`, and seed 001's
# `building`.
_WALLBOX_DOCUMENTED = (
    "price_zone",
    "lifecycle_state",
    "lifecycle_error",
    "pause_power_until",
    "is_pause_power_active",
    "external_device_id",
    "is_smart_optimization_active",
    "optimization_score",
    "current_mode",
    "comment",
    "current_state_last_updated_at",
    "last_monitoring_executed_at",
    "is_inverter_forced_mode_enabled",
    "is_inverter_forced_mode_active",
    "inverter_forced_mode_since",
    "is_trading_enabled",
    "actual_steering_state",
    "charge_target_min",
    "charge_target_max",
    "charge_power_max_w",
    "supports_current_modulation",
    "supports_phase_switching",
    "phases",
    "min_amps",
    "max_amps",
    "capabilities_last_refreshed_at",
    "hems_min_export_to_start_w",
    "hems_max_import_before_stopping_w",
    "firmware_version",
    "is_ocpp_connected",
    "ocpp_connected_last_updated_at",
    "total_energy_delivered_wh",
    "is_charge_policy_enabled",
    "charge_policy_last_updated_at",
    "minimum_charge_limit",
    "charge_deadline_at",
    "is_over_charge_allowed",
    "charge_state_last_updated_at",
    "consumption_last_day_kwh",
    "consumption_last_week_kwh",
    "consumption_last_month_kwh",
    "consumption_last_updated_at",
    "needs_gateway",
    "embeddable_url",
    "authorization_url",
    "building",
)
# The core block every device family shares (providers-wave2.md §1.2) that DeviceDetail leaves open.
_DEVICE_DOCUMENTED = (
    "price_zone", "external_device_id", "optimization_score", "comment", "current_state_last_updated_at",
    "last_monitoring_executed_at", "is_inverter_forced_mode_enabled", "is_inverter_forced_mode_active",
    "inverter_forced_mode_since", "is_trading_enabled", "actual_steering_state", "embeddable_url",
    "authorization_url", "building", "is_forecasting_enabled", "consumption_last_day_kwh",
    "consumption_last_week_kwh", "consumption_last_month_kwh", "consumption_last_updated_at",
)  # fmt: skip
_HEAT_PUMP_DOCUMENTED = (
    "consumption_last_updated_at", "is_heating_policy_enabled", "maximum_temperature_limit",
    "minimum_temperature_limit", "heating_policy_last_updated_utc", "dhw_standard_temperature",
    "is_hot_water_heating_enabled", "is_space_heating_enabled", "is_pool_heating_enabled",
    "away_mode_start", "away_mode_end", "away_mode_minimum_temperature_limit",
    "away_mode_minimum_dhw_temperature_limit", "dhw_target_temperature", "building_id", "device_model_id",
)  # fmt: skip
_ELECTRIC_VEHICLE_DOCUMENTED = (
    "is_charge_policy_enabled", "charge_deadline_at", "minimum_charge_limit", "is_over_charge_allowed",
    "charge_policy_last_updated_at", "charge_state_last_updated_at",
)  # fmt: skip
_INVERTER_DOCUMENTED = (
    "production_last_day_kwh", "production_last_week_kwh", "production_last_month_kwh",
    "production_last_updated_utc", "battery_policy", "user_limits_enabled", "information_last_updated_utc",
)  # fmt: skip
_DEVICE_MODEL_DOCUMENTED = (
    "cloud_service_instructions",
    "cloud_service_signup_link",
    "year",
    "cloud_service",
)
_ACTION_DOCUMENTED = {"metadata": OPEN, "sent_at": VALUE}
_SESSION_DOCUMENTED = (
    "price_zone_default",
    "is_smart_optimization_active_default",
    "skip_to",
    "external_metadata",
    "language",
    "status",  # derived by Wattbridge: pending, finished or expired
)
# Realto's OnboardingRequest `data` (providers.md §2.3): documented in full, `properties` left open.
_V = VALUE
_REQUEST_DATA: dict[str, Shape] = {
    "collective": {"id": _V, "name": _V, "owner": _V, "properties": OPEN, "tenantId": _V, "type": _V},
    "entity": {
        "collectiveId": _V, "id": _V, "owner": _V, "properties": OPEN, "systemProperties": OPEN,
        "tenantId": _V, "type": _V,
        "information": dict.fromkeys(
            ("code", "ean", "email", "manufacturer", "model", "reference", "track", "type", "uuid", "vin"), _V
        ),
        "reference": {"manufacturer": _V, "type": _V, "reference": _V},
    },
    "tenant": {"type": _V, "administrator": _V, "id": _V, "name": _V},
    "user": dict.fromkeys(
        ("collectiveId", "email", "givenName", "id", "language", "surname", "tenantId"), _V
    ),
    "client": {"id": _V, "name": _V, "tenantId": _V, "isTenantAdmin": _V},
}  # fmt: skip
# Derived by Wattbridge on a finished session: the device it created.
_SESSION_DEVICE = {"id": VALUE, "source": VALUE}


def _shape_of(annotation: Any) -> Shape:
    """The shape of a pydantic field type: models recurse, lists of models are ITEMS, dicts are OPEN."""
    origin = typing.get_origin(annotation)
    if origin in (Union, types.UnionType):
        shapes = [_shape_of(a) for a in typing.get_args(annotation) if a is not type(None)]
        return next((s for s in shapes if not isinstance(s, str)), shapes[0] if shapes else VALUE)
    if origin is list:
        (item,) = typing.get_args(annotation) or (Any,)
        inner = _shape_of(item)
        return {ITEMS: inner} if not isinstance(inner, str) else VALUE
    if origin is dict or annotation is dict or annotation is Any:
        return OPEN
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return _model(annotation)
    return VALUE


def _model(model: type[BaseModel], **extra: Shape) -> dict[str, Shape]:
    shape: dict[str, Shape] = {name: _shape_of(f.annotation) for name, f in model.model_fields.items()}
    shape.update(extra)
    return shape


@functools.cache
def catalog() -> dict[str, Shape]:
    """Every source's shape (built once, on first use: `check` and rule loading only)."""
    from bridge.contracts.envelope import ChannelState, ProviderState
    from bridge.providers import podero, realto_models, wattshift

    wallbox = _model(podero.WallboxDetail, **dict.fromkeys(_WALLBOX_DOCUMENTED, VALUE))
    device_model = dict(_model(podero.DeviceModel), **dict.fromkeys(_DEVICE_MODEL_DOCUMENTED, VALUE))
    wallbox["device_model"] = device_model
    wallbox["actions"] = {ITEMS: _model(podero.Action, **_ACTION_DOCUMENTED)}
    session = _model(podero.OnboardingSession, **dict.fromkeys(_SESSION_DOCUMENTED, VALUE))
    session["external_metadata"] = OPEN
    session["device"] = _SESSION_DEVICE
    devices: dict[str, tuple[type[BaseModel], tuple[str, ...]]] = {
        podero.SOURCE_HEAT_PUMP: (podero.HeatPumpDetail, _HEAT_PUMP_DOCUMENTED),
        podero.SOURCE_ELECTRIC_VEHICLE: (podero.ElectricVehicleDetail, _ELECTRIC_VEHICLE_DOCUMENTED),
        podero.SOURCE_INVERTER: (podero.InverterDetail, _INVERTER_DOCUMENTED),
    }
    device_shapes: dict[str, Shape] = {}
    for source, (model, documented) in devices.items():
        shape = _model(model, **dict.fromkeys(_DEVICE_DOCUMENTED + documented, VALUE))
        shape["device_model"] = device_model
        shape["actions"] = {ITEMS: _model(podero.Action, **_ACTION_DOCUMENTED)}
        device_shapes[source] = shape
    guided = _model(realto_models.GuidedOnboardingSession)
    request = guided["onboardingRequest"]
    if isinstance(request, dict):
        guided["onboardingRequest"] = {**request, "data": _REQUEST_DATA}
    return {
        "podero.wallbox": wallbox,
        **device_shapes,
        "podero.onboarding_session": session,
        "realto.guided_onboarding_session": guided,
        "realto.command": _model(realto_models.Command),
        "wattshift.onboarding": _model(wattshift.OnboardingStatus),
        # ProviderHealth.as_state() and DeliveryWorker.channel_state(), as the payload contract says.
        "bridge.provider": _model(ProviderState),
        "bridge.channel": _model(ChannelState),
    }


def field_problem(source: str, path: str) -> str | None:
    """Why `path` names no field of `source` (with a "did you mean"), or None when it does."""
    shape: Shape | None = catalog().get(source)
    steps = parse_path(path)
    if shape is None or steps is None:
        return None  # an unknown source or a malformed path is the schema's to report
    walked: list[str] = []
    for name, code in steps:
        if shape == OPEN:
            return None
        if isinstance(shape, str):
            return f"{'.'.join(walked)!r} of {source} is a value: it has no field {name!r}"
        if name not in shape:
            where = f"field of {'.'.join(walked)} in {source}" if walked else f"field of {source}"
            close = difflib.get_close_matches(name, [k for k in shape if k != ITEMS], n=1, cutoff=0.7)
            hint = f"; did you mean {'.'.join([*walked, close[0]])!r}?" if close else ""
            return f"{name!r}: unknown {where}{hint}"
        shape = shape[name]
        walked.append(name)
        if code is not None:
            if isinstance(shape, str) or ITEMS not in shape:
                if shape == OPEN:
                    return None
                return f"{'.'.join(walked)!r} of {source} is not a list of items: [{code}] cannot apply"
            shape = shape[ITEMS]
            walked[-1] = f"{name}[{code}]"
    return None


_DICT_METHODS = frozenset({"get", "items", "keys", "values"})


def _state_paths(node: nodes.Node) -> set[str]:
    """Dotted paths read from `old` / `new` in a parsed template (`new.owner.email` → `owner.email`)."""
    found: set[str] = set()
    for attr in node.find_all(nodes.Getattr):
        parts: list[str] = []
        cur: nodes.Node = attr
        while isinstance(cur, nodes.Getattr):
            parts.append(cur.attr)
            cur = cur.node
        if isinstance(cur, nodes.Name) and cur.name in ("old", "new"):
            parts.reverse()
            while parts and parts[-1] in _DICT_METHODS:
                parts.pop()
            if parts:
                found.add(".".join(parts))
    return {p for p in found if not any(q.startswith(p + ".") for q in found)}


def template_problems(source: str, text: str, *, expression: bool) -> list[str]:
    """Unknown fields read as `old.X` / `new.X` by an `if` expression or a template (it compiles)."""
    from bridge.rules.templates import ENV

    tree = ENV.parse("{{ (" + text + ") }}" if expression else text)
    out = []
    for path in sorted(_state_paths(tree)):
        problem = field_problem(source, path)
        if problem is not None:
            out.append(problem)
    return out
