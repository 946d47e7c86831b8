"""`wattbridge rules test --timeline T --expect FILE`: rule files get unit tests (#14), promtool-style.

The expectation file is TOML listing, in order, every notification the timeline must cause, and
every digest:

    [[notification]]
    at = 2026-11-22T21:05:00Z        # optional: when it fires
    rule = "wallbox-offline"
    status = "firing"                 # default; or "resolved", "flapping", "settled" (#14 flap)
    resource = "wb-1"                 # optional: the resource id
    channels = ["partner", "ops"]     # optional: exactly the channels it goes to

    [[digest]]
    at = 2026-11-23T07:00:00+01:00    # optional
    channel = "ops"
    count = 2                         # optional: how many notifications it carries

Nothing else may fire: an extra notification fails the test as a missing one does. A bad key is
reported as FILE:LINE, like a rule file's.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from bridge.config.tomlpos import TomlPositions, read_toml, validation_problems
from bridge.errors import Problem, ProblemsError
from bridge.rehearse.dryrun import Notice


class ExpectationError(ProblemsError):
    """The expectation file is invalid (each problem names FILE:LINE and the key)."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ExpectedNotification(_Strict):
    at: AwareDatetime | None = None
    rule: str = Field(min_length=1)
    status: Literal["firing", "resolved", "flapping", "settled"] = "firing"
    resource: str | None = None
    channels: list[str] | None = None


class ExpectedDigest(_Strict):
    at: AwareDatetime | None = None
    channel: str = Field(min_length=1)
    count: int | None = Field(default=None, ge=1)


class ExpectFile(_Strict):
    notification: list[ExpectedNotification] = Field(default_factory=list)
    digest: list[ExpectedDigest] = Field(default_factory=list)


def read_expectations(path: Path) -> tuple[ExpectFile, TomlPositions]:
    file = str(path)
    data, text, problems = read_toml(path)
    if data is None:
        raise ExpectationError(problems)
    pos = TomlPositions(text)
    try:
        return ExpectFile.model_validate(data), pos
    except ValidationError as exc:
        raise ExpectationError(validation_problems(file, pos, exc)) from None


def _fmt(when: datetime) -> str:
    return when.isoformat().replace("+00:00", "Z")


def _notification(n: Notice) -> str:
    channels = ", ".join(s.channel for s in n.deliveries) or "no channel"
    return f"{n.status} {n.rule} on {n.resource} at {_fmt(n.at)} (to {channels})"


def _mismatch(want: ExpectedNotification, got: Notice) -> list[str]:
    found = []
    if got.rule != want.rule:
        found.append(f"rule {want.rule!r}, got {got.rule!r}")
    if got.status != want.status:
        found.append(f"status {want.status}, got {got.status}")
    resource_id = (got.resource or "").rsplit(" ", 1)[-1]
    if want.resource is not None and resource_id != want.resource:
        found.append(f"resource {want.resource!r}, got {resource_id!r}")
    if want.at is not None and want.at != got.at:
        found.append(f"at {_fmt(want.at)}, got {_fmt(got.at)}")
    channels = sorted(s.channel for s in got.deliveries)
    if want.channels is not None and sorted(want.channels) != channels:
        found.append(f"channels {sorted(want.channels)}, got {channels}")
    return found


def _digest_mismatch(want: ExpectedDigest, got: Notice) -> list[str]:
    found = []
    channel = got.deliveries[0].channel if got.deliveries else ""
    if channel != want.channel:
        found.append(f"channel {want.channel!r}, got {channel!r}")
    count = int(got.text.split()[2]) if got.text.startswith("DIGEST of ") else None
    if want.count is not None and count != want.count:
        found.append(f"count {want.count}, got {count}")
    if want.at is not None and want.at != got.at:
        found.append(f"at {_fmt(want.at)}, got {_fmt(got.at)}")
    return found


def check(path: Path, notices: Sequence[Notice]) -> list[Problem]:
    """Every way the dry run's notifications and digests differ from the file; [] when they match."""
    expected, pos = read_expectations(path)
    file = str(path)
    problems: list[Problem] = []
    events = [n for n in notices if n.what == "event"]
    for i, want in enumerate(expected.notification):
        line = pos.line_of(("notification", i))
        if i >= len(events):
            problems.append(Problem(file, line, f"notification[{i}]", f"missing: {want.status} {want.rule}"))
            continue
        diff = _mismatch(want, events[i])
        if diff:
            message = "expected " + "; ".join(diff) + f" ({_notification(events[i])})"
            problems.append(Problem(file, line, f"notification[{i}]", message))
    for extra in events[len(expected.notification) :]:
        problems.append(Problem(file, None, "notification", f"not expected: {_notification(extra)}"))
    digests = [n for n in notices if n.what == "digest"]
    for i, want_digest in enumerate(expected.digest):
        line = pos.line_of(("digest", i))
        if i >= len(digests):
            problems.append(
                Problem(file, line, f"digest[{i}]", f"missing: a digest to {want_digest.channel}")
            )
            continue
        diff = _digest_mismatch(want_digest, digests[i])
        if diff:
            problems.append(
                Problem(file, line, f"digest[{i}]", "expected " + "; ".join(diff) + f" ({digests[i].text})")
            )
    for extra_digest in digests[len(expected.digest) :]:
        problems.append(
            Problem(file, None, "digest", f"not expected: {extra_digest.text} at {_fmt(extra_digest.at)}")
        )
    return problems
