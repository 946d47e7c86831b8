"""The Podero Partner API simulator, by resource family: `app` (the organisation, users, tokens,
onboarding sessions, routes), `wallboxes`, `devices` (heat pumps, EVs, inverters) and `common` (ids and
Django Ninja-style request parsing). Public entry points are re-exported here, as before the split."""

from __future__ import annotations

from bridge.simulator.podero.app import ROUTES, PoderoSimulator
from bridge.simulator.podero.common import API, DEFAULT_ORG
from bridge.simulator.podero.devices import FAMILIES, device_uuid
from bridge.simulator.podero.wallboxes import VOLATILE, WALLBOX_KEYS

__all__ = (
    "API", "DEFAULT_ORG", "FAMILIES", "ROUTES", "VOLATILE", "WALLBOX_KEYS", "PoderoSimulator", "device_uuid",
)  # fmt: skip
