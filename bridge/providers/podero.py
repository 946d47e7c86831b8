"""Podero Partner API v2.0: devices of the four families (wallboxes, heat pumps, electric vehicles,
inverters; by id or discovered per user), and device onboarding sessions.

The payload models (`podero_models.py`) are a gate: a body that violates one is a schema violation (a
failed poll); what we store and diff is the body as sent, with older field names renamed to current ones.
A finished onboarding session names the device it created (`device`), which is watched from then on.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from collections.abc import Set as AbstractSet
from datetime import UTC, date, datetime, time
from functools import partial
from typing import Any
from urllib.parse import quote

import aiohttp
import structlog
from pydantic import ValidationError
from yarl import URL

from bridge import errors
from bridge.clock import Clock
from bridge.config.models import PoderoConfig
from bridge.model import Observation, ResourceKey, Watch
from bridge.providers.auth import OAuth2Middleware, TokenRequest
from bridge.providers.base import FetchResult, WatchGroup, collect_outcomes
from bridge.providers.http import Lean, ProviderHttp
from bridge.providers.podero_models import (
    KIND_BY_GROUP,
    KIND_BY_SKIP_TO,
    KINDS,
    WALLBOX,
    Action,
    DeviceDetail,
    DeviceKind,
    DeviceModel,
    ElectricVehicleDetail,
    HeatPumpDetail,
    InverterDetail,
    OnboardingSession,
    Owner,
    WallboxDetail,
    _Payload,
    normalise,
)

log = structlog.get_logger(__name__)

API = "/api/partners/v2.0"
SOURCE_WALLBOX = "podero.wallbox"
SOURCE_HEAT_PUMP = "podero.heat_pump"
SOURCE_ELECTRIC_VEHICLE = "podero.electric_vehicle"
SOURCE_INVERTER = "podero.inverter"
SOURCE_ONBOARDING = "podero.onboarding_session"
DEVICE_SOURCES = tuple(k.source for k in KINDS)
__all__ = (
    "Action", "DeviceDetail", "DeviceModel", "ElectricVehicleDetail", "HeatPumpDetail", "InverterDetail",
    "OnboardingSession", "Owner", "PoderoProvider", "WallboxDetail",
)  # fmt: skip

_NOT_READ = errors.ProviderError("not read")  # a placeholder every worker overwrites


ENDPOINTS = {k.source: f"{API}/org/…/{k.path}/{{id}}" for k in KINDS}
_UNRESERVED = re.compile(r"[A-Za-z0-9._~-]+")


def _quoted(segment: str) -> str:
    """A path segment percent-encoded; ids (UUIDs) need none, and quote() costs a poll 2 µs each."""
    return segment if _UNRESERVED.fullmatch(segment) else quote(segment, safe="")


def _validate(model: type[_Payload], body: Any, where: str) -> None:
    try:
        model.model_validate(body)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        loc = ".".join(str(p) for p in first["loc"]) or "(body)"
        raise errors.ProviderSchemaViolation(
            f"{where}: response violates the schema at {loc}: {first['msg']} ({exc.error_count()} problem(s))"
        ) from exc


def with_status(session: dict[str, Any], now: datetime) -> dict[str, Any]:
    """The session plus a derived `status` (Podero has none): pending, finished or expired.

    Finished = `object_id` is set (the device was created); a finished session also gets `device`
    (`{id, source}`, the family from `skip_to`). Expired = the end of `expiration_date` passed with no
    `object_id` ("valid until the end of the next day"). Both are terminal.
    """
    status = "pending"
    if session.get("object_id"):
        status = "finished"
    else:
        expires = session.get("expiration_date")
        try:
            end = (
                datetime.combine(date.fromisoformat(str(expires)), time.max, tzinfo=UTC) if expires else None
            )
        except ValueError:
            end = None
        if end is not None and now > end:
            status = "expired"
    out = {**session, "status": status}
    if status == "finished":
        kind = KIND_BY_SKIP_TO.get(str(session.get("skip_to")))
        # The device the session created; `source` is None when `skip_to` names no known family.
        out["device"] = {"id": session["object_id"], "source": kind.source if kind else None}
    return out


class PoderoProvider:
    """Polls devices by id with `include_deleted=true` (a soft delete is a change, not a 404), or lists
    every user's devices (`discover`), one watch group per family; and onboarding sessions by id."""

    kind = "podero"

    def __init__(
        self,
        name: str,
        cfg: PoderoConfig,
        *,
        session: aiohttp.ClientSession,
        clock: Clock,
        lean: Lean | None = None,
    ) -> None:
        self.name = name
        self.cfg = cfg
        self._clock = clock
        self._base = cfg.base_url.rstrip("/")
        self._users_url = f"{self._base}{API}/org/{quote(cfg.org_id, safe='')}/users/"
        self.http = ProviderHttp(
            name,
            session,
            timeout=cfg.timeout.total_seconds(),
            max_body_bytes=cfg.max_body_bytes,
            max_requests_per_second=cfg.max_requests_per_second,
            max_concurrency=cfg.max_concurrency,
            clock=clock,
            retry_after_cap=cfg.backoff_cap.total_seconds(),
            lean=lean,
        )

    @staticmethod
    def token_request(cfg: PoderoConfig) -> TokenRequest:
        """Client credentials on `/oauth2/token/` (documented), or the password grant on
        `/api/partners/v2.0/auth/token`; `token_url` moves either (the seeds' OpenAPI has both flows
        on `/api/partners/v2.0/auth/token`)."""
        base = cfg.base_url.rstrip("/")
        if cfg.client_id is not None and cfg.client_secret is not None:
            return TokenRequest(
                url=cfg.token_url or f"{base}/oauth2/token/",
                grant="client_credentials",
                client_id=cfg.client_id.get_secret_value(),
                client_secret=cfg.client_secret.get_secret_value(),
            )
        if cfg.username is not None and cfg.password is not None:
            return TokenRequest(
                url=cfg.token_url or f"{base}{API}/auth/token",
                grant="password",
                username=cfg.username.get_secret_value(),
                password=cfg.password.get_secret_value(),
            )
        raise errors.ProviderAuthError("podero: configure client_id + client_secret or username + password")

    @classmethod
    def middleware(cls, name: str, cfg: PoderoConfig, clock: Clock) -> OAuth2Middleware:
        return OAuth2Middleware(
            name, cls.token_request(cfg), session_timeout=cfg.timeout.total_seconds(), clock=clock
        )

    def watch_groups(self) -> list[WatchGroup]:
        # Every group always exists: watches registered at run time need a job to be polled by.
        groups = [
            WatchGroup(
                provider=self.name,
                name=kind.group,
                interval=self.cfg.poll_interval,
                by_id=not self.cfg.discover,  # a discovery listing must be read whole
                source=kind.source,
            )
            for kind in KINDS
        ]
        groups.append(
            WatchGroup(
                provider=self.name,
                name="onboarding",
                interval=self.cfg.poll_interval,
                by_id=True,
                source=SOURCE_ONBOARDING,
            )
        )
        return groups

    def static_watches(self) -> list[tuple[str, str, dict[str, Any]]]:
        """Watches the config declares: (source, resource id, params), registered in the store at start."""
        out: list[tuple[str, str, dict[str, Any]]] = []
        for kind in KINDS:
            for w in getattr(self.cfg, kind.group):
                out.append((kind.source, getattr(w, kind.id_param), {"user_id": w.user_id}))
        out += [(SOURCE_ONBOARDING, sid, {}) for sid in self.cfg.onboarding_sessions]
        return out

    async def fetch(
        self, group: str, watches: Sequence[Watch] = (), *, skip: AbstractSet[str] = frozenset()
    ) -> FetchResult:
        # A resource backing off (bridge/poll/backoff.py) is not read by id this time; a listing
        # still shows it (one request reads them all).
        watches = [w for w in watches if w.key.resource_id not in skip]
        kind = KIND_BY_GROUP.get(group)
        if kind is not None:
            result = await self._fetch_devices(kind, [w for w in watches if w.key.source == kind.source])
        elif group == "onboarding":
            result = await self._fetch_onboarding([w for w in watches if w.key.source == SOURCE_ONBOARDING])
        else:
            raise ValueError(f"unknown watch group {group!r}")
        result.skipped = frozenset(skip)
        return result

    async def _fetch_devices(self, kind: DeviceKind, watches: Sequence[Watch]) -> FetchResult:
        result = FetchResult()
        seen: set[str] = set()
        if self.cfg.discover:
            # A listing failure fails the poll: half a listing must never read as disappearances.
            result.observations = await self._discover(kind)
            result.complete_sources = frozenset({kind.source})
            seen = {o.key.resource_id for o in result.observations}
        todo = [w for w in watches if w.key.resource_id not in seen and "user_id" in w.params]
        outcomes: list[Observation | BaseException] = [_NOT_READ] * len(todo)

        # A pool of `max_concurrency` workers, not one task per device: thousands of tasks queued on
        # the concurrency semaphore cost more CPU than the requests they wait for.
        async def worker(start: int) -> None:
            for i in range(start, len(todo), width):
                w = todo[i]
                try:
                    outcomes[i] = await self._device(kind, str(w.params["user_id"]), w.key.resource_id)
                except Exception as exc:  # sorted by collect_outcomes: a ProviderError fails one device
                    outcomes[i] = exc

        width = max(1, min(self.cfg.max_concurrency, len(todo)))
        await asyncio.gather(*(worker(k) for k in range(width)))
        collect_outcomes(result, [w.key.resource_id for w in todo], outcomes)
        return result

    async def _discover(self, kind: DeviceKind) -> list[Observation]:
        """Every device of one family of every user of the organisation (plain JSON arrays, no paging)."""
        users = await self.http.request_json(
            "GET", f"{self._base}{API}/org/{self.cfg.org_id}/users", endpoint=f"{API}/org/{{org}}/users"
        )
        if not isinstance(users, list):
            raise errors.ProviderSchemaViolation(f"{self.name} GET users: expected a JSON array")
        user_ids = []
        for user in users:
            if not isinstance(user, dict) or not isinstance(user.get("id"), str):
                raise errors.ProviderSchemaViolation(f"{self.name} GET users: an item has no string `id`")
            user_ids.append(user["id"])
        # A TaskGroup, not gather: the first failed listing fails the poll anyway, so it cancels the
        # sibling listings at once instead of spending the provider's rate limit on them.
        try:
            async with asyncio.TaskGroup() as group:
                tasks = [group.create_task(self._user_devices(kind, uid)) for uid in user_ids]
        except ExceptionGroup as failed:
            # Callers expect the one ProviderError that gather raised, not a group: the first failure.
            raise failed.exceptions[0] from None
        now = self._clock.now()
        where = f"{self.name} GET user {kind.path}"
        observations = []
        for task in tasks:
            for raw in task.result():
                body = normalise(raw, kind.source)
                _validate(kind.model, body, where)
                if not isinstance(body.get("id"), str):
                    raise errors.ProviderSchemaViolation(f"{where}: an item has no `id`")
                key = ResourceKey(source=kind.source, provider=self.name, resource_id=body["id"])
                observations.append(Observation(key=key, state=body, observed_at=now))
        return observations

    async def _user_devices(self, kind: DeviceKind, user_id: str) -> list[dict[str, Any]]:
        body = await self.http.request_json(
            "GET",
            f"{self._base}{API}/org/{self.cfg.org_id}/users/{user_id}/{kind.path}",
            endpoint=f"{API}/org/{{org}}/users/{{user}}/{kind.path}",
            params={"include_deleted": "true"},
        )
        if not isinstance(body, list) or not all(isinstance(b, dict) for b in body):
            raise errors.ProviderSchemaViolation(
                f"{self.name} GET user {kind.path}: expected an array of objects"
            )
        return body

    async def _fetch_onboarding(self, watches: Sequence[Watch]) -> FetchResult:
        result = FetchResult()
        ids = [w.key.resource_id for w in watches]
        outcomes = await asyncio.gather(*(self._session(sid) for sid in ids), return_exceptions=True)
        collect_outcomes(result, ids, outcomes)
        for obs in result.observations:
            state = obs.state or {}
            status = state.get("status")
            if obs.state is None:
                result.terminal[obs.key.resource_id] = "not_found"
            elif status in ("finished", "expired"):
                result.terminal[obs.key.resource_id] = str(status)
            watch = self._device_watch(state, obs.observed_at) if status == "finished" else None
            if watch is not None:
                result.start_watches[obs.key.resource_id] = watch
        return result

    def _device_watch(self, session: dict[str, Any], now: datetime) -> Watch | None:
        """The watch on the device a finished session created, when its family is known."""
        device = session.get("device")
        if not self.cfg.watch_onboarded_devices or not isinstance(device, dict) or not device.get("source"):
            if isinstance(device, dict) and not device.get("source"):
                log.warning(
                    "podero.onboarded_device_kind_unknown",
                    provider=self.name,
                    session=session.get("id"),
                    skip_to=session.get("skip_to"),
                )
            return None
        key = ResourceKey(source=str(device["source"]), provider=self.name, resource_id=str(device["id"]))
        return Watch(key=key, params={"user_id": str(session.get("user"))}, created_at=now)

    async def _session(self, session_id: str) -> Observation:
        key = ResourceKey(source=SOURCE_ONBOARDING, provider=self.name, resource_id=session_id)
        try:
            body = await self.http.request_json(
                "GET",
                f"{self._base}{API}/device-onboarding/{session_id}",
                endpoint=f"{API}/device-onboarding/{{id}}",
            )
        except errors.ProviderNotFound:
            return Observation(key=key, state=None, observed_at=self._clock.now())
        if not isinstance(body, dict):
            raise errors.ProviderSchemaViolation(
                f"{self.name} GET onboarding session: expected a JSON object"
            )
        _validate(OnboardingSession, body, f"{self.name} GET onboarding session {session_id}")
        return Observation(key=key, state=with_status(body, self._clock.now()), observed_at=self._clock.now())

    async def _device(self, kind: DeviceKind, user_id: str, device_id: str) -> Observation:
        key = ResourceKey(source=kind.source, provider=self.name, resource_id=device_id)
        # Built pre-encoded (the hot path of a large fleet): ids are quoted once here, never re-parsed.
        url = URL(
            f"{self._users_url}{_quoted(user_id)}/{kind.path}/{_quoted(device_id)}?include_deleted=true",
            encoded=True,
        )
        try:
            body = await self.http.request_json("GET", url, endpoint=ENDPOINTS[kind.source])
        except errors.ProviderNotFound:
            return Observation(key=key, state=None, observed_at=self._clock.now())
        if not isinstance(body, dict):
            raise errors.ProviderSchemaViolation(f"{self.name} GET {kind.noun}: expected a JSON object")
        if kind is not WALLBOX:
            body = normalise(body, kind.source)
        # The schema check runs in the poller, and only when a meaningful field moved: most polls of a
        # fleet change nothing, and the body they read equals, but for volatile fields, one that passed.
        return Observation(
            key=key,
            state=body,
            observed_at=self._clock.now(),
            check=partial(_validate, kind.model, body, f"{self.name} GET {kind.noun} {device_id}"),
        )

    async def close(self) -> None:
        await self.http.close()
