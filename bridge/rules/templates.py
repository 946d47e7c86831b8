"""Jinja2 sandbox for `if` expressions and message templates: compile early, never raise late.

A template error at run time must not lose the notification: rendering returns the text with the
error noted, and the failure is logged (`template.failed`).
"""

from __future__ import annotations

import html
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import structlog
from jinja2 import StrictUndefined, TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

log = structlog.get_logger(__name__)

MAX_OUTPUT = 64 * 1024


def _duration(value: Any) -> str:
    """`5400` (seconds) or a timedelta → `1h 30m`: for `charge_time_remaining` and the like."""
    try:
        total = int(value.total_seconds() if isinstance(value, timedelta) else float(value))
    except (TypeError, ValueError, OverflowError):
        return str(value)
    sign, total = ("-", -total) if total < 0 else ("", total)
    parts: list[str] = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if total >= size or (unit == "s" and not parts):
            parts.append(f"{total // size}{unit}")
            total %= size
    return sign + " ".join(parts[:2])


def _localtime(value: Any, tz: str = "UTC", fmt: str = "%Y-%m-%d %H:%M %Z") -> str:
    """An ISO timestamp (or datetime) shown in the time zone `tz` (an IANA name such as
    `Europe/Vienna`): `{{ new.charge_deadline_at | localtime("Europe/Vienna", "%H:%M") }}`.
    A value that is not a time is shown as it is; an unknown zone is a template error."""
    if "%" in tz:  # `localtime('%H:%M')`: a format alone, in UTC (the filter's first signature)
        tz, fmt = "UTC", tz
    try:
        zone = ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"localtime: unknown time zone {tz!r} (use an IANA name, e.g. 'Europe/Vienna')"
        ) from None
    if isinstance(value, datetime):
        when = value
    else:
        try:
            when = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError:
            return str(value)
    if when.tzinfo is None:  # providers send UTC; a naive time is read as UTC, never as the host's zone
        when = when.replace(tzinfo=UTC)
    return when.astimezone(zone).strftime(fmt)


def _make_env(*, autoescape: bool = False) -> ImmutableSandboxedEnvironment:
    env = ImmutableSandboxedEnvironment(
        undefined=StrictUndefined, autoescape=autoescape, keep_trailing_newline=True
    )
    env.filters["duration"] = _duration
    env.filters["localtime"] = _localtime
    env.globals["timedelta"] = timedelta
    return env


ENV = _make_env()
# HTML email bodies interpolate provider data (owner names, addresses): escape it.
HTML_ENV = _make_env(autoescape=True)
_GLOBALS = dict(ENV.globals)


class Expression:
    """A compiled `if` expression; evaluation errors count as false (and are logged)."""

    def __init__(self, source: str, *, rule_id: str) -> None:
        self.source = source
        self.rule_id = rule_id
        self._template = ENV.compile_expression(source, undefined_to_none=False)._template

    def __call__(self, context: dict[str, Any]) -> bool:
        try:
            # What TemplateExpression.__call__ does, minus merging the globals into a fresh
            # ChainMap on every call (`shared=True` with the globals added once): half the cost on
            # the rule-evaluation hot path.
            ctx = self._template.new_context({**_GLOBALS, **context}, shared=True)
            for _ in self._template.root_render_func(ctx):
                pass
            return bool(ctx.vars["result"])
        except Exception as exc:  # a sandbox error, missing key, type error: all mean "does not hold"
            log.warning("rule.condition_failed", rule=self.rule_id, expression=self.source, error=str(exc))
            return False


class Template:
    """A compiled message template; rendering never raises."""

    def __init__(self, source: str, *, rule_id: str, name: str, autoescape: bool = False) -> None:
        self.source = source
        self.rule_id = rule_id
        self.name = name
        self._autoescape = autoescape
        self._template = (HTML_ENV if autoescape else ENV).from_string(source)

    def render(self, context: dict[str, Any]) -> str:
        try:
            text = self._template.render(**context)
        except Exception as exc:  # noted in the message itself so the notification still goes out
            log.warning("template.failed", rule=self.rule_id, template=self.name, error=str(exc))
            note = f"[template error in {self.name}: {exc}]\n{self.source}"
            return f"<pre>{html.escape(note)}</pre>" if self._autoescape else note
        if len(text) > MAX_OUTPUT:
            text = text[:MAX_OUTPUT] + "\n[truncated: output exceeded 64 KiB]"
        return text


def compile_error(source: str, *, expression: bool) -> str | None:
    """The syntax error message of a template or expression, or None when it compiles."""
    try:
        if expression:
            ENV.compile_expression(source)
        else:
            ENV.from_string(source)
    except TemplateError as exc:
        return f"does not compile: {exc.message or exc}"
    return None
