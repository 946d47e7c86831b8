"""Diff stage: field-level changes between two JSON states, ignoring fields that move on every read.

Paths are dotted (`device_model.model`). Lists of action-like items (dicts with a `code`, Podero's
`actions[]`) are compared item by item, keyed by code, as `actions[reauthenticate]` (several pending
actions with one code compare as their list ordered by cue id); their re-signed `resolution_link.url`
secret never counts. Other lists compare as one value.
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Mapping
from typing import Any

import orjson

from bridge.model import HEALTH_SOURCE, Change

# Fields that change on every read without meaning (SPEC §4, providers.md §1.6), per source.
_COMMON_VOLATILE = frozenset({"updated_at", "updatedAt"})
# Every Podero device family (providers-wave2.md §4). `capabilities_last_refreshed_at` is re-stamped
# when Podero re-reads a wallbox's capabilities, which changes nothing about the wallbox.
_PODERO_VOLATILE = _COMMON_VOLATILE | {
    "last_monitoring_executed_at",
    "optimization_score",
    "capabilities_last_refreshed_at",
    "consumption_last_day_kwh",
    "consumption_last_week_kwh",
    "consumption_last_month_kwh",
    "production_last_day_kwh",
    "production_last_week_kwh",
    "production_last_month_kwh",
}
# Live readings: they move on nearly every read, so they count only when a rule names them (a
# threshold rule on `battery_level` or `dhw_temperature` keeps its field, see `keep`).
VOLATILE: Mapping[str, frozenset[str]] = {
    "podero.wallbox": _PODERO_VOLATILE,
    "podero.heat_pump": _PODERO_VOLATILE
    | {
        "current_power_consumption_w",
        "current_mode",  # follows spot prices
        "outdoor_temperature",
        "indoor_actual_temperature",
        "indoor_target_temperature_offset",
        "inlet_temperature",
        "outlet_temperature",
        "dhw_temperature",
    },
    "podero.electric_vehicle": _PODERO_VOLATILE
    | {"charge_rate_w", "charge_time_remaining", "driving_range", "battery_level"},
    "podero.inverter": _PODERO_VOLATILE
    | {
        "current_solar_production_w",
        "household_consumption_w",
        "current_power_to_grid_w",
        "solar_surplus_w",
        "battery_charge_level_percent",
        "battery_charge_discharge_power_w",
    },
    # Health moves its timestamps on every poll; status and failure counts are what rules watch.
    HEALTH_SOURCE: _COMMON_VOLATILE | {"last_success_at", "last_poll_at"},
}
_VOLATILE_SUFFIXES = ("_last_updated_at", "_last_updated_utc", "_last_updated")
_CUE = re.compile(r"/cues/([^/?#]+)")


def is_volatile(name: str, source: str, keep: frozenset[str] = frozenset()) -> bool:
    """True when `name` moves on every read of `source` (and no rule asked to keep it)."""
    if name in keep:
        return False
    return name in VOLATILE.get(source, _COMMON_VOLATILE) or name.endswith(_VOLATILE_SUFFIXES)


def _is_action_list(value: list[Any]) -> bool:
    return bool(value) and all(isinstance(item, dict) and "code" in item for item in value)


def _action_key(item: Mapping[str, Any]) -> str:
    return str(item.get("code"))


def _normal_action(item: Mapping[str, Any]) -> dict[str, Any]:
    """The action without its per-read secret: the URL keeps its path (and so the cue id) only."""
    out = dict(item)
    link = out.get("resolution_link")
    if isinstance(link, dict) and isinstance(link.get("url"), str):
        out["resolution_link"] = {**link, "url": link["url"].split("?", 1)[0]}
    return out


def _action_items(value: list[Any]) -> dict[str, Any]:
    """`{code: action}`; a code that several pending actions share maps to the list of them, ordered
    by cue id, so neither their order in the body nor resolving one of them renames the others."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for item in value:
        groups.setdefault(_action_key(item), []).append(_normal_action(item))
    return {
        code: items[0] if len(items) == 1 else sorted(items, key=_cue_of) for code, items in groups.items()
    }


def _cue_of(item: Mapping[str, Any]) -> str:
    link = item.get("resolution_link")
    cue = _CUE.search(str(link.get("url", ""))) if isinstance(link, Mapping) else None
    return cue.group(1) if cue else orjson.dumps(item, option=orjson.OPT_SORT_KEYS).decode()


@functools.lru_cache(maxsize=256)
def _kept_paths(keep: frozenset[str]) -> frozenset[str]:
    """Every path a rule names, and every path above one (`a.b[c].d` → `a`, `a.b`, `a.b[c]`, itself)."""
    out = set(keep)
    for k in keep:
        out.update(k[:i] for i, ch in enumerate(k) if ch in ".[")
    return frozenset(out)


