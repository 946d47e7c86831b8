"""re.alto platform API: guided onboarding sessions (every one, as one complete paged listing, and/or
watched by id until their request is terminal) and entity commands (watched by id until terminal, and/or
listed per entity over a sliding trigger-time window).

Lists are paged with `pageSize` + an opaque `continuationToken` (providers.md §2.2). Only a listing read
to its last page is returned: a failure on any page fails the whole poll, so half a listing can never
read as sessions disappearing. The payload models (`realto_models.py`) are gates only; what is stored is
each body as sent.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from collections.abc import Set as AbstractSet
from typing import Any
from urllib.parse import quote

import aiohttp
import structlog
from pydantic import ValidationError

from bridge import errors
from bridge.clock import Clock
from bridge.config.models import RealtoConfig
from bridge.logs import register_secrets
from bridge.model import Observation, ResourceKey, Watch
from bridge.providers.auth import OAuth2Middleware, TokenRequest
from bridge.providers.base import FetchResult, WatchGroup, collect_outcomes
from bridge.providers.http import Lean, ProviderHttp
from bridge.providers.realto_models import (
    COMMAND_TERMINAL,
    REQUEST_TERMINAL,
    Command,
    GuidedOnboardingSession,
    SessionPage,
    _Payload,
)

log = structlog.get_logger(__name__)

SOURCE_SESSION = "realto.guided_onboarding_session"
SOURCE_COMMAND = "realto.command"
SESSIONS_PATH = "/v1/guided-onboarding-sessions"
AUTH_PATH = "/v1/authentication"
# A provider whose continuation tokens never end must not keep a poll running forever.
MAX_PAGES = 10_000


def _validate(model: type[_Payload], body: Any, where: str) -> None:
    try:
        model.model_validate(body)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        loc = ".".join(str(p) for p in first["loc"]) or "(body)"
        raise errors.ProviderSchemaViolation(
            f"{where}: response violates the schema at {loc}: {first['msg']} ({exc.error_count()} problem(s))"
        ) from exc


class RealtoProvider:
    """Guided onboarding sessions (listed, or by id) and entity commands (by id, or per entity window)."""

    kind = "realto"

    def __init__(
        self,
        name: str,
        cfg: RealtoConfig,
        *,
        session: aiohttp.ClientSession,
        clock: Clock,
        lean: Lean | None = None,
    ) -> None:
        self.name = name
        self.cfg = cfg
        self._clock = clock
        self._base = cfg.base_url.rstrip("/")
        register_secrets([cfg.client_id, cfg.client_secret])
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
    def token_request(cfg: RealtoConfig) -> TokenRequest:
        """POST `{base_url}/v1/authentication` with JSON `{clientId, clientSecret}` (providers.md §2.1)."""
        return TokenRequest(
            url=f"{cfg.base_url.rstrip('/')}{AUTH_PATH}",
            grant="realto",
            client_id=cfg.client_id.get_secret_value(),
            client_secret=cfg.client_secret.get_secret_value(),
        )

    @classmethod
    def middleware(cls, name: str, cfg: RealtoConfig, clock: Clock) -> OAuth2Middleware:
        return OAuth2Middleware(
            name, cls.token_request(cfg), session_timeout=cfg.timeout.total_seconds(), clock=clock
        )

    def watch_groups(self) -> list[WatchGroup]:
        every = self.cfg.poll_interval
        groups = []
        if self.cfg.list_guided_sessions:
            groups.append(WatchGroup(provider=self.name, name="sessions", interval=every))
        # By-id groups always exist: watches registered at run time need a job to be polled by.
        groups += [
            WatchGroup(
                provider=self.name, name="guided_sessions", interval=every, by_id=True, source=SOURCE_SESSION
            ),
            WatchGroup(
                provider=self.name, name="commands", interval=every, by_id=True, source=SOURCE_COMMAND
            ),
        ]
        if self.cfg.command_entities:
            groups.append(WatchGroup(provider=self.name, name="command_windows", interval=every))
        return groups

    def static_watches(self) -> list[tuple[str, str, dict[str, Any]]]:
        """Commands and guided sessions the config names; the session listing needs no watch."""
        out: list[tuple[str, str, dict[str, Any]]] = [
            (SOURCE_COMMAND, c.command_id, {"entity_id": c.entity_id}) for c in self.cfg.commands
        ]
        out += [(SOURCE_SESSION, sid, {}) for sid in self.cfg.guided_sessions]
        return out

    async def fetch(
        self, group: str, watches: Sequence[Watch] = (), *, skip: AbstractSet[str] = frozenset()
    ) -> FetchResult:
        # Listings read everything in one go (`skip` does not apply); by-id groups leave out what is
        # backing off (bridge/poll/backoff.py).
        if group == "sessions":
            return await self._fetch_listing()
        if group == "command_windows":
            return await self._fetch_windows()
        source = {"guided_sessions": SOURCE_SESSION, "commands": SOURCE_COMMAND}.get(group)
        if source is None:
            raise ValueError(f"unknown watch group {group!r}")
        todo = [w for w in watches if w.key.source == source and w.key.resource_id not in skip]
        result = await self._fetch_by_id(todo)
        result.skipped = frozenset(skip)
        return result

    async def _fetch_listing(self) -> FetchResult:
        sessions = await self._list_pages(self._base + SESSIONS_PATH, {}, GuidedOnboardingSession, "sessions")
        now = self._clock.now()
        observations = [
            Observation(
                key=ResourceKey(source=SOURCE_SESSION, provider=self.name, resource_id=sid),
                state=body,
                observed_at=now,
            )
            for sid, body in sessions.items()
        ]
        return FetchResult(observations=observations, complete_sources=frozenset({SOURCE_SESSION}))

    async def _fetch_windows(self) -> FetchResult:
        """Every command of each configured entity triggered since `now - command_window`."""
        now = self._clock.now()
        start = (now - self.cfg.command_window).isoformat().replace("+00:00", "Z")
        found: dict[str, dict[str, Any]] = {}
        for entity in self.cfg.command_entities:
            url = f"{self._base}/v1/entities/{quote(entity, safe='')}/commands"
            found.update(await self._list_pages(url, {"start": start}, Command, "commands"))
        observations = [
            Observation(
                key=ResourceKey(source=SOURCE_COMMAND, provider=self.name, resource_id=cid),
                state=body,
                observed_at=now,
            )
            for cid, body in found.items()
        ]
        result = FetchResult(observations=observations, window_sources=frozenset({SOURCE_COMMAND}))
        for cid, body in found.items():
            if body.get("status") in COMMAND_TERMINAL:
                result.terminal[cid] = str(body["status"]).lower()  # ends a by-id watch of it, if any
        return result

    async def _fetch_by_id(self, watches: Sequence[Watch]) -> FetchResult:
        result = FetchResult()
        ids = [w.key.resource_id for w in watches]
        outcomes = await asyncio.gather(*(self._read_one(w) for w in watches), return_exceptions=True)
        collect_outcomes(result, ids, outcomes)
        for obs in result.observations:
            end = _terminal(obs.key.source, obs.state)
            if end is not None:
                result.terminal[obs.key.resource_id] = end
        return result

    async def _read_one(self, watch: Watch) -> Observation:
        key = watch.key
        rid = quote(key.resource_id, safe="")
        if key.source == SOURCE_COMMAND:
            entity = quote(str(watch.params.get("entity_id", "")), safe="")
            url, endpoint = f"/v1/entities/{entity}/commands/{rid}", "/v1/entities/{entity}/commands/{id}"
            model: type[_Payload] = Command
        else:
            url, endpoint, model = (
                f"{SESSIONS_PATH}/{rid}",
                f"{SESSIONS_PATH}/{{id}}",
                GuidedOnboardingSession,
            )
        try:
            body = await self.http.request_json("GET", self._base + url, endpoint=endpoint)
        except errors.ProviderNotFound:
            return Observation(key=key, state=None, observed_at=self._clock.now())
        _validate(model, body, f"{self.name} GET {endpoint} {key.resource_id}")
        return Observation(key=key, state=body, observed_at=self._clock.now())

    async def _list_pages(
        self, url: str, query: dict[str, str], model: type[_Payload], what: str
    ) -> dict[str, dict[str, Any]]:
        """Item id → body, from the first page to the last; any failing page raises."""
        items: dict[str, dict[str, Any]] = {}
        seen_tokens: set[str] = set()
        token: str | None = None
        path = url[len(self._base) :]
        for page in range(1, MAX_PAGES + 1):
            where = f"{self.name} GET {path} (page {page})"
            params = {**query, "pageSize": str(self.cfg.page_size)}
            if token is not None:
                params["continuationToken"] = token  # opaque: passed on exactly as received
            body = await self.http.request_json("GET", url, endpoint=f"{path} (page {page})", params=params)
            _validate(SessionPage, body, where)
            for i, item in enumerate(body.get("data") or []):
                _validate(model, item, f"{where} item {i}")
                items[item["id"]] = item
            meta = body.get("meta") or {}
            token = meta.get("continuationToken")
            if not token:
                log.debug("realto.listed", provider=self.name, what=what, pages=page, items=len(items))
                return items
            if token in seen_tokens:
                raise errors.ProviderMalformed(
                    f"{where}: the continuation token repeats an earlier one; the listing would never end"
                )
            seen_tokens.add(token)
        raise errors.ProviderMalformed(
            f"{self.name} GET {path}: still more pages after {MAX_PAGES}; listing abandoned"
        )

    async def close(self) -> None:
        await self.http.close()


def _terminal(source: str, state: dict[str, Any] | None) -> str | None:
    """Why a by-id watch ends: gone (404), or a terminal command / onboarding request status."""
    if state is None:
        return "not_found"
    if source == SOURCE_COMMAND:
        status = state.get("status")
        return str(status).lower() if status in COMMAND_TERMINAL else None
    request = state.get("onboardingRequest")
    status = request.get("status") if isinstance(request, dict) else None
    if status in REQUEST_TERMINAL:
        return str(status).lower()
    return "expired" if state.get("expired") is True else None
