"""OAuth2 bearer tokens as an aiohttp client middleware (Podero client credentials or password grant).

Shaped like aiohttp's token-refresh example: a lock, a re-check after acquiring it (single flight:
concurrent polls never fetch two tokens), a refresh shortly before `expires_in` runs out on the
injected clock, and exactly one refresh-and-retry on a 401.
"""

from __future__ import annotations

import asyncio
import base64
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

import aiohttp
import orjson
import structlog
from aiohttp import ClientHandlerType, ClientRequest, ClientResponse, hdrs

from bridge import errors
from bridge.clock import Clock
from bridge.logs import register_secrets

log = structlog.get_logger(__name__)

# Refresh this long before the token's stated expiry, so a request never races the deadline.
EXPIRY_MARGIN = timedelta(seconds=60)


@dataclass(frozen=True, slots=True, kw_only=True)
class TokenRequest:
    """How to obtain a token: the URL, the grant, and the credentials (kept out of every message)."""

    url: str
    grant: Literal["client_credentials", "password", "realto"]
    client_id: str = ""
    client_secret: str = ""
    username: str = ""
    password: str = ""


@dataclass(frozen=True, slots=True)
class _Token:
    value: str
    expires_at: datetime


class OAuth2Middleware:
    """Adds `Authorization: Bearer …`; fetches, caches and refreshes the token."""

    def __init__(self, provider: str, request: TokenRequest, *, session_timeout: float, clock: Clock) -> None:
        self.provider = provider
        self._request = request
        self._timeout = aiohttp.ClientTimeout(total=session_timeout)
        self._clock = clock
        self._token: _Token | None = None
        self._lock = asyncio.Lock()
        self.tokens_fetched = 0

    async def __call__(self, req: ClientRequest, handler: ClientHandlerType) -> ClientResponse:
        token = await self.token(req.session)
        req.headers[hdrs.AUTHORIZATION] = f"Bearer {token}"
        resp = await handler(req)
        if resp.status != 401:
            return resp
        # One refresh and one retry: the token may have been revoked or expired early on the server.
        resp.release()
        token = await self.token(req.session, stale=token)
        req.headers[hdrs.AUTHORIZATION] = f"Bearer {token}"
        return await handler(req)

    async def token(self, session: aiohttp.ClientSession, *, stale: str | None = None) -> str:
        """A valid token (fetched with `session` when none is fresh, or when it is `stale`: a 401
        refused it). The lean GET path (bridge/providers/http1.py) asks here, as this middleware does."""
        current = self._token
        if current is not None and current.value != stale and self._fresh(current):
            return current.value
        async with self._lock:
            # Re-check: another poll may have refreshed while we waited for the lock.
            current = self._token
            if current is not None and current.value != stale and self._fresh(current):
                return current.value
            self._token = await self._fetch(session)
            return self._token.value

    def _fresh(self, token: _Token) -> bool:
        return self._clock.now() < token.expires_at - EXPIRY_MARGIN

    async def _fetch(self, session: aiohttp.ClientSession) -> _Token:
        r = self._request
        headers = {hdrs.CONTENT_TYPE: "application/json"}
        if r.grant == "client_credentials":
            basic = base64.b64encode(f"{r.client_id}:{r.client_secret}".encode()).decode()
            headers[hdrs.AUTHORIZATION] = f"Basic {basic}"
            body: dict[str, str] = {"grant_type": "client_credentials"}
        elif r.grant == "password":
            body = {"grant_type": "password", "username": r.username, "password": r.password}
        else:
            body = {"clientId": r.client_id, "clientSecret": r.client_secret}
        where = f"{self.provider} POST token endpoint"
        try:
            # middlewares=() so the token request is not itself wrapped by this middleware.
            async with session.post(
                r.url, data=orjson.dumps(body), headers=headers, timeout=self._timeout, middlewares=()
            ) as resp:
                status = resp.status
                raw = await resp.read()
        except TimeoutError as exc:
            raise errors.ProviderTimeout(f"{where}: no answer in time") from exc
        except aiohttp.ClientError as exc:
            raise errors.ProviderUnavailable(
                f"{where}: connection failed ({exc.__class__.__name__})"
            ) from exc
        if status in (400, 401, 403):
            raise errors.ProviderAuthError(
                f"{where}: HTTP {status}: credentials refused; check client_id/client_secret", status=status
            )
        if status == 429:  # the credential's own endpoint: every request of it waits
            raise errors.ProviderRateLimited(f"{where}: HTTP {status}", status=status)
        if status >= 500:
            raise errors.ProviderUnavailable(f"{where}: HTTP {status}", status=status)
        if not 200 <= status < 300:
            raise errors.ProviderError(f"{where}: HTTP {status}", status=status)
        try:
            data = orjson.loads(raw)
            value = str(data["access_token"])
            lifetime = float(data.get("expires_in") or 3600)
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise errors.ProviderMalformed(f"{where}: token response is not the expected JSON") from exc
        register_secrets([value])
        self.tokens_fetched += 1
        log.info("auth.token_fetched", provider=self.provider, expires_in=lifetime)
        return _Token(value, self._clock.now() + timedelta(seconds=lifetime))
