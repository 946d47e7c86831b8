"""Our exception tree: every error a user meets says what happened and what to do.

BridgeError
├── ConfigError            invalid config file (carries every problem as FILE:LINE: key: message)
├── RuleError              invalid rule file(s) (same format)
├── ProviderError          a poll failed; never turns into a change
│   ├── ProviderAuthError        credentials refused (after one token refresh)
│   ├── ProviderNotFound         the watched resource answered 404
│   ├── ProviderUnavailable      5xx / 429 / connection refused: retry later (retry_after)
│   ├── ProviderTimeout          no answer in time
│   └── ProviderMalformed        body is not JSON, too large, or violates the schema
├── DeliveryError          a channel could not send (the outbox retries it)
│   └── ReplayRefused            a replay that would not deliver (unknown, not replayable, channel disabled)
└── StoreError             the store is unreachable or corrupt
    └── CommitConflict           another writer (replica) committed these resources first
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


class BridgeError(Exception):
    """Base of every error Wattbridge raises on purpose."""


@dataclass(frozen=True, slots=True)
class Problem:
    """One located problem in a user-written file."""

    file: str
    line: int | None
    key: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        key = f" {self.key}:" if self.key else ""
        return f"{where}:{key} {self.message}"


class ProblemsError(BridgeError):
    """An error that carries every problem found, so the user fixes them all in one go."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class ConfigError(ProblemsError):
    """The configuration file is invalid."""


class RuleError(ProblemsError):
    """One or more rule files are invalid."""


class ConfigAndRulesError(ConfigError):
    """Both the configuration and the rule files it names are invalid: every problem of both."""

    def __init__(self, config: Sequence[Problem], rules: Sequence[Problem]) -> None:
        super().__init__([*config, *rules])
        self.config_count = len(config)
        self.rules_count = len(rules)


class ProviderError(BridgeError):
    """A provider call failed; the poll changes nothing and only updates `bridge.provider`."""

    kind = "error"

    def __init__(
        self,
        message: str,
        *,
        retry_after: float | None = None,
        status: int | None = None,
        retry_after_asked: float | None = None,
    ) -> None:
        super().__init__(message)
        self.retry_after = retry_after  # seconds, already clamped to the provider's retry_after_cap
        self.status = status
        # What the peer's Retry-After asked for before clamping (may be inf): more than `retry_after`
        # means the cap cut it short, which bridge.provider reports.
        self.retry_after_asked = retry_after_asked if retry_after_asked is not None else retry_after


class ProviderAuthError(ProviderError):
    """The provider refused our credentials (after one token refresh): check client id/secret or API key."""

    kind = "auth"


class ProviderNotFound(ProviderError):
    """The watched resource does not exist (404)."""

    kind = "not_found"


class ProviderUnavailable(ProviderError):
    """The provider (or one resource of it) is down; it is read again after a back-off (`retry_after`
    when a 503 said so)."""

    kind = "unavailable"


class ProviderRateLimited(ProviderUnavailable):
    """The provider answered 429: its credential's requests wait (`retry_after`, when it said so)."""

    kind = "rate_limited"


class ProviderTimeout(ProviderError, TimeoutError):
    """The provider did not answer in time."""

    kind = "timeout"


class ProviderMalformed(ProviderError):
    """The provider's answer is not the JSON we expect (not JSON, too large, or schema violation)."""

    kind = "malformed"


class ProviderSchemaViolation(ProviderMalformed):
    """The body is JSON but violates the documented schema (e.g. a key field of the wrong type)."""

    kind = "schema_violation"


class DeliveryError(BridgeError):
    """A channel could not send a notification; the outbox keeps it and retries."""


class ReplayRefused(DeliveryError):
    """A replay was refused: it names the deliveries and says what to do (`reason` for callers)."""

    def __init__(
        self, message: str, *, reason: str, ids: Sequence[str] = (), channel: str | None = None
    ) -> None:
        super().__init__(message)
        self.reason = reason  # not_found | not_replayable | channel_disabled
        self.ids = list(ids)
        self.channel = channel


class StoreError(BridgeError):
    """The store is unreachable, locked or corrupt."""


class CommitConflict(StoreError):
    """A commit that wrote nothing: another writer changed some of its resources since they were
    read (snapshot compare-and-swap, or a transition already recorded). Not a failure: the winner's
    transition stands, and the loser leaves these resources out and reads them again."""

    def __init__(self, keys: Sequence[object]) -> None:
        self.keys = tuple(keys)
        super().__init__(f"{len(self.keys)} resource(s) committed by another writer first")


class FencedOut(StoreError):
    """A write refused because the lease it was made under has another holder now (its fencing
    token moved on): a replica that paused past its lease must not overwrite its successor's work."""

    def __init__(self, lease: str, token: int) -> None:
        self.lease = lease
        self.token = token
        super().__init__(f"lease {lease!r} is no longer held with token {token}: write refused")
