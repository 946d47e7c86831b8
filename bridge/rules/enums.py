"""The documented enum values of each source's fields, so `wattbridge check` can catch a rule value that
can never match (`to = "CHARGIN"`, `"COMPLETE"` on a WattShift status, `"heatpump"` on `skip_to`): such a
rule loads, never fires, and never says so.

Only fields whose full value list the docs give are here (providers.md, providers-wave2.md); a field whose
enum was NOT FOUND (`lifecycle_state`, `actual_steering_state`, command `verification.status`) accepts
anything. Paths are the rule's `field` paths.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping, Sequence

from bridge.providers.podero_models import KINDS, SKIP_TO_VALUES, STATUS_VALUES
from bridge.providers.realto_models import COMMAND_STATUSES, COMMAND_TYPES, REQUEST_STATUSES

_DEVICE_STATUSES = dict.fromkeys(("connection_status", "monitoring_status", "steering_status"), STATUS_VALUES)
_ENTITY_TYPES = (
    "EV", "PV", "SmartMeter", "RetrofitMeter", "Battery", "ChargePoint", "HeatPump", "SolarPlant", "Meter",
    "Inverter",
)  # fmt: skip

ENUMS: Mapping[str, Mapping[str, tuple[str, ...]]] = {
    "podero.wallbox": {
        **_DEVICE_STATUSES,
        "mode": ("READY", "PLUGGED_IN", "CHARGING", "UNAVAILABLE", "UNKNOWN"),
        "connection": ("online", "offline", "never_connected"),
    },
    "podero.heat_pump": {
        **_DEVICE_STATUSES,
        "current_mode": ("min", "low", "mid", "max"),
        "optimization_level": ("Low", "Mid", "Max"),
    },
    "podero.electric_vehicle": {
        **_DEVICE_STATUSES,
        "boost_state": ("available", "requested", "ongoing", "unavailable"),
    },
    "podero.inverter": {
        **_DEVICE_STATUSES,
        "battery_policy": ("Optimize self consumption", "Optimize grid balancing", "Export all"),
    },
    "podero.onboarding_session": {
        "status": ("pending", "finished", "expired"),
        "skip_to": SKIP_TO_VALUES,
        "device.source": tuple(k.source for k in KINDS),
    },
    "realto.guided_onboarding_session": {
        "onboardingRequest.status": REQUEST_STATUSES,
        "onboardingRequest.requestType": ("Entity", "Collective"),
        "onboardingRequest.action.type": ("Redirect", "Consent"),
        "onboardingRequest.data.entity.type": _ENTITY_TYPES,
        "onboardingRequest.data.entity.information.type": _ENTITY_TYPES,
        "onboardingRequest.data.collective.type": ("Household", "Community"),
    },
    "realto.command": {"status": COMMAND_STATUSES, "type": COMMAND_TYPES},
    "wattshift.onboarding": {
        "status": ("NOT_STARTED", "IN_PROGRESS", "COMPLETED", "ERROR"),
        "eligibilityStatus": ("eligible", "notEligible"),
    },
    "bridge.provider": {"status": ("ok", "degraded", "down")},
    "bridge.channel": {"status": ("ok", "paused", "probing", "disabled")},
}

# Words people write for a value that is spelt otherwise (compared without case and punctuation).
_SYNONYMS: Mapping[str, Mapping[str, str]] = {
    "skip_to": {
        "heatpump": "hp", "heatpumps": "hp", "electricvehicle": "ev", "car": "ev", "vehicle": "ev",
        "wallbox": "wb", "charger": "wb", "inverter": "iv", "solarinverter": "iv", "solar": "iv",
    },
}  # fmt: skip
_FOLD = re.compile(r"[^a-z0-9]")


def _fold(text: str) -> str:
    return _FOLD.sub("", text.lower())


def suggestion(path: str, value: str, allowed: Sequence[str]) -> str | None:
    """The documented value meant by `value`, when one is close enough to say so."""
    folded = _fold(value)
    same = [a for a in allowed if _fold(a) == folded]
    if same:
        return same[0]  # a case or punctuation slip: "completed", "Plugged-In"
    synonym = _SYNONYMS.get(path.rpartition(".")[2], {}).get(folded)
    if synonym is not None:
        return synonym
    by_fold = {_fold(a): a for a in allowed}
    close = difflib.get_close_matches(folded, list(by_fold), n=1, cutoff=0.6)
    return by_fold[close[0]] if close else None


def value_problems(source: str, path: str, key: str, given: object) -> list[str]:
    """Why each value in `given` (a rule's `to`, `from`, … value or list) can never match `path`."""
    allowed = ENUMS.get(source, {}).get(path)
    if allowed is None:
        return []
    values = given if isinstance(given, list) else [given]
    out = []
    for value in values:
        if isinstance(value, str) and value in allowed:
            continue
        listed = ", ".join(allowed)
        hint = suggestion(path, value, allowed) if isinstance(value, str) else None
        mean = f"; did you mean {hint!r}?" if hint else ""
        out.append(f"{value!r} is not a documented value of {path} in {source} ({listed}){mean}")
    return out
