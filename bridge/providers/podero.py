"""Podero Partner API v2.0: wallboxes (by id or discovered), and device onboarding sessions.

Payload models follow seed 002 (WallboxDetailOutput) and tolerate the older seed-001 shape and fields
Podero adds later (`extra="allow"`, every non-core field optional). The model is a gate: a body that
violates it is a schema violation (a failed poll); what we store and diff is the body as sent.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from collections.abc import Set as AbstractSet
from datetime import UTC, date, datetime, time
from functools import partial
from typing import Any, Literal
from urllib.parse import quote

import aiohttp
import structlog
from pydantic import BaseModel, ConfigDict, ValidationError
from yarl import URL

from bridge import errors
from bridge.clock import Clock
from bridge.config.models import PoderoConfig
from bridge.model import Observation, ResourceKey, Watch
from bridge.providers.auth import OAuth2Middleware, TokenRequest
from bridge.providers.base import FetchResult, WatchGroup
from bridge.providers.http import ProviderHttp

log = structlog.get_logger(__name__)

API = "/api/partners/v2.0"
SOURCE_WALLBOX = "podero.wallbox"
SOURCE_ONBOARDING = "podero.onboarding_session"

Status = Literal["ok", "warning", "error", "unknown"]
_NOT_READ = errors.ProviderError("not read")  # a placeholder every worker overwrites


class _Payload(BaseModel):
    model_config = ConfigDict(extra="allow")


class DeviceType(_Payload):
    short_name: str
    long_name: str


class DeviceModel(_Payload):
    device_type: DeviceType | None = None
    manufacturer: str | None = None
    model: str | None = None


class Owner(_Payload):
    id: str
    email: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    external_id: str | None = None


class ResolutionLink(_Payload):
    url: str
    required_parameters: list[str] = []


class Action(_Payload):
    """Any action item; unknown future codes are kept (only `code` is required)."""

    code: str
    resolution_link: ResolutionLink | None = None


class WallboxDetail(_Payload):
    """WallboxDetailOutput (seed 002), lenient towards seed 001 and additions."""

    id: str | None = None
    connection_status: Status | str
    monitoring_status: Status | str
    steering_status: Status | str
    device_model: DeviceModel | None = None
    owner: Owner
    created_at: datetime
    updated_at: datetime
    deleted_at: datetime | None = None
    mode: str | None = None
    connection: str | None = None
    is_authenticated: bool | None = False
    is_plugged_in: bool | None = False
    is_charging: bool | None = False
    is_fully_charged: bool | None = False
    charge_rate_w: float | None = None
    charge_time_remaining: int | None = None
    action_needed: bool = False
    has_notification: bool = False
    actions: list[Action] = []


class OnboardingSession(_Payload):
    """DeviceOnboardingSessionOutput (seed 000). No status field: `object_id` set = finished."""

    id: str
    user: str
    authentication_url: str
    success_url: str
    cancel_url: str
    expiration_date: str | None = None
    object_id: str | None = None


WALLBOX_ENDPOINT = f"{API}/org/…/wallboxes/{{id}}"
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

    Finished = `object_id` is set (the device was created). Expired = the end of `expiration_date`
    passed with no `object_id` ("valid until the end of the next day"). Both are terminal.
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
    return {**session, "status": status}


def _collect(
    result: FetchResult, ids: Sequence[str], outcomes: Sequence[Observation | BaseException]
) -> None:
    """Sort gathered per-resource outcomes into observations and failures."""
    for resource_id, outcome in zip(ids, outcomes, strict=True):
        if isinstance(outcome, errors.ProviderError):
            result.failures[resource_id] = outcome
        elif isinstance(outcome, BaseException):
            raise outcome
        else:
            result.observations.append(outcome)


class PoderoProvider:
    """Polls the configured wallboxes with `include_deleted=true` (a soft delete is a change, not a 404)."""

    kind = "podero"

    def __init__(self, name: str, cfg: PoderoConfig, *, session: aiohttp.ClientSession, clock: Clock) -> None:
        self.name = name
        self.cfg = cfg
        self._clock = clock
        self._base = cfg.base_url.rstrip("/")
        self._wallboxes_url = f"{self._base}{API}/org/{quote(cfg.org_id, safe='')}/users/"
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

    @staticmethod
    def token_request(cfg: PoderoConfig) -> TokenRequest:
        """Client credentials on `/oauth2/token/` (documented), or the password grant."""
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
        # Both groups always exist: watches registered at run time need a job to be polled by.
        return [
            WatchGroup(
                provider=self.name,
                name="wallboxes",
                interval=self.cfg.poll_interval,
                by_id=not self.cfg.discover,  # a discovery listing must be read whole
                source=SOURCE_WALLBOX,
            ),
            WatchGroup(
                provider=self.name,
                name="onboarding",
                interval=self.cfg.poll_interval,
                by_id=True,
                source=SOURCE_ONBOARDING,
            ),
        ]

    def static_watches(self) -> list[tuple[str, str, dict[str, Any]]]:
        """Watches the config declares: (source, resource id, params), registered in the store at start."""
        out: list[tuple[str, str, dict[str, Any]]] = [
            (SOURCE_WALLBOX, w.wallbox_id, {"user_id": w.user_id}) for w in self.cfg.wallboxes
        ]
        out += [(SOURCE_ONBOARDING, sid, {}) for sid in self.cfg.onboarding_sessions]
        return out

    async def fetch(
        self, group: str, watches: Sequence[Watch] = (), *, skip: AbstractSet[str] = frozenset()
    ) -> FetchResult:
        # A resource backing off (bridge/poll/backoff.py) is not read by id this time; a listing
        # still shows it (one request reads them all).
        watches = [w for w in watches if w.key.resource_id not in skip]
        if group == "wallboxes":
            result = await self._fetch_wallboxes([w for w in watches if w.key.source == SOURCE_WALLBOX])
        elif group == "onboarding":
            result = await self._fetch_onboarding([w for w in watches if w.key.source == SOURCE_ONBOARDING])
        else:
            raise ValueError(f"unknown watch group {group!r}")
        result.skipped = frozenset(skip)
        return result

    async def _fetch_wallboxes(self, watches: Sequence[Watch]) -> FetchResult:
        result = FetchResult()
        seen: set[str] = set()
        if self.cfg.discover:
            # A listing failure fails the poll: half a listing must never read as disappearances.
            result.observations = await self._discover()
            result.complete_sources = frozenset({SOURCE_WALLBOX})
            seen = {o.key.resource_id for o in result.observations}
        todo = [w for w in watches if w.key.resource_id not in seen and "user_id" in w.params]
        outcomes: list[Observation | BaseException] = [_NOT_READ] * len(todo)

        # A pool of `max_concurrency` workers, not one task per wallbox: thousands of tasks queued on
        # the concurrency semaphore cost more CPU than the requests they wait for.
        async def worker(start: int) -> None:
            for i in range(start, len(todo), width):
                w = todo[i]
                try:
                    outcomes[i] = await self._wallbox(str(w.params["user_id"]), w.key.resource_id)
                except Exception as exc:  # sorted by _collect: a ProviderError fails one wallbox
                    outcomes[i] = exc

        width = max(1, min(self.cfg.max_concurrency, len(todo)))
        await asyncio.gather(*(worker(k) for k in range(width)))
        _collect(result, [w.key.resource_id for w in todo], outcomes)
        return result

    async def _discover(self) -> list[Observation]:
        """Every wallbox of every user of the organisation (plain JSON arrays, no paging)."""
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
                tasks = [group.create_task(self._user_wallboxes(uid)) for uid in user_ids]
        except ExceptionGroup as failed:
            # Callers expect the one ProviderError that gather raised, not a group: the first failure.
            raise failed.exceptions[0] from None
        lists = [task.result() for task in tasks]
        now = self._clock.now()
        observations = []
        for boxes in lists:
            for body in boxes:
                _validate(WallboxDetail, body, f"{self.name} GET user wallboxes")
                if not isinstance(body.get("id"), str):
                    raise errors.ProviderSchemaViolation(
                        f"{self.name} GET user wallboxes: an item has no `id`"
                    )
                key = ResourceKey(source=SOURCE_WALLBOX, provider=self.name, resource_id=body["id"])
                observations.append(Observation(key=key, state=body, observed_at=now))
        return observations

    async def _user_wallboxes(self, user_id: str) -> list[dict[str, Any]]:
        body = await self.http.request_json(
            "GET",
            f"{self._base}{API}/org/{self.cfg.org_id}/users/{user_id}/wallboxes",
            endpoint=f"{API}/org/{{org}}/users/{{user}}/wallboxes",
            params={"include_deleted": "true"},
        )
        if not isinstance(body, list) or not all(isinstance(b, dict) for b in body):
            raise errors.ProviderSchemaViolation(
                f"{self.name} GET user wallboxes: expected an array of objects"
            )
        return body

    async def _fetch_onboarding(self, watches: Sequence[Watch]) -> FetchResult:
        result = FetchResult()
        ids = [w.key.resource_id for w in watches]
        outcomes = await asyncio.gather(*(self._session(sid) for sid in ids), return_exceptions=True)
        _collect(result, ids, outcomes)
        for obs in result.observations:
            status = (obs.state or {}).get("status")
            if obs.state is None:
                result.terminal[obs.key.resource_id] = "not_found"
            elif status in ("finished", "expired"):
                result.terminal[obs.key.resource_id] = str(status)
        return result

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

    async def _wallbox(self, user_id: str, wallbox_id: str) -> Observation:
        key = ResourceKey(source=SOURCE_WALLBOX, provider=self.name, resource_id=wallbox_id)
        # Built pre-encoded (the hot path of a large fleet): ids are quoted once here, never re-parsed.
        url = URL(
            f"{self._wallboxes_url}{_quoted(user_id)}/wallboxes/{_quoted(wallbox_id)}?include_deleted=true",
            encoded=True,
        )
        try:
            body = await self.http.request_json("GET", url, endpoint=WALLBOX_ENDPOINT)
        except errors.ProviderNotFound:
            return Observation(key=key, state=None, observed_at=self._clock.now())
        if not isinstance(body, dict):
            raise errors.ProviderSchemaViolation(f"{self.name} GET wallbox: expected a JSON object")
        # The schema check runs in the poller, and only when a meaningful field moved: most polls of a
        # fleet change nothing, and the body they read equals, but for volatile fields, one that passed.
        return Observation(
            key=key,
            state=body,
            observed_at=self._clock.now(),
            check=partial(_validate, WallboxDetail, body, f"{self.name} GET wallbox {wallbox_id}"),
        )

    async def close(self) -> None:
        return None
