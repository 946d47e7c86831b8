"""Dry-run input: timeline files (JSON lines) and --old/--new state files, read into `Step`s with
FILE:LINE errors.

Timeline files are JSON lines (blank lines and lines starting with `#` are skipped), each with an
`at` time (ISO 8601 with a timezone, never going back):

    {"at": "2026-11-22T21:00:00Z", "source": "podero.wallbox", "resource_id": "wb-1", "state": {...}}
    {"at": "2026-11-22T21:05:00Z", "poll": "failed", "provider": "podero", "error": "HTTP 503"}
    {"at": "2026-11-22T22:00:00Z"}

* a `state` line is what the provider answers for one resource from then on (`null`: it is gone).
  The first state of a resource is its baseline and fires nothing, as in a real run. When a
  resource's first state is `null`, its source is replayed as a complete listing (like Realto's
  sessions or Podero discovery): a resource first seen after that source's first poll *appeared*.
  `provider` (default: the configured provider of that kind) is optional. `bridge.channel` states
  are accepted too; `bridge.provider` is driven by `poll` lines.
* a `poll` line (`"ok"` or `"failed"`, optional `error`) is a poll of that provider that succeeds
  with nothing new, or fails: it changes nothing but the provider's health (`bridge.provider`).
* a line with only `at` lets time pass: holds end, reminders and digests go out on the way.
* an `ack` line (`{"at": …, "ack": "RULE", "resource_id": …, "by": "ada"}`) acknowledges that
  rule's firing on the resource, as its link or `POST /api/acks` would (#14); with `"snooze": "1h"`
  it snoozes it instead. `provider` / `source` narrow it when the id is not unique.

Lines with the same `at` are one poll per provider. Timers and digests due before each line are run
at their own due time, exactly as the running bridge's timer loop would.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import orjson

from bridge.config.types import parse_duration
from bridge.errors import Problem, ProblemsError
from bridge.model import HEALTH_SOURCE
from bridge.rules.fields import catalog
from bridge.rules.schema import SOURCES

Kind = Literal["state", "poll", "wait", "ack"]


class DryRunInputError(ProblemsError):
    """A dry run's input file is invalid (each problem names the file and line)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Step:
    """One line of a timeline (or one side of --old/--new)."""

    at: datetime
    kind: Kind
    file: str
    line: int | None = None
    source: str | None = None
    provider: str | None = None
    resource_id: str | None = None
    state: dict[str, Any] | None = None
    ok: bool = True
    error: str = "simulated poll failure"
    rule_id: str | None = None  # an `ack` line's rule (#14)
    by: str = "timeline"
    snooze: timedelta | None = None


# -- reading -----------------------------------------------------------------------------------------


def input_problem(file: str, line: int | None, message: str) -> DryRunInputError:
    return DryRunInputError([Problem(file, line, "", message)])


def _time(value: Any, file: str, line: int | None) -> datetime:
    try:
        when = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise input_problem(file, line, f"`at`: not an ISO 8601 time: {value!r}") from None
    if when.tzinfo is None:
        raise input_problem(file, line, f"`at`: {value!r} has no timezone (add Z or +01:00)")
    return when


