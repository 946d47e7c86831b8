"""The building blocks every config model uses: strict models, durations and rates."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(value: Any) -> timedelta:
    """`"500ms"`, `"30s"`, `"5m"`, `"2h"`, `"1d"` (or a number of seconds) → timedelta."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, bool):
        raise ValueError("expected a duration like '30s', '5m', '2h'")
    if isinstance(value, int | float):
        return timedelta(seconds=float(value))
    if isinstance(value, str):
        m = _DURATION.match(value)
        if m:
            return timedelta(seconds=float(m.group(1)) * _UNIT_SECONDS[m.group(2)])
    raise ValueError(
        f"invalid duration {value!r}: use a number with a unit, like '500ms', '30s', '5m', '2h', '1d'"
    )


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]


def format_duration(value: timedelta) -> str:
    """The shortest whole unit for a duration: 1h, 4h, 1d, 90m, 45s (what `parse_duration` reads)."""
    seconds = int(value.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


class Strict(BaseModel):
    """What users write: unknown keys are errors (a typo must not be silently ignored)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*/\s*(s|m|h)\s*$")
_RATE_SECONDS = {"s": 1.0, "m": 60.0, "h": 3600.0}


def parse_rate(value: Any) -> float:
    """`"10/s"`, `"30/m"`, `"100/h"` → sends per second."""
    m = _RATE.match(value) if isinstance(value, str) else None
    if m is None or float(m.group(1)) <= 0:
        raise ValueError(
            f"invalid rate {value!r}: use a positive count per unit, like '10/s', '30/m', '100/h'"
        )
    return float(m.group(1)) / _RATE_SECONDS[m.group(2)]


Rate = Annotated[float, BeforeValidator(parse_rate)]
