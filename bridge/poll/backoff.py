"""Provider back-off on the injected clock: one bad resource backs off alone (#18).

Two scopes, decided after each fetch from what it returned (so it works the same for fetch workers):

- **A resource** whose read failed (5xx, timeout, connection error, a body too large, endless or not
  the documented JSON, a 429 of its own) while other resources of the same fetch were read fine is
  skipped for `interval * 2**(n-1)` after its n-th failure in a row, at most `cap`; with a
  `Retry-After` (429/503) it waits at least that, clamped to `cap`. Its first good read ends the
  back-off. Every other resource is read on time: one bad device cannot blind the provider.
- **The credential** (the provider instance: one API key or OAuth client) is deferred when nothing
  of a fetch was read and the provider said when to come back (a 429, or a 503 with `Retry-After`),
  or a listing or the token endpoint did: until then (clamped to `cap`), or on the same exponential
  schedule when a 429 said nothing. Nothing is asked meanwhile. When nothing was read and nothing
  was said, the provider is simply failing: it is asked again at the next poll and is `down` after
  three, as before.

An auth failure is the credential's and does not back a resource off (fixing the secret must take
effect at the next poll). A deferral whose `Retry-After` asked for more than `cap` is `capped`: logged
once (`provider.retry_after_capped`) and shown in `bridge.provider`, where one rule can fire on it.

Exponential waits end half an interval early, so a resource due "in one interval" is read by the next
poll even when the timetable runs a little early; a `Retry-After` is never cut short.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

import structlog

from bridge import errors

log = structlog.get_logger(__name__)

Scope = Literal["resource", "credential"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Deferral:
    """Why and until when something is not asked: what the status page and the API show."""

    until: datetime
    cause: str  # e.g. "HTTP 503 (Retry-After 99999s, capped to 300s)"
    kind: str  # the error's kind: unavailable, rate_limited, timeout, malformed, ...
    failures: int  # failures in a row that led here
    capped: bool = False  # Retry-After asked for more than the cap

    def describe(self) -> str:
        return f"deferred until {self.until.isoformat()} ({self.cause})"


def _defers_credential(exc: errors.ProviderError) -> bool:
    return isinstance(exc, errors.ProviderRateLimited) or exc.retry_after is not None


def _cause(exc: errors.ProviderError, cap: float) -> tuple[str, bool]:
    what = f"HTTP {exc.status}" if exc.status is not None else exc.kind.replace("_", " ")
    asked = exc.retry_after_asked
    if asked is None:
        return what, False
    if exc.retry_after is not None and asked > exc.retry_after:
        shown = "a huge value" if asked > 1e12 else f"{asked:.0f}s"
        return f"{what}, Retry-After {shown} capped to {cap:.0f}s", True
    return f"{what}, Retry-After {asked:.0f}s", False


class ProviderBackoff:
    """The back-off state of one provider instance (kept in memory: a restart starts afresh)."""

    def __init__(self, provider: str, *, interval: timedelta, cap: timedelta) -> None:
        self.provider = provider
        self._interval = interval.total_seconds()
        self._cap = max(cap.total_seconds(), self._interval)
        self.resources: dict[str, Deferral] = {}  # resource id → its current (or last) back-off
        self.credential: Deferral | None = None
        self._capped_logged = False

    # ------------------------------------------------------------------ what to skip

    def deferred(self, now: datetime) -> Deferral | None:
        """The credential's deferral while it runs: the poll asks nothing at all."""
        d = self.credential
        return d if d is not None and d.until > now else None

    def skip(self, now: datetime) -> frozenset[str]:
        """The resources backing off at `now`: not asked this poll (they keep their snapshot)."""
        return frozenset(rid for rid, d in self.resources.items() if d.until > now)

    def backing_off(self, now: datetime) -> dict[str, Deferral]:
        return {rid: d for rid, d in self.resources.items() if d.until > now}

    def capped(self, now: datetime) -> bool:
        """A running deferral was asked (by a Retry-After) to last longer than the cap."""
        running = [self.credential] if self.deferred(now) is not None else []
        return any(d is not None and d.capped for d in running) or any(
            d.capped for d in self.backing_off(now).values()
        )

    # ------------------------------------------------------------------ what happened

    def fetched(
        self, observed: Mapping[str, object], failures: Mapping[str, errors.ProviderError], now: datetime
    ) -> None:
        """After one fetch (or slice): `observed` are the ids read fine, `failures` the ones that failed.

        Only when others were read fine is a failure the resource's own. When nothing was, the
        provider itself is failing: it is asked again at the next poll (and is `down` after three),
        unless it said when to come back (a 429, or a 503 with Retry-After), which defers it whole.
        """
        for rid in observed:
            self.resources.pop(rid, None)
        if not observed:
            told = [e for e in failures.values() if _defers_credential(e)]
            if told:
                self._defer_credential(told[0], now)
            self._prune(now)
            return
        self.credential = None  # read fine again: the next 429 starts the schedule afresh
        for rid, exc in failures.items():
            if not isinstance(exc, errors.ProviderAuthError):
                self._defer_resource(rid, exc, now)
        self._prune(now)

    def failed(self, exc: errors.ProviderError, now: datetime) -> None:
        """The whole fetch failed (a listing, the token): only a 429/503 defers, the credential."""
        if _defers_credential(exc):
            self._defer_credential(exc, now)

    # ------------------------------------------------------------------ schedule

    def _wait(self, failures: int, exc: errors.ProviderError) -> float:
        exponential = min(self._cap, self._interval * 2.0 ** min(failures - 1, 40)) - self._interval / 2
        return max(exponential, exc.retry_after or 0.0)

    def _defer_resource(self, rid: str, exc: errors.ProviderError, now: datetime) -> None:
        prior = self.resources.get(rid)
        n = (prior.failures if prior is not None else 0) + 1
        cause, capped = _cause(exc, self._cap)
        d = Deferral(
            until=now + timedelta(seconds=self._wait(n, exc)),
            cause=cause,
            kind=exc.kind,
            failures=n,
            capped=capped,
        )
        self.resources[rid] = d
        if n == 1:  # debug: a fleet with many bad devices must not flood the log (poll.completed names 5)
            log.debug(
                "provider.resource_backoff",
                provider=self.provider,
                resource=rid,
                until=d.until.isoformat(),
                failures=n,
                cause=cause,
            )
        self._tell_capped(d, scope="resource", resource=rid)

    def _defer_credential(self, exc: errors.ProviderError, now: datetime) -> None:
        n = (self.credential.failures if self.credential is not None else 0) + 1
        cause, capped = _cause(exc, self._cap)
        d = Deferral(
            until=now + timedelta(seconds=self._wait(n, exc)),
            cause=cause,
            kind=exc.kind,
            failures=n,
            capped=capped,
        )
        self.credential = d
        log.warning("provider.deferred", provider=self.provider, until=d.until.isoformat(), cause=cause)
        self._tell_capped(d, scope="credential")

    def _tell_capped(self, d: Deferral, *, scope: Scope, resource: str | None = None) -> None:
        # Once until the deferrals are no longer capped, so a provider repeating 99999 logs one line.
        if not d.capped or self._capped_logged:
            return
        self._capped_logged = True
        log.warning(
            "provider.retry_after_capped",
            provider=self.provider,
            scope=scope,
            **({"resource": resource} if resource is not None else {}),
            cause=d.cause,
            until=d.until.isoformat(),
        )

    def _prune(self, now: datetime) -> None:
        """Forget back-offs nobody came back for (a watch that ended): long past their end."""
        stale = now - timedelta(seconds=self._cap + 2 * self._interval)
        for rid in [rid for rid, d in self.resources.items() if d.until < stale]:
            del self.resources[rid]
        if not self.capped(now):
            self._capped_logged = False
