"""re.alto platform API: every guided onboarding session, read as one complete, paged listing.

The list is paged with `pageSize` + an opaque `continuationToken` (providers.md §2.2). Only a listing read
to its last page is returned: a failure on any page fails the whole poll, so half a listing can never
read as sessions disappearing. Payload models follow seed 003 and are a gate only (`extra="allow"`,
everything but `id` optional and nullable); what is stored is each session's body as sent.
"""

from __future__ import annotations

from collections.abc import Sequence
from collections.abc import Set as AbstractSet
from typing import Any

import aiohttp
import structlog
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from bridge import errors
from bridge.clock import Clock
from bridge.config.models import RealtoConfig
from bridge.logs import register_secrets
from bridge.model import Observation, ResourceKey, Watch
from bridge.providers.auth import OAuth2Middleware, TokenRequest
from bridge.providers.base import FetchResult, WatchGroup
from bridge.providers.http import ProviderHttp

log = structlog.get_logger(__name__)

SOURCE_SESSION = "realto.guided_onboarding_session"
SESSIONS_PATH = "/v1/guided-onboarding-sessions"
AUTH_PATH = "/v1/authentication"
# A provider whose continuation tokens never end must not keep a poll running forever.
MAX_PAGES = 10_000


class _Payload(BaseModel):
    # strict: a string where a bool or number belongs is drift worth failing on, not coercing.
    model_config = ConfigDict(extra="allow", strict=True)


class RequestAction(_Payload):
    type: str | None = None
    redirectLink: str | None = None
    documentationLink: str | None = None


class RequestError(_Payload):
    code: str | None = None
    message: str | None = None


class Entity(_Payload):
    id: str | None = None
    type: str | None = None


class RequestData(_Payload):
    collective: dict[str, Any] | None = None
    entity: Entity | None = None
    tenant: dict[str, Any] | None = None
    user: dict[str, Any] | None = None
    client: dict[str, Any] | None = None


class OnboardingRequest(_Payload):
    id: str | None = None
    status: str | None = None
    requestType: str | None = None
    action: RequestAction | None = None
    errors: list[RequestError] | None = None
    data: RequestData | None = None
    created: str | None = None
    principalId: str | None = None
    returnUrl: str | None = None


class GuidedOnboardingSession(_Payload):
    """Seed 003; required/nullability was not published, so all but `id` is optional."""

    id: str = Field(min_length=1)
    companyName: str | None = None
    created: str | None = None
    expired: bool | None = None
    manufacturer: str | None = None
    vin: str | None = None
    url: str | None = None
    onboardingRequest: OnboardingRequest | None = None


class PageMeta(_Payload):
    continuationToken: str | None = None
    pageSize: int | None = None


class SessionPage(_Payload):
    """`{data, links, meta}`; `data` may be null (an empty page), items are checked one by one."""

    data: list[dict[str, Any]] | None = None
    links: dict[str, Any] | None = None
    meta: PageMeta | None = None


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
    """Lists every guided onboarding session available to the client, page by page, on each poll."""

    kind = "realto"

    def __init__(self, name: str, cfg: RealtoConfig, *, session: aiohttp.ClientSession, clock: Clock) -> None:
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
        return [WatchGroup(provider=self.name, name="sessions", interval=self.cfg.poll_interval)]

    def static_watches(self) -> list[tuple[str, str, dict[str, Any]]]:
        # The listing covers every session: nothing is watched by id.
        return []

    async def fetch(
        self, group: str, watches: Sequence[Watch] = (), *, skip: AbstractSet[str] = frozenset()
    ) -> FetchResult:
        if group != "sessions":
            raise ValueError(f"unknown watch group {group!r}")
        sessions = await self._list_sessions()
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

    async def _list_sessions(self) -> dict[str, dict[str, Any]]:
        """Session id → body, from the first page to the last; any failing page raises."""
        sessions: dict[str, dict[str, Any]] = {}
        seen_tokens: set[str] = set()
        token: str | None = None
        for page in range(1, MAX_PAGES + 1):
            where = f"{self.name} GET {SESSIONS_PATH} (page {page})"
            params = {"pageSize": str(self.cfg.page_size)}
            if token is not None:
                params["continuationToken"] = token  # opaque: passed on exactly as received
            body = await self.http.request_json(
                "GET", self._base + SESSIONS_PATH, endpoint=f"{SESSIONS_PATH} (page {page})", params=params
            )
            _validate(SessionPage, body, where)
            for i, item in enumerate(body.get("data") or []):
                _validate(GuidedOnboardingSession, item, f"{where} item {i}")
                sessions[item["id"]] = item
            meta = body.get("meta") or {}
            token = meta.get("continuationToken")
            if not token:
                log.debug("realto.listed", provider=self.name, pages=page, sessions=len(sessions))
                return sessions
            if token in seen_tokens:
                raise errors.ProviderMalformed(
                    f"{where}: the continuation token repeats an earlier one; the listing would never end"
                )
            seen_tokens.add(token)
        raise errors.ProviderMalformed(
            f"{self.name} GET {SESSIONS_PATH}: still more pages after {MAX_PAGES}; listing abandoned"
        )

    async def close(self) -> None:
        return None
