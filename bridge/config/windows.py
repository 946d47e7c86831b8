"""Time windows (#14): `mute` and `active` on rules and channels, each in its own time zone.

A notification is *muted* at an instant when a `mute` window contains it, or when `active` windows
are given and none contains it. A muted notification is deferred, not dropped: it waits until the
first instant nothing mutes it (`Schedule.muted_until`), when one digest (or, where a channel takes
no digests, each notification) goes out. Windows are weekly: `days` (default every day), `from` and
`to` as local `HH:MM` (`to` may be `24:00`; `to` before `from` runs over midnight into the next day).
Local times go through zoneinfo, so DST shifts move the instants, not the local hours.
"""

from __future__ import annotations

import difflib
import functools
import re
import zoneinfo
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
HORIZON_DAYS = 15  # a mute period is looked for this far ahead (two weekly cycles); longer is refused


@functools.cache
def _zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def zone(name: str) -> zoneinfo.ZoneInfo:
    """The IANA zone `name`, or a ValueError with the closest names."""
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        close = difflib.get_close_matches(name, sorted(_zones()), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else " (an IANA name like 'Europe/Berlin' or 'UTC')"
        raise ValueError(f"unknown time zone {name!r}{hint}") from None


def _days(items: Sequence[str]) -> frozenset[int]:
    out: set[int] = set()
    for item in items:
        text = item.strip().lower()
        first, _, last = text.partition("-")
        if first not in DAYS or (last and last not in DAYS):
            raise ValueError(f"{item!r}: days are {', '.join(DAYS)} or a range like 'mon-fri'")
        a, b = DAYS.index(first), DAYS.index(last or first)
        out.update(range(a, b + 1) if a <= b else [*range(a, 7), *range(b + 1)])
    return frozenset(out)


class TimeWindow(BaseModel):
    """One weekly window as users write it: `{days = ["mon-fri"], from = "22:00", to = "07:00",
    timezone = "Europe/Berlin"}`."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    days: list[str] = Field(default_factory=lambda: ["mon-sun"])
    from_: str = Field(alias="from")
    to: str
    timezone: str = "UTC"

    @field_validator("days")
    @classmethod
    def _known_days(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError("give at least one day (or leave `days` out: every day)")
        _days(v)
        return v

    @field_validator("from_")
    @classmethod
    def _from_time(cls, v: str) -> str:
        if not _HHMM.match(v):
            raise ValueError(f"{v!r}: a local time as HH:MM, 00:00 to 23:59")
        return v

    @field_validator("to")
    @classmethod
    def _to_time(cls, v: str) -> str:
        if v != "24:00" and not _HHMM.match(v):
            raise ValueError(f"{v!r}: a local time as HH:MM, 00:00 to 24:00")
        return v

    @field_validator("timezone")
    @classmethod
    def _zone(cls, v: str) -> str:
        zone(v)
        return v

    @model_validator(mode="after")
    def _not_empty(self) -> TimeWindow:
        if self.from_ == self.to:
            raise ValueError('`from` equals `to`: an empty window (all day is from = "00:00", to = "24:00")')
        return self


def _clock(text: str) -> tuple[time, int]:
    """(time, extra days): "24:00" is midnight of the next day."""
    if text == "24:00":
        return time(0, 0), 1
    h, m = text.split(":")
    return time(int(h), int(m)), 0


@dataclass(frozen=True, slots=True)
class Window:
    """A compiled TimeWindow."""

    days: frozenset[int]
    start: time
    end: time
    end_days: int  # days from a start's local date to its end's (0, or 1 over midnight / at 24:00)
    tz: zoneinfo.ZoneInfo

    @classmethod
    def of(cls, w: TimeWindow) -> Window:
        start, _ = _clock(w.from_)
        end, extra = _clock(w.to)
        over = extra or (1 if end < start else 0)
        return cls(days=_days(w.days), start=start, end=end, end_days=over, tz=zone(w.timezone))

    def periods(self, around: datetime) -> list[tuple[datetime, datetime]]:
        """The window's (start, end) instants whose start falls near `around`, in UTC."""
        today = around.astimezone(self.tz).date()
        out = []
        for offset in range(-2, HORIZON_DAYS + 1):
            d = today + timedelta(days=offset)
            if d.weekday() in self.days:
                out.append((self._at(d, self.start), self._at(d + timedelta(days=self.end_days), self.end)))
        return out

    def _at(self, d: date, t: time) -> datetime:
        return datetime.combine(d, t, tzinfo=self.tz).astimezone(UTC)


@dataclass(frozen=True, slots=True)
class Schedule:
    """The `mute` and `active` windows of one rule or channel."""

    mute: tuple[Window, ...] = ()
    active: tuple[Window, ...] = ()

    @classmethod
    def of(cls, mute: Sequence[TimeWindow], active: Sequence[TimeWindow]) -> Schedule | None:
        if not mute and not active:
            return None
        return cls(mute=tuple(map(Window.of, mute)), active=tuple(map(Window.of, active)))


def _inside(periods: Sequence[tuple[datetime, datetime]], at: datetime) -> bool:
    return any(start <= at < end for start, end in periods)


def muted_until(schedules: Sequence[Schedule], now: datetime) -> datetime | None:
    """None when nothing mutes a notification at `now`; else the first instant nothing does."""
    mutes = [p for s in schedules for w in s.mute for p in w.periods(now)]
    actives = [[p for w in s.active for p in w.periods(now)] for s in schedules if s.active]

    def muted(at: datetime) -> bool:
        return _inside(mutes, at) or any(not _inside(a, at) for a in actives)

    if not muted(now):
        return None
    edges = sorted({e for start, end in [*mutes, *(p for a in actives for p in a)] for e in (start, end)})
    return next((e for e in edges if e > now and not muted(e)), now + timedelta(days=HORIZON_DAYS))


def channel_windows(channels: Mapping[str, Any]) -> dict[str, Schedule]:
    """Each channel's `mute` / `active` windows, for the channels that have any."""
    return {name: s for name, c in channels.items() if (s := windows_of(c)) is not None}


def windows_of(data: Any) -> Schedule | None:
    """A Schedule from a model with `mute` / `active` (a rule or a channel config)."""
    return Schedule.of(getattr(data, "mute", None) or [], getattr(data, "active", None) or [])