def _source(value: Any, file: str, line: int | None) -> str:
    if value not in SOURCES:
        close = difflib.get_close_matches(str(value), SOURCES, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        known = ", ".join(SOURCES)
        raise input_problem(file, line, f"`source`: unknown source {value!r} (known: {known}){hint}")
    if value == HEALTH_SOURCE:
        raise input_problem(file, line, "`source`: bridge.provider is driven by `poll` lines, not states")
    return str(value)


def _step(data: Any, file: str, line: int, default_source: str | None) -> Step:
    if not isinstance(data, dict):
        raise input_problem(file, line, "expected a JSON object per line")
    known = {"at", "source", "provider", "resource_id", "state", "poll", "error", "ack", "snooze", "by"}
    unknown = sorted(set(data) - known)
    if unknown:
        listed = ", ".join(sorted(known))
        raise input_problem(file, line, f"unknown key(s) {', '.join(unknown)} (known: {listed})")
    if "at" not in data:
        raise input_problem(file, line, "every line needs an `at` time")
    at = _time(data["at"], file, line)
    provider = data.get("provider")
    if provider is not None and not isinstance(provider, str):
        raise input_problem(file, line, "`provider` must be a string")
    if "ack" in data:
        return _ack_step(data, at, file, line, provider)
    if "poll" in data:
        if data["poll"] not in ("ok", "failed") or "state" in data:
            raise input_problem(file, line, '`poll` is "ok" or "failed", on a line without a `state`')
        error = str(data.get("error") or "simulated poll failure")
        return Step(
            at=at, kind="poll", file=file, line=line, provider=provider, ok=data["poll"] == "ok", error=error
        )
    if "state" not in data:
        if set(data) - {"at"}:
            raise input_problem(
                file, line, "a line with `source`/`resource_id` needs a `state` (an object, or null)"
            )
        return Step(at=at, kind="wait", file=file, line=line)
    state = data["state"]
    if state is not None and not isinstance(state, dict):
        raise input_problem(file, line, "`state` must be a JSON object, or null when the resource is gone")
    resource_id = data.get("resource_id")
    if not isinstance(resource_id, str) or not resource_id:
        raise input_problem(file, line, "a state line needs a `resource_id` (a non-empty string)")
    return Step(
        at=at,
        kind="state",
        file=file,
        line=line,
        source=_source(data.get("source", default_source), file, line),
        provider=provider,
        resource_id=resource_id,
        state=state,
    )


def _ack_step(data: dict[str, Any], at: datetime, file: str, line: int, provider: str | None) -> Step:
    rule_id, resource_id = data["ack"], data.get("resource_id")
    if not isinstance(rule_id, str) or not rule_id or not isinstance(resource_id, str) or not resource_id:
        raise input_problem(file, line, "an `ack` line names a rule (`ack`) and a `resource_id`")
    if "state" in data or "poll" in data:
        raise input_problem(file, line, "an `ack` line has no `state` or `poll`")
    snooze = None
    if "snooze" in data:
        try:
            snooze = parse_duration(data["snooze"])
        except ValueError as exc:
            raise input_problem(file, line, f"`snooze`: {exc}") from None
    source = data.get("source")
    return Step(
        at=at,
        kind="ack",
        file=file,
        line=line,
        provider=provider,
        source=_source(source, file, line) if source is not None else None,
        resource_id=resource_id,
        rule_id=rule_id,
        by=str(data.get("by") or "timeline"),
        snooze=snooze,
    )


def read_timeline(path: Path, *, default_source: str | None = None) -> list[Step]:
    """Every step of a timeline file, or a DryRunInputError naming FILE:LINE. `default_source`
    (--source) applies to state lines without a `source`."""
    file = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise input_problem(file, None, f"cannot read the timeline: {exc.strerror or exc}") from None
    steps: list[Step] = []
    for number, raw in enumerate(text.splitlines(), 1):
        if not raw.strip() or raw.lstrip().startswith("#"):
            continue
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise input_problem(file, number, f"not valid JSON: {exc}") from None
        step = _step(data, file, number, default_source)
        if steps and step.at < steps[-1].at:
            raise input_problem(file, number, f"`at` goes back in time (after {steps[-1].at.isoformat()})")
        steps.append(step)
    if not steps:
        raise input_problem(file, None, "the timeline has no lines")
    return steps


def read_state(path: Path) -> dict[str, Any] | None:
    """A state file for --old/--new: one JSON object (or null: the resource does not exist)."""
    try:
        data = orjson.loads(path.read_bytes())
    except OSError as exc:
        raise input_problem(str(path), None, f"cannot read the state: {exc.strerror or exc}") from None
    except orjson.JSONDecodeError as exc:
        raise input_problem(str(path), None, f"not valid JSON: {exc}") from None
    if data is not None and not isinstance(data, dict):
        raise input_problem(str(path), None, "expected a JSON object (a resource's state), or null")
    return data


def guess_source(states: Sequence[dict[str, Any] | None], file: str) -> str:
    """The source whose documented fields best cover the states' top-level keys."""
    keys = {k for s in states if s is not None for k in s}
    scores = []
    for source, shape in catalog().items():
        if source == HEALTH_SOURCE or isinstance(shape, str):
            continue
        scores.append((len(keys & shape.keys()) - len(keys - shape.keys()), source))
    scores.sort(reverse=True)
    if not keys or (len(scores) > 1 and scores[0][0] == scores[1][0]):
        raise input_problem(
            file, None, f"cannot tell the source of this state: give --source ({', '.join(SOURCES)})"
        )
    return scores[0][1]


def pair(
    old: dict[str, Any] | None,
    new: dict[str, Any] | None,
    *,
    source: str,
    file: str,
    resource_id: str | None = None,
    at: datetime,
) -> list[Step]:
    """--old/--new as a two-line timeline, a minute apart."""
    if source == HEALTH_SOURCE:
        raise input_problem(file, None, "bridge.provider states come from polls: test it with --timeline")
    if old is None and new is None:
        raise input_problem(file, None, "--old and --new are both null: nothing can change")
    state = new or old or {}
    rid = resource_id or str(state.get("id") or state.get("homeId") or state.get("channel") or "resource-1")
    return [
        Step(at=when, kind="state", file=file, source=source, resource_id=rid, state=state)
        for when, state in ((at, old), (at + timedelta(minutes=1), new))
    ]
