"""Structured logs: key=value on a terminal, JSON lines otherwise, secrets redacted by a processor.

Redaction does not rely on callers remembering: any key that looks like a secret, any SecretStr, and
any registered secret value found inside a string is replaced before the renderer sees it.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable, MutableMapping
from typing import Any, TextIO

import orjson
import structlog
from pydantic import SecretStr

REDACTED = "**********"
_SECRET_KEYS = re.compile(r"(secret|password|token|api_key|apikey|authorization|credential)", re.I)
_registered: set[str] = set()


def register_secrets(values: Iterable[str | SecretStr | None]) -> None:
    """Remember secret values so they are scrubbed even when embedded in an error message."""
    for v in values:
        raw = v.get_secret_value() if isinstance(v, SecretStr) else v
        if raw and len(raw) >= 4:
            _registered.add(raw)


def scrub(text: str) -> str:
    """`text` with every registered secret value replaced."""
    for secret in _registered:
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text


def _redact_value(key: str, value: Any) -> Any:
    if isinstance(value, SecretStr):
        return REDACTED
    if isinstance(value, str):
        if _SECRET_KEYS.search(key) and not key.endswith(("_at", "_count", "_ms", "requests")):
            return REDACTED
        return scrub(value)
    if isinstance(value, dict):
        return {k: _redact_value(str(k), v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redact_value(key, v) for v in value]
    if isinstance(value, BaseException):
        return scrub(repr(value))
    return value


def redact(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor: runs last before rendering."""
    for key, value in list(event_dict.items()):
        event_dict[key] = _redact_value(key, value)
    return event_dict


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


def configure(
    *, level: str = "info", fmt: str = "auto", stream: TextIO | None = None, cache: bool = True
) -> None:
    """Set up structlog once for the process. `fmt`: auto (console on a TTY), console or json."""
    out: TextIO | _CurrentStderr = stream if stream is not None else _CurrentStderr()
    if fmt == "auto":
        fmt = "console" if out.isatty() else "json"
    renderer: Any = (
        structlog.dev.ConsoleRenderer(colors=out.isatty())
        if fmt == "console"
        else structlog.processors.JSONRenderer(serializer=_json_dumps)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            redact,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelNamesMapping()[level.upper()]),
        logger_factory=structlog.PrintLoggerFactory(file=out),  # type: ignore[arg-type]
        cache_logger_on_first_use=cache,
    )
