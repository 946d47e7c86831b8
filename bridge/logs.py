"""Structured logs: key=value on a terminal, JSON lines otherwise, secrets redacted by a processor.

Redaction does not rely on callers remembering: any key that looks like a secret, any SecretStr, and
any registered secret value found inside a string is replaced before the renderer sees it.
"""

from __future__ import annotations

import logging
import re
import sys
import time
from collections.abc import Iterable, MutableMapping
from typing import Any, TextIO

import orjson
import structlog
from pydantic import SecretStr

REDACTED = "**********"
_SECRET_KEYS = re.compile(r"(secret|password|token|api_key|apikey|authorization|credential)", re.I)
_NOT_SECRET_SUFFIXES = ("_at", "_count", "_ms", "requests")
_registered: set[str] = set()
# Derived from _registered on each registration, so scrub() does no set work per call: longest first
# (a secret containing another is replaced whole), and one compiled pattern once there are many
# (refreshed OAuth tokens accumulate; a loop of `in` checks is faster only for a handful).
# One tuple, replaced whole, so a scrub on another thread never sees half an update:
# (shortest secret's length: no shorter text can contain one, secrets longest first, pattern or None)
_Scrubber = tuple[int, tuple[str, ...], "re.Pattern[str] | None"]
_scrubber: _Scrubber = (sys.maxsize, (), None)
_LOOP_MAX = 8
_key_is_secret: dict[str, bool] = {}  # log keys are a small, stable set: decide each once
_KEY_CACHE_MAX = 4096


def register_secrets(values: Iterable[str | SecretStr | None]) -> None:
    """Remember secret values so they are scrubbed even when embedded in an error message."""
    global _scrubber
    for v in values:
        raw = v.get_secret_value() if isinstance(v, SecretStr) else v
        if raw and len(raw) >= 4:
            _registered.add(raw)
    if len(_scrubber[1]) != len(_registered):
        by_length = tuple(sorted(_registered, key=len, reverse=True))
        many = len(by_length) > _LOOP_MAX
        pattern = re.compile("|".join(map(re.escape, by_length))) if many else None
        _scrubber = (len(by_length[-1]), by_length, pattern)


def scrub(text: str) -> str:
    """`text` with every registered secret value replaced (O(1) when it is shorter than any secret)."""
    shortest, by_length, pattern = _scrubber
    if len(text) < shortest:
        return text
    if pattern is not None:
        return pattern.sub(REDACTED, text)
    for secret in by_length:
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text


def _is_secret_key(key: str) -> bool:
    hit = _key_is_secret.get(key)
    if hit is None:
        hit = bool(_SECRET_KEYS.search(key)) and not key.endswith(_NOT_SECRET_SUFFIXES)
        if len(_key_is_secret) < _KEY_CACHE_MAX:
            _key_is_secret[key] = hit
    return hit


def _redact_value(key: str, value: Any) -> Any:
    kind = type(value)
    if kind is str:  # the common case first, by exact type (subclasses take the general path below)
        return REDACTED if _is_secret_key(key) else scrub(value)
    if kind is int or kind is float or kind is bool or value is None:
        return value
    if isinstance(value, SecretStr):
        return REDACTED
    if isinstance(value, str):
        return REDACTED if _is_secret_key(key) else scrub(value)
    if isinstance(value, dict):
        return {k: _redact_value(str(k), v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redact_value(key, v) for v in value]
    if isinstance(value, BaseException):
        return scrub(repr(value))
    return value


def redact(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor: runs last before rendering.

    Runs on every line, so the common values (short strings, numbers) are handled inline; values
    are replaced in place (same keys, so safe while iterating).
    """
    for key, value in event_dict.items():
        kind = type(value)
        if kind is str:
            secret_key = _key_is_secret.get(key)
            if secret_key is None:
                secret_key = _is_secret_key(key)
            if secret_key:
                event_dict[key] = REDACTED
            elif len(value) >= _scrubber[0]:
                event_dict[key] = scrub(value)
        elif not (kind is int or kind is float or kind is bool or value is None):
            clean = _redact_value(key, value)
            if clean is not value:
                event_dict[key] = clean
    return event_dict


def timestamp(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor: `timestamp` in UTC, `2026-12-03T14:36:06.123456Z`, always microseconds.

    The part up to the second is formatted once per second (strftime per line cost ~6 µs).
    """
    ns = time.time_ns()
    second, rest = divmod(ns, 1_000_000_000)
    global _stamp
    stamped_second, prefix = _stamp
    if second != stamped_second:
        prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        _stamp = (second, prefix)  # one tuple, replaced whole: safe when threads log too
    event_dict["timestamp"] = f"{prefix}.{rest // 1000:06d}Z"
    return event_dict


_stamp: tuple[int, str] = (-1, "")


def _json_dumps(obj: Any, **_: Any) -> str:
    return orjson.dumps(obj, default=str).decode()


class _CurrentStderr:
    """Writes to whatever `sys.stderr` is *now*: cached loggers must not pin a stream that a test
    harness or a daemonising wrapper later closes or replaces."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()

    def isatty(self) -> bool:
        return sys.stderr.isatty()


_settings: dict[str, str] = {"level": "info", "fmt": "json"}


def settings() -> dict[str, str]:
    """The level and format this process logs with: a worker process logs the same way."""
    return dict(_settings)


def configure(
    *, level: str = "info", fmt: str = "auto", stream: TextIO | None = None, cache: bool = True
) -> None:
    """Set up structlog once for the process. `fmt`: auto (console on a TTY), console or json."""
    out: TextIO | _CurrentStderr = stream if stream is not None else _CurrentStderr()
    if fmt == "auto":
        fmt = "console" if out.isatty() else "json"
    _settings.update(level=level, fmt=fmt)
    renderer: Any = (
        structlog.dev.ConsoleRenderer(colors=out.isatty())
        if fmt == "console"
        else structlog.processors.JSONRenderer(serializer=_json_dumps)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            timestamp,
            structlog.processors.format_exc_info,
            redact,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelNamesMapping()[level.upper()]),
        logger_factory=structlog.PrintLoggerFactory(file=out),  # type: ignore[arg-type]
        cache_logger_on_first_use=cache,
    )
