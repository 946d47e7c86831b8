"""The one HTTP chokepoint for provider calls: timeouts, rate limit, body cap, status → our errors.

Provider modules only build URLs and validate bodies; everything that can go wrong on the wire is
classified here, with messages that name the provider, the endpoint and the status (never a secret).
"""

from __future__ import annotations

import asyncio
import email.utils
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import aiohttp
import orjson
from aiolimiter import AsyncLimiter
from yarl import URL

from bridge import errors
from bridge.clock import Clock, SystemClock
from bridge.providers import http1
from bridge.providers.auth import OAuth2Middleware
from bridge.providers.pacing import Gate, GridLimiter

# Retry-After is clamped to this when nobody says otherwise (a provider's is its `retry_after_cap`):
# a header is the peer's wish, and no wish may stop us for longer than a day.
RETRY_AFTER_LIMIT = 86400.0
_DELTA_SECONDS = re.compile(r"[+-]?\d+(?:\.\d+)?")


def requested_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """What a `Retry-After` asks for, in seconds (delta-seconds or an HTTP date, RFC 9110 §10.2.3).

    None when absent or malformed (then it is ignored). Never raises, whatever the peer sent: a
    negative or past value is 0, and a huge one may be `inf` (callers clamp it, see parse_retry_after).
    """
    if not value:
        return None
    value = value.strip()
    if _DELTA_SECONDS.fullmatch(value):
        return max(0.0, float(value))  # float() of any digit string is finite or inf, never an error
    try:
        when = email.utils.parsedate_to_datetime(value)
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def parse_retry_after(
    value: str | None, *, now: datetime | None = None, cap: float = RETRY_AFTER_LIMIT
) -> float | None:
    """`Retry-After` as seconds within [0, cap]: huge, negative or far-future values are clamped."""
    asked = requested_retry_after(value, now=now)
    return None if asked is None else min(asked, cap)


FINE_PACING_MAX_RATE = 200.0  # requests/s; above this a bucket of one cannot keep up (see _limiter)


def _limiter(rate: float) -> AsyncLimiter | GridLimiter:
    """Never more than `rate` requests in any 1 s window.

    Up to 200/s: evenly spaced, a bucket of one refilled every 1/rate s. Above that, a bucket of one
    cannot keep up (the event loop wakes a waiter at best once per millisecond: 1,100/s and 4,600/s
    were both capped at about 850/s, measured here), and waking waiters one by one costs more CPU
    than the requests: requests leave together on a 10 ms grid (bridge/providers/pacing.py).
    """
    if rate <= FINE_PACING_MAX_RATE:
        return AsyncLimiter(1, 1.0 / rate)
    return GridLimiter(rate)


class Lean:
    """How the lean client authenticates a provider's GETs: its token source (None: no token) and
    the session's default headers (User-Agent), written once."""

    def __init__(self, auth: OAuth2Middleware | None, headers: Mapping[str, str]) -> None:
        self.auth = auth
        self._static = http1.header_bytes([("Accept", "*/*"), *headers.items()])
        self._last: tuple[str | None, bytes] = (None, self._static)

    def head(self, token: str | None) -> bytes:
        if token is None:
            return self._static
        if self._last[0] != token:  # the token changes once an hour: its header line is kept
            self._last = (token, self._static + http1.header_bytes([("Authorization", f"Bearer {token}")]))
        return self._last[1]


