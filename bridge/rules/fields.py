"""The field paths each source's state has, so a rule's `field` typo is an error at load time.

Without this check `field = "is_chargng"` loads fine and silently never fires. The trees follow the
documented payloads (providers.md §1.3, §1.4, §2.3, §3.2; seed 001's older extras included) plus what
Wattbridge adds (`status` of a Podero onboarding session) and its own `bridge.*` resources. Parts whose
shape the providers leave open (action items, metadata, Realto's `data`) accept any path below them.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping

from bridge.diff import parse_path

OPEN: Mapping[str, object] = {}  # marker: any path below is accepted
Tree = Mapping[str, object]  # name -> None (a leaf), a subtree, or OPEN


def _leaves(names: str) -> dict[str, object]:
    return dict.fromkeys(names.split())


_WALLBOX: dict[str, object] = {
    **_leaves(
        """
        connection_status monitoring_status steering_status price_zone id created_at updated_at
        deleted_at lifecycle_state lifecycle_error pause_power_until is_pause_power_active
        external_device_id is_authenticated is_smart_optimization_active optimization_score
        current_mode comment current_state_last_updated_at last_monitoring_executed_at
        is_inverter_forced_mode_enabled is_inverter_forced_mode_active inverter_forced_mode_since
        is_trading_enabled actual_steering_state charge_target_min charge_target_max charge_power_max_w
        supports_current_modulation supports_phase_switching phases min_amps max_amps
        capabilities_last_refreshed_at hems_min_export_to_start_w hems_max_import_before_stopping_w
        firmware_version is_ocpp_connected ocpp_connected_last_updated_at total_energy_delivered_wh
        is_charge_policy_enabled charge_policy_last_updated_at minimum_charge_limit charge_deadline_at
        is_over_charge_allowed charge_time_remaining charge_rate_w is_fully_charged is_plugged_in
        is_charging charge_state_last_updated_at consumption_last_day_kwh consumption_last_week_kwh
        consumption_last_month_kwh consumption_last_updated_at needs_gateway embeddable_url
        authorization_url action_needed has_notification mode connection
        building is_forecasting_enabled
        """
    ),
    "device_model": {
        "device_type": _leaves("short_name long_name"),
        **_leaves(
            "manufacturer model cloud_service_instructions cloud_service_signup_link year cloud_service"
        ),
    },
    "owner": _leaves("id email first_name last_name external_id"),
    "actions": OPEN,
}

_PODERO_SESSION: dict[str, object] = {
    **_leaves(
        """
        authentication_url id user price_zone_default is_smart_optimization_active_default skip_to
        success_url cancel_url expiration_date object_id language status
        """
    ),
    "external_metadata": OPEN,
}

_REALTO_SESSION: dict[str, object] = {
    **_leaves("companyName created expired id manufacturer vin url"),
    "onboardingRequest": {
        **_leaves("created id principalId requestType returnUrl status"),
        "action": _leaves("documentationLink redirectLink type"),
        "data": OPEN,
        "errors": OPEN,
    },
}

FIELDS: Mapping[str, Tree] = {
    "podero.wallbox": _WALLBOX,
    "podero.onboarding_session": _PODERO_SESSION,
    "realto.guided_onboarding_session": _REALTO_SESSION,
    "wattshift.onboarding": _leaves("id homeId status eligibilityStatus thermostatBrandCode zipcode step"),
    "bridge.provider": _leaves("provider status consecutive_failures last_error last_success_at"),
    "bridge.channel": _leaves("channel status consecutive_failures last_error paused_until"),
}


def field_problem(source: str, field: str) -> str | None:
    """Why `field` names nothing in `source`'s state (with the closest known name), or None if it does."""
    node: object = FIELDS.get(source)
    steps = parse_path(field)
    if node is None or steps is None:
        return None  # unknown sources and malformed paths are the schema's to report
    where = ""
    for name, code in steps:
        if node is OPEN:
            return None
        if not isinstance(node, Mapping):
            return f"{where!r} is a single value in {source}: it has no field {name!r}"
        if name not in node:
            close = difflib.get_close_matches(name, list(node), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            under = f" under {where!r}" if where else ""
            return f"unknown field {name!r}{under} in {source} (check its spelling){hint}"
        where = f"{where}.{name}" if where else name
        node = node[name]
        if code is not None and node is not OPEN:
            return f"{where!r} is not a list of actions in {source}: [{code}] selects nothing"
    return None