def _flatten(value: Any, path: str, out: dict[str, Any], source: str, kept: frozenset[str]) -> None:
    """`kept`: the paths rules name and the paths above them (volatile fields there are kept)."""
    volatile = _volatile_names(source, frozenset())
    if isinstance(value, dict):
        for name, child in value.items():
            child_path = f"{path}.{name}" if path else name
            if volatile[name] and child_path not in kept:
                continue
            _flatten(child, child_path, out, source, kept)
    elif isinstance(value, list):
        if _is_action_list(value):
            for key, item in _action_items(value).items():
                out[f"{path}[{key}]"] = item
        else:  # compared as one value, without its items' volatile fields (as the digest does)
            out[path] = _strip(value, volatile, kept, path)
    else:
        out[path] = value


def flatten(
    state: Mapping[str, Any] | None, *, source: str, keep: frozenset[str] = frozenset()
) -> dict[str, Any]:
    """`{dotted.path: leaf value}` of the meaningful fields of a state."""
    out: dict[str, Any] = {}
    if state is not None:
        _flatten(dict(state), "", out, source, _kept_paths(keep))
    return out


def _identical(a: Any, b: Any) -> bool:
    """True only when `a` and `b` are the same JSON: `==` alone calls `true` and `1` equal, so equal
    containers are also compared as bytes (different bytes only mean: look closer)."""
    if a is b:
        return True
    if type(a) is not type(b) or a != b:
        return False
    if type(a) is not dict and type(a) is not list:
        return True
    try:
        return orjson.dumps(a) == orjson.dumps(b)
    except TypeError:  # not JSON (cannot come from a provider's body): compare it leaf by leaf
        return False


def _flatten_both(
    old: dict[str, Any], new: dict[str, Any], path: str, before: dict[str, Any], after: dict[str, Any],
    source: str, kept: frozenset[str],
) -> None:  # fmt: skip
    """`_flatten` of two dicts at once, leaving out every field that is identical on both sides: it
    flattens to the same paths and values on both, so it cannot be a change."""
    if _odd_names(old) or _odd_names(new):
        # A name holding `.` or `[` can flatten to a sibling's paths (`"a.b"` and `"a": {"b"}`), so
        # leaving out an identical sibling could change which one a path reads: flatten it all.
        _flatten(old, path, before, source, kept)
        _flatten(new, path, after, source, kept)
        return
    volatile = _volatile_names(source, frozenset())
    for name, o in old.items():
        child_path = f"{path}.{name}" if path else name
        if volatile[name] and child_path not in kept:
            continue
        if name in new:
            n = new[name]
            if _identical(o, n):
                continue
            if type(o) is dict and type(n) is dict:
                _flatten_both(o, n, child_path, before, after, source, kept)
                continue
            _flatten(n, child_path, after, source, kept)
        _flatten(o, child_path, before, source, kept)
    for name, n in new.items():
        if name not in old:
            child_path = f"{path}.{name}" if path else name
            if volatile[name] and child_path not in kept:
                continue
            _flatten(n, child_path, after, source, kept)


def _odd_names(value: dict[str, Any]) -> bool:
    try:
        names = "".join(value)  # one C-level pass over the names (JSON keys are strings)
    except TypeError:  # a name that is not a string: no shortcut
        return True
    return "." in names or "[" in names


def _same(a: Any, b: Any) -> bool:
    # True == 1 in Python; a flip from 1 to true is still a change of the JSON value.
    return a == b and type(a) is type(b) if isinstance(a, bool) or isinstance(b, bool) else a == b


def diff(
    old: Mapping[str, Any] | None,
    new: Mapping[str, Any] | None,
    *,
    source: str,
    keep: frozenset[str] = frozenset(),
) -> list[Change]:
    """Field-level changes from `old` to `new` (either may be None: appeared / disappeared)."""
    if old is None or new is None:
        before = flatten(old, source=source, keep=keep)
        after = flatten(new, source=source, keep=keep)
    else:  # the common case, one field of many changed: only the fields that differ are flattened
        before, after = {}, {}
        _flatten_both(dict(old), dict(new), "", before, after, source, _kept_paths(keep))
    changes: list[Change] = []
    for path in before.keys() | after.keys():
        # Absent and null read the same to rules (get_path gives None): schema drift that omits a
        # null field is no change.
        a = before.get(path)
        b = after.get(path)
        if _same(a, b) or _emptied_into_items(path, a, b, after) or _emptied_into_items(path, b, a, before):
            continue
        changes.append(Change(field=path, old=a, new=b))
    changes.sort(key=lambda c: c.field)
    return changes


def _emptied_into_items(path: str, value: Any, other: Any, other_side: Mapping[str, Any]) -> bool:
    """`actions: []` on one side and `actions[code]` items on the other: the items are the change,
    the empty list (which cannot be told from a plain list) is not one more."""
    return (
        value == []
        and other is None
        and path not in other_side
        and any(k.startswith(path + "[") for k in other_side)
    )


