"""The re.alto platform API simulator, by resource family: `app` (tenant, tokens, routes, faults),
`sessions` (guided onboarding, paged listing), `commands` (entity commands) and `common` (error bodies).
Public entry points are re-exported here, as before the split."""

from __future__ import annotations

from bridge.simulator.realto.app import ROUTES, RealtoSimulator
from bridge.simulator.realto.commands import COMMANDS, STATUSES, TYPES
from bridge.simulator.realto.common import API
from bridge.simulator.realto.sessions import REQUEST_KEYS, SESSION_KEYS, SESSIONS

__all__ = (
    "API", "COMMANDS", "REQUEST_KEYS", "ROUTES", "SESSIONS", "SESSION_KEYS", "STATUSES", "TYPES",
    "RealtoSimulator",
)  # fmt: skip
