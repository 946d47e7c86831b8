"""WattShift API v1.0: the onboarding status of each configured, discovered or watched home.

Every call is a POST with a JSON body and the static `x-ws-api-key` header (providers.md §3). The status
model follows seed 004 and is a gate (`extra="allow"`; only `homeId` and `status` required). What is
stored is the body as sent, with one normalisation: the older docs' `thermostatBrandName` is stored as
`thermostatBrandCode`, so rules see one name whichever spelling the API uses.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from collections.abc import Set as AbstractSet
from typing import Any

import aiohttp
import structlog
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from bridge import errors
from bridge.clock import Clock
from bridge.config.models import WattShiftConfig
from bridge.logs import register_secrets
from bridge.model import Observation, ResourceKey, Watch
from bridge.providers.base import FetchResult, WatchGroup
from bridge.providers.http import ProviderHttp

log = structlog.get_logger(__name__)

SOURCE_ONBOARDING = "wattshift.onboarding"
STATUS_PATH = "/v1/onboarding/status/get"
HOMES_PATH = "/v1/homes/list"
BRAND = "thermostatBrandCode"
LEGACY_BRAND = "thermostatBrandName"
# Statuses after which a watch registered at run time ends (SPEC §3: finished or failed).
TERMINAL_STATUSES = {"COMPLETED": "completed", "ERROR": "error"}


class _Payload(BaseModel):
    # strict: a number where a string belongs (or the reverse) is drift worth failing on, not coercing.
    model_config = ConfigDict(extra="allow", strict=True)


class OnboardingStatus(_Payload):
    """OnboardingStatusResponseDto (seed 004). The seed lists all seven keys as required, but only
    `homeId` and `status` are needed to make sense of a body, so a missing nullable key is tolerated."""

    homeId: str = Field(min_length=1)
    status: str  # NOT_STARTED, IN_PROGRESS, COMPLETED, ERROR; a new value is a change, not an error
    id: str | None = None
    eligibilityStatus: str | None = None
    thermostatBrandCode: str | None = None
    thermostatBrandName: str | None = None  # older docs' spelling of thermostatBrandCode
    zipcode: str | None = None
    step: float | None = None


class Home(_Payload):
    """A `/v1/homes/list` item: only its `id` is used."""

    id: str = Field(min_length=1)


def _validate(model: type[_Payload], body: Any, where: str) -> None:
    try:
        model.model_validate(body)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        loc = ".".join(str(p) for p in first["loc"]) or "(body)"
        raise errors.ProviderSchemaViolation(
            f"{where}: response violates the schema at {loc}: {first['msg']} ({exc.error_count()} problem(s))"
        ) from exc


def normalise_brand(body: dict[str, Any]) -> dict[str, Any]:
    """The body with the legacy `thermostatBrandName` stored as `thermostatBrandCode`, in the same place.

    When both are present a non-null `thermostatBrandCode` wins; the legacy key is always dropped.
    """
    if LEGACY_BRAND not in body:
        return body
    value = body[BRAND] if body.get(BRAND) is not None else body[LEGACY_BRAND]
    out: dict[str, Any] = {}
    for key, item in body.items():
        if key == LEGACY_BRAND:
            if BRAND not in body:
                out[BRAND] = value
        elif key == BRAND:
            out[BRAND] = value
        else:
            out[key] = item
    return out


class WattShiftProvider:
    """Polls `/v1/onboarding/status/get` for each home, concurrently within the provider's limits."""

    kind = "wattshift"

    def __init__(
        self, name: str, cfg: WattShiftConfig, *, session: aiohttp.ClientSession, clock: Clock
    ) -> None:
        self.name = name
        self.cfg = cfg
        self._clock = clock
        self._base = cfg.base_url.rstrip("/")
        register_secrets([cfg.api_key])
        self.http = ProviderHttp(
            name,
            session,
            timeout=cfg.timeout.total_seconds(),
            max_body_bytes=cfg.max_body_bytes,
            max_requests_per_second=cfg.max_requests_per_second,
            max_concurrency=cfg.max_concurrency,
            clock=clock,
            retry_after_cap=cfg.backoff_cap.total_seconds(),
        )

    def _headers(self) -> dict[str, str]:
        # Built per request so the key lives in the config's SecretStr, not in a session default.
        return {"x-ws-api-key": self.cfg.api_key.get_secret_value()}

    def watch_groups(self) -> list[WatchGroup]:
        return [WatchGroup(provider=self.name, name="homes", interval=self.cfg.poll_interval)]

    def static_watches(self) -> list[tuple[str, str, dict[str, Any]]]:
        # Configured homes are polled straight from the config; they never end like a watch does.
        return []

    async def fetch(
        self, group: str, watches: Sequence[Watch] = (), *, skip: AbstractSet[str] = frozenset()
    ) -> FetchResult:
        if group != "homes":
            raise ValueError(f"unknown watch group {group!r}")
        home_ids = list(dict.fromkeys(self.cfg.home_ids))
        if self.cfg.discover:
            # A failing list call fails the poll: half a listing must never read as disappearances.
            home_ids = list(dict.fromkeys([*home_ids, *await self._list_homes()]))
        known = set(home_ids)
        watched = list(
            dict.fromkeys(
                w.key.resource_id
                for w in watches
                if w.key.source == SOURCE_ONBOARDING and w.key.resource_id not in known
            )
        )
        # A home backing off (bridge/poll/backoff.py) is not asked this time: it keeps its snapshot.
        ids = [hid for hid in home_ids + watched if hid not in skip]
        outcomes = await asyncio.gather(*(self._status(hid) for hid in ids), return_exceptions=True)
        result = FetchResult()
        for home_id, outcome in zip(ids, outcomes, strict=True):
            if isinstance(outcome, errors.ProviderError):
                result.failures[home_id] = outcome
            elif isinstance(outcome, BaseException):
                raise outcome
            else:
                result.observations.append(outcome)
        if self.cfg.discover:
            # The listing was read whole: a home it no longer shows is gone. One that failed or was
            # skipped is still listed, so it is not (the poller leaves out `failures` and `skipped`).
            result.complete_sources = frozenset({SOURCE_ONBOARDING})
        result.skipped = frozenset(skip)
        self._end_watches(result, set(watched))
        return result

    @staticmethod
    def _end_watches(result: FetchResult, watched: set[str]) -> None:
        """Watches registered at run time end when the home is gone or its onboarding finished."""
        for obs in result.observations:
            rid = obs.key.resource_id
            if rid not in watched:
                continue
            if obs.state is None:
                result.terminal[rid] = "not_found"
            elif (reason := TERMINAL_STATUSES.get(str(obs.state.get("status")))) is not None:
                result.terminal[rid] = reason

    async def _list_homes(self) -> list[str]:
        where = f"{self.name} POST {HOMES_PATH}"
        body = await self.http.request_json(
            "POST", self._base + HOMES_PATH, endpoint=HOMES_PATH, headers=self._headers()
        )
        if not isinstance(body, list):
            raise errors.ProviderSchemaViolation(f"{where}: expected a JSON array")
        ids = []
        for i, item in enumerate(body):
            _validate(Home, item, f"{where} item {i}")
            ids.append(str(item["id"]))
        return ids

    async def _status(self, home_id: str) -> Observation:
        key = ResourceKey(source=SOURCE_ONBOARDING, provider=self.name, resource_id=home_id)
        where = f"{self.name} POST {STATUS_PATH}"
        try:
            body = await self.http.request_json(
                "POST",
                self._base + STATUS_PATH,
                endpoint=STATUS_PATH,
                json={"homeId": home_id},
                headers=self._headers(),
            )
        except errors.ProviderNotFound:
            return Observation(key=key, state=None, observed_at=self._clock.now())
        _validate(OnboardingStatus, body, where)
        if body["homeId"] != home_id:
            raise errors.ProviderSchemaViolation(f"{where}: answered for another home than the one asked")
        return Observation(key=key, state=normalise_brand(body), observed_at=self._clock.now())

    async def close(self) -> None:
        return None