class _VolatileNames(dict[str, bool]):
    """`is_volatile` memoised per field name for one (source, keep): the digest asks it for every key
    of every poll. Bounded, so a provider sending ever-new keys (ids as keys) cannot grow it forever."""

    __slots__ = ("keep", "source")

    def __init__(self, source: str, keep: frozenset[str]) -> None:
        super().__init__()
        self.source, self.keep = source, keep

    def __missing__(self, name: str) -> bool:
        volatile = is_volatile(name, self.source, self.keep)
        if len(self) < _MEMO_MAX:
            self[name] = volatile
        return volatile


_MEMO_MAX = 4096


@functools.lru_cache(maxsize=256)
def _volatile_names(source: str, keep: frozenset[str]) -> _VolatileNames:
    return _VolatileNames(source, keep)


_CONTAINERS = (dict, list)


def _strip(value: Any, volatile: _VolatileNames, kept: frozenset[str], path: str | None = "") -> Any:
    """`value` without its volatile fields. `path` is where it sits, or None when no rule keeps a
    field below it (then no path is built: this runs on every poll of every resource)."""
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            child = None if path is None else f"{path}.{k}" if path else k
            keep = child is not None and child in kept
            if not keep and volatile[k]:
                continue
            out[k] = _strip(v, volatile, kept, child if keep else None) if isinstance(v, _CONTAINERS) else v
        return out
    if isinstance(value, list):
        if _is_action_list(value):
            return sorted(
                (_normal_action(i) for i in value), key=lambda i: orjson.dumps(i, option=orjson.OPT_SORT_KEYS)
            )
        return [_strip(v, volatile, kept, None if path is None else path + "[]") for v in value]
    return value


def _strip_all(value: dict[str, Any], volatile: _VolatileNames) -> dict[str, Any]:
    """`_strip` when no rule keeps a volatile field: one comprehension per dict (half the CPU of the
    general walk; this runs for every poll of every resource). Same output as `_strip(…, None)`."""
    return {
        k: (
            _strip_all(v, volatile)
            if type(v) is dict
            else _strip(v, volatile, _NO_PATHS, None)
            if type(v) is list
            else v
        )
        for k, v in value.items()
        if not volatile[k]
    }


_NO_PATHS: frozenset[str] = frozenset()


@functools.lru_cache(maxsize=256)
def _kept_volatile(source: str, keep: frozenset[str]) -> frozenset[str]:
    """The kept paths (`_kept_paths`) that matter to the digest: none when no path a rule names
    passes through a volatile field, as with most rule sets (a rule on `is_charging` keeps nothing
    the digest would strip), so the digest takes its fast path."""
    kept = _kept_paths(keep)
    names = {step for path in kept for step, _ in parse_path(path) or ()}
    return kept if any(is_volatile(n, source) for n in names) else _NO_PATHS


def meaningful_digest(
    state: Mapping[str, Any] | None, *, source: str, keep: frozenset[str] = frozenset()
) -> str:
    """A digest of the meaningful fields: equal for two reads that differ only in volatile fields."""
    if state is None:
        return "gone"
    kept = _kept_volatile(source, keep)
    plain = state if isinstance(state, dict) else dict(state)
    volatile = _volatile_names(source, frozenset())
    stripped = _strip(plain, volatile, kept, "") if kept else _strip_all(plain, volatile)
    body = orjson.dumps(stripped, option=orjson.OPT_SORT_KEYS)
    return hashlib.blake2b(body, digest_size=16).hexdigest()


def digest64(digest: str) -> int:
    """A stored digest in 8 bytes' worth of int, for the poller's in-memory "unchanged?" check.

    The store keeps the full 128-bit digest; 64 bits decide only whether to look at the store at all.
    Non-hex markers ("gone", "listing") map to small negative numbers no hex digest can take.
    """
    try:
        return int(digest[:16], 16)
    except ValueError:
        return -1 - sum(digest.encode()) % 1_000_003


_STEP = re.compile(r"([^.\[\]]+)(?:\[([^\]]+)\])?")


@functools.lru_cache(maxsize=4096)
def parse_path(path: str) -> tuple[tuple[str, str | None], ...] | None:
    """`a.b[code]` → (("a", None), ("b", "code")); None when malformed. Cached: rules reuse paths."""
    steps = []
    for part in path.split("."):
        m = _STEP.fullmatch(part)
        if m is None:
            return None
        steps.append((m.group(1), m.group(2)))
    return tuple(steps)


def get_path(state: Mapping[str, Any] | None, path: str) -> Any:
    """The value at a dotted path (`device_model.model`, `actions[reauthenticate]`); None when absent."""
    steps = parse_path(path)
    if steps is None:
        return None
    value: Any = state
    for name, code in steps:
        if not isinstance(value, Mapping):
            return None
        value = value.get(name)
        if code is not None:
            if not isinstance(value, list):
                return None
            value = next((i for i in value if isinstance(i, Mapping) and str(i.get("code")) == code), None)
    return value