class ProviderHttp:
    """Sends provider requests within the provider's rate limit and concurrency bound."""

    def __init__(
        self,
        provider: str,
        session: aiohttp.ClientSession,
        *,
        timeout: float,
        max_body_bytes: int,
        max_requests_per_second: float,
        max_concurrency: int,
        clock: Clock | None = None,
        retry_after_cap: float = RETRY_AFTER_LIMIT,
        lean: Lean | None = None,
    ) -> None:
        self.provider = provider
        # GETs without per-request headers go through the lean client when the provider says how
        # to authenticate them (`lean`); everything else (and every POST) through the session.
        self._lean = lean
        self._origins: dict[tuple[str, str, int | None], http1.Origin] = {}
        self._retry_after_cap = retry_after_cap
        # An HTTP-date Retry-After is measured against the injected clock, like every other wait.
        self._clock: Clock = clock or SystemClock()
        self._session = session
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._max_body = max_body_bytes
        # aiolimiter is a leaky bucket: AsyncLimiter(rate, 1) lets a burst of `rate` through and then
        # `rate` more per second (9 in one 1 s window at rate 5, measured). A bucket of one, refilled
        # every 1/rate s, spaces requests evenly: never more than `rate` in any 1 s window.
        self._limiter = _limiter(max_requests_per_second)
        self._concurrency = Gate(max_concurrency)
        # The whole credential's limits; a replica runs with a share of them (`divide`).
        self._full = (max_requests_per_second, max_concurrency)
        self.divisor = 1

    def divide(self, n: int) -> None:
        """Run with 1/n of the provider's limits: n replicas (or fetch workers) share one credential,
        so together they stay within it (each keeps at least one connection). Requests already
        waiting for the old pace keep it; the next ones take the new one."""
        n = max(1, n)
        if n == self.divisor:
            return
        rate, concurrency = self._full
        self.divisor = n
        self._limiter = _limiter(rate / n)
        self._concurrency.resize(max(1, concurrency // n))

    @property
    def limits(self) -> tuple[float, int]:
        """(requests per second, concurrency) this client runs with now."""
        return self._full[0] / self.divisor, self._concurrency.size

    async def request_json(
        self,
        method: str,
        url: str | URL,
        *,
        endpoint: str,
        params: Mapping[str, str] | None = None,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> Any:
        """Perform one request and return the decoded JSON body, or raise a ProviderError.

        `url` may be a ready `yarl.URL(..., encoded=True)` with its query: the hot by-id polls pass one,
        which skips URL parsing and query building (measured: a tenth of a poll's CPU)."""
        where = f"{self.provider} {method} {endpoint}"
        if self._lean is not None and method == "GET" and json is None and headers is None:
            return await self._lean_get(self._lean, url, params, where)
        if json is not None:
            headers = {"Content-Type": "application/json", **(headers or {})}
        async with self._concurrency, self._limiter:
            try:
                async with self._session.request(
                    method,
                    url,
                    params=params,
                    data=orjson.dumps(json) if json is not None else None,
                    headers=headers,
                    timeout=self._timeout,
                    allow_redirects=False,
                ) as resp:
                    self._raise_for_status(resp, where=where)
                    body = await self._read_capped(resp, where)
            except errors.ProviderError:
                raise
            except TimeoutError as exc:
                raise errors.ProviderTimeout(f"{where}: no answer within {self._timeout.total:g}s") from exc
            except aiohttp.ClientPayloadError as exc:
                raise errors.ProviderMalformed(
                    f"{where}: truncated or broken body ({exc.__class__.__name__})"
                ) from exc
            except aiohttp.ClientError as exc:
                raise errors.ProviderUnavailable(
                    f"{where}: connection failed ({exc.__class__.__name__})"
                ) from exc
        return _json(body, where)

    async def _lean_get(
        self, lean: Lean, url: str | URL, params: Mapping[str, str] | None, where: str
    ) -> Any:
        u = url if isinstance(url, URL) else URL(url)
        if params:
            u = u.extend_query(params)
        key = (u.scheme, u.raw_host or "", u.port)
        origin = self._origins.get(key)
        if origin is None:
            origin = self._origins[key] = http1.Origin(u)
        path = u.raw_path_qs or "/"
        async with self._concurrency, self._limiter:
            try:
                async with asyncio.timeout(self._timeout.total):
                    token = await lean.auth.token(self._session) if lean.auth is not None else None
                    reply = await origin.get(path, lean.head(token), self._max_body)
                    if reply.status == 401 and lean.auth is not None:
                        # One refresh and one retry, as the middleware does on the session's path.
                        token = await lean.auth.token(self._session, stale=token)
                        reply = await origin.get(path, lean.head(token), self._max_body)
                    self._raise_for_status(reply.status, reply.headers, where)
                    body = http1.decoded(reply, self._max_body)
            except errors.ProviderError:
                raise
            except TimeoutError as exc:
                raise errors.ProviderTimeout(f"{where}: no answer within {self._timeout.total:g}s") from exc
            except http1.TooLarge as exc:
                raise errors.ProviderMalformed(f"{where}: {exc}") from exc
            except http1.BrokenBody as exc:
                raise errors.ProviderMalformed(f"{where}: truncated or broken body ({exc})") from exc
            except OSError as exc:
                raise errors.ProviderUnavailable(
                    f"{where}: connection failed ({exc.__class__.__name__})"
                ) from exc
        return _json(body, where)

    async def close(self) -> None:
        """Close the lean client's connections (the session is its owner's to close)."""
        origins, self._origins = self._origins, {}
        for origin in origins.values():
            await origin.close()

    def _raise_for_status(
        self, resp: aiohttp.ClientResponse | int, headers: Mapping[str, str] | None = None, where: str = ""
    ) -> None:
        if isinstance(resp, int):
            status, retry_after_header = resp, (headers or {}).get("retry-after")
        else:
            status, retry_after_header = resp.status, resp.headers.get("Retry-After")
        if 200 <= status < 300:
            return
        msg = f"{where}: HTTP {status}"
        if status == 401 or status == 403:
            raise errors.ProviderAuthError(
                f"{msg}: credentials refused; check the provider's credentials", status=status
            )
        if status == 404:
            raise errors.ProviderNotFound(f"{msg}: not found", status=status)
        # Retry-After is honoured on 429 and 503 only (README "Back-off"); any other 5xx backs off
        # on our own schedule, whatever it says (#18: a 500 with Retry-After: 99999 stopped a provider).
        asked = retry_after = None
        if status in (429, 503):
            asked = requested_retry_after(retry_after_header, now=self._clock.now())
            retry_after = None if asked is None else min(asked, self._retry_after_cap)
        if status == 429:
            raise errors.ProviderRateLimited(
                f"{msg}: rate limited", status=status, retry_after=retry_after, retry_after_asked=asked
            )
        if status >= 500 or status == 408:
            raise errors.ProviderUnavailable(
                f"{msg}: provider unavailable",
                status=status,
                retry_after=retry_after,
                retry_after_asked=asked,
            )
        raise errors.ProviderError(f"{msg}: unexpected status", status=status)

    async def _read_capped(self, resp: aiohttp.ClientResponse, where: str) -> bytes:
        length = resp.content_length
        if length is not None and length > self._max_body:
            raise errors.ProviderMalformed(
                f"{where}: body of {length} bytes exceeds the {self._max_body} byte cap"
            )
        if length is not None:
            return await resp.read()  # the length is declared and within the cap: one read
        chunks: list[bytes] = []
        size = 0
        async for chunk in resp.content.iter_chunked(65536):
            size += len(chunk)
            if size > self._max_body:
                raise errors.ProviderMalformed(f"{where}: body exceeds the {self._max_body} byte cap")
            chunks.append(chunk)
        return b"".join(chunks)


def _json(body: bytes, where: str) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise errors.ProviderMalformed(f"{where}: body is not JSON ({len(body)} bytes)") from exc
